"""Image to video through weights trained for it: PIA (checked against diffusers' `PIAPipeline`) and
AnimateLCM-I2V (its image encoder checked against the release's own code, `tests/data/animatelcm-i2v`; where
its features join the UNet, against the release's documented equation)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.cli import main
from animatediff.control import Conditions
from animatediff.control.image_input import ImageEncoder, ImageInput, pia_conv_in
from animatediff.families import PIA_PRESETS, pia_affinity
from animatediff.formats import Kind, identify, save_state_dict, to_motion_adapter
from animatediff.planner import plan_run
from animatediff.request import Request
from helpers import DATA, random_motion_module, tiny_config

SIZE = dict(num_frames=6, height=32, width=32)
RELEASE_ENCODER = DATA / "animatelcm-i2v" / "encoder.safetensors"


def pia_conv(seed: int = 7) -> dict[str, torch.Tensor]:
    """PIA's conv_in for the tiny UNet (32 widths, 9 input channels), random."""
    generator = torch.Generator().manual_seed(seed)
    return {"weight": torch.randn(32, 9, 3, 3, generator=generator) * 0.1, "bias": torch.randn(32, generator=generator)}


def i2v_encoder(seed: int = 9) -> ImageEncoder:
    """AnimateLCM-I2V's image encoder for the tiny UNet (widths 32, 64), every weight random."""
    torch.manual_seed(seed)
    encoder = ImageEncoder((32, 64))
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.normal_(0, 0.05)
    return encoder.eval()


def save_with(path, module, prefix: str, tensors: dict):
    """A release-style file: the motion module's official keys and the image conditioning's beside them."""
    state = {**module.state_dict(), **{prefix + key: value for key, value in tensors.items()}}
    return save_state_dict(state, path)


def pia_file(folder, name="pia.ckpt"):
    """A tiny `pia.ckpt` as released: a pickled state dict of official motion-module keys and `conv_in.…`."""
    module = random_motion_module(tiny_config(), seed=5, std=0.02)
    torch.save({**module.state_dict(), **{f"conv_in.{k}": v for k, v in pia_conv().items()}}, folder / name)
    return folder / name


def i2v_file(folder, name="AnimateLCM_sd15_i2v.ckpt"):
    """A tiny `AnimateLCM_sd15_i2v.ckpt` as released: official keys with a mid block, no position tables, and
    the image encoder's `img_encoder.…`."""
    module = random_motion_module(tiny_config(mid_block=True), seed=6, std=0.02)
    state = {key: value for key, value in module.state_dict().items() if not key.endswith("pos_encoder.pe")}
    encoder = {f"img_encoder.{key}": value for key, value in i2v_encoder().state_dict().items()}
    torch.save({**state, **encoder}, folder / name)
    return folder / name


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("image") / "image.png"
    Image.fromarray(pixels).save(path)
    return pixels, path


def test_pia_presets_are_the_release_masks_diffusers_builds():
    from diffusers.pipelines.deprecated.pia.pipeline_pia import prepare_mask_coef_by_statistics

    for index, preset in enumerate(PIA_PRESETS):
        for frames in (1, 6, 16, 24):
            assert pia_affinity(preset, frames) == pytest.approx(prepare_mask_coef_by_statistics(frames, 0, index))


def test_pia_frames_match_diffusers_pia_pipeline(models, picture):
    from diffusers import PIAPipeline

    folder, module = models
    pixels, _ = picture
    conv = pia_conv()
    base = load_base(folder)
    reference = PIAPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        motion_adapter=to_motion_adapter(module, conv),
        scheduler=official_scheduler(),
    )
    reference.set_progress_bar_config(disable=True)
    preset = "loop-moderate"  # diffusers' motion_scale 4
    expected = reference(
        image=Image.fromarray(pixels),
        prompt="a red circle",
        negative_prompt="blurry",
        num_inference_steps=3,
        motion_scale=list(PIA_PRESETS).index(preset),
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
        **SIZE,
    ).frames[0]

    components = load_base(folder)
    components.unet.conv_in = pia_conv_in(components.unet.conv_in, conv)
    ours = AnimateDiffPipeline.from_components(components, module)
    image = ImageInput("pia", torch.from_numpy(pixels).permute(2, 0, 1).float() / 255, pia_affinity(preset, 6))
    video = ours.generate(
        "a red circle",
        negative_prompt="blurry",
        steps=3,
        seed=11,
        progress=False,
        conditions=Conditions(image_input=image),
        **SIZE,
    )
    frames = video.permute(0, 2, 3, 1).numpy()
    assert frames.shape == expected.shape == (6, 32, 32, 3)
    assert np.abs(frames - expected).max() < 1e-4
    assert frames.std() > 0.01


def test_animatelcm_i2v_encoder_matches_the_release_code():
    tensors = load_file(RELEASE_ENCODER)
    weights = {
        key.removeprefix("img_encoder."): value for key, value in tensors.items() if key.startswith("img_encoder.")
    }
    encoder = ImageEncoder.from_state_dict(weights, levels=2)
    with torch.no_grad():
        features = encoder(tensors["input"])
    for level, feature in enumerate(features):
        expected = tensors[f"feature.{level}"]  # b c f h w, the release's layout
        torch.testing.assert_close(feature, expected.permute(0, 2, 1, 3, 4).flatten(0, 1), atol=1e-5, rtol=1e-5)


def test_animatelcm_i2v_features_join_each_down_block_after_its_second_layer(tiny_base):
    """The release's equation: h ← attn(resnet(h)) + feature before the second layer's motion module; the first
    layer's motion module sees the clip without it."""
    module = random_motion_module(tiny_config(mid_block=True), seed=5)
    encoder = i2v_encoder()
    pipeline = AnimateDiffPipeline.from_components(load_base(tiny_base), module, image_encoder=encoder)
    seen = {}
    for index in (0, 1):
        target = module.down_blocks[0].motion_modules[index]
        target.register_forward_pre_hook(lambda _m, inputs, index=index: seen.setdefault(index, []).append(inputs[0]))
    generator = torch.Generator().manual_seed(0)
    latents, image = torch.randn(1, 4, 3, 8, 8, generator=generator), torch.randn(1, 4, 1, 8, 8, generator=generator)
    text = torch.randn(1, 77, 32, generator=generator)
    clip_image = image.expand(-1, -1, 3, -1, -1)
    with torch.no_grad():
        pipeline.unet(latents, torch.tensor([500]), text)
        pipeline.unet(latents, torch.tensor([500]), text, added_cond={"image_latents": clip_image})
        feature = encoder(clip_image)[0]
    torch.testing.assert_close(seen[0][0], seen[0][1])
    torch.testing.assert_close(seen[1][1] - seen[1][0], feature, atol=1e-5, rtol=1e-5)
    assert feature.abs().mean() > 0.01


def test_pia_from_the_command_line_records_its_preset(tmp_path, tiny_base, picture):
    module = random_motion_module(tiny_config(), seed=5)
    pia = save_with(tmp_path / "pia.safetensors", module, "conv_in.", pia_conv())
    _, image = picture
    output = tmp_path / "pia.gif"
    common = ["generate", "a red circle", "--base", str(tiny_base), "--pia", str(pia), "--init-image", str(image)]
    run = [*common, "--pia-strength", "large", "--frames", "4", "--width", "32", "--height", "32", "--steps", "2"]
    assert main([*run, "-o", str(output)]) == 0
    sidecar = json.loads((tmp_path / "pia.gif.json").read_text())
    assert sidecar["family"] == {"name": "pia", "decided_by": "weights: PIA's image-conditioning conv_in"}
    assert (sidecar["image_input"], sidecar["pia_strength"], sidecar["request"]["pia"]) == ("pia", "large", str(pia))
    assert "init_strength" not in sidecar
    assert sidecar["motion_module_settings"] == {} and sidecar["steps"] == 2


def test_animatelcm_i2v_from_the_command_line_samples_with_its_preset(tmp_path, tiny_base, picture):
    module = random_motion_module(tiny_config(mid_block=True), seed=5)
    path = save_with(tmp_path / "AnimateLCM_sd15_i2v.safetensors", module, "img_encoder.", i2v_encoder().state_dict())
    _, image = picture
    run = ["generate", "a red circle", "--base", str(tiny_base), "--motion-module", str(path), "--frames", "4"]
    assert (
        main([*run, "--init-image", str(image), "--width", "32", "--height", "32", "-o", str(tmp_path / "i.gif")]) == 0
    )
    sidecar = json.loads((tmp_path / "i.gif.json").read_text())
    assert sidecar["family"]["name"] == "animatelcm-i2v"
    assert (sidecar["steps"], sidecar["guidance_scale"], sidecar["image_input"]) == (4, 1.0, "i2v")
    scheduler = sidecar["scheduler"]
    assert (scheduler["class"], scheduler["beta_end"], scheduler["original_inference_steps"]) == (
        "LCMScheduler",
        0.014,
        200,
    )


def test_a_prompt_config_names_pia_its_preset_and_image(tmp_path, monkeypatch, tiny_base, picture):
    monkeypatch.chdir(tmp_path)
    pia_file(tmp_path)
    entry = {"prompt": ["a red circle"], "pia": "pia.ckpt", "pia_strength": "loop-small", "init_image": str(picture[1])}
    (tmp_path / "pia.yaml").write_text(json.dumps([{**entry, "L": 4, "W": 32, "H": 32, "steps": 2, "seed": 1}]))
    [run] = plan_run(Request(base=str(tiny_base)), config=tmp_path / "pia.yaml")
    assert (run.model.family, run.control.image_input, run.control.pia_strength) == ("pia", "pia", "loop-small")
    assert run.model.motion_module == Path("pia.ckpt") and run.sample.frames == 4


def test_inspect_and_convert_know_pia_and_i2v_files(tmp_path, capsys):
    module = random_motion_module(tiny_config(), seed=5)
    pia = save_with(tmp_path / "pia.safetensors", module, "conv_in.", pia_conv())
    i2v = save_with(tmp_path / "i2v.safetensors", module, "img_encoder.", i2v_encoder().state_dict())
    assert main(["inspect", str(pia)]) == 0
    shown = capsys.readouterr().out
    assert "a PIA checkpoint" in shown and "version: pia" in shown and "conv_in.weight (32, 9, 3, 3)" in shown
    assert main(["inspect", str(i2v)]) == 0
    shown = capsys.readouterr().out
    assert (
        "a motion module" in shown and "version: animatelcm-i2v" in shown and "AnimateLCM-I2V's image encoder" in shown
    )
    for source, kind in ((pia, Kind.PIA), (i2v, Kind.MOTION_MODULE)):
        target = tmp_path / f"{source.stem}-diffusers.safetensors"
        assert main(["convert", str(source), str(target), "--to", "diffusers"]) == 0
        assert identify(target).kind == kind
        converted, original = load_file(target), load_file(source)
        extra = [key for key in original if key.startswith(("conv_in.", "img_encoder."))]
        assert extra and all(torch.equal(converted[key], original[key]) for key in extra)
    folder = tmp_path / "pia-adapter"
    assert main(["convert", str(pia), str(folder), "--to", "diffusers"]) == 0
    assert identify(folder).kind == Kind.PIA


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--motion-module", "pia.safetensors", "--init-image", "image.png"], "give it with --pia PATH"),
        (["--pia", "plain.safetensors", "--init-image", "image.png"], "is a motion module, not a PIA checkpoint"),
        (["--pia", "pia.safetensors"], "animates an image; give the image with --init-image"),
        (["--motion-module", "i2v.safetensors"], "animates an image; give the image with --init-image"),
        (["--pia", "pia.safetensors", "--motion-module", "plain.safetensors"], "give --pia or --motion-module"),
        (
            ["--pia", "pia.safetensors", "--init-image", "image.png", "--init-strength", "0.5"],
            "leave out --init-strength",
        ),
        (["--motion-module", "plain.safetensors", "--pia-strength", "large"], "it needs --pia"),
        (["--motion-module", "i2v.safetensors", "--init-image", "image.png", "--pia-strength", "large"], "is not PIA"),
    ],
)
def test_bad_image_inputs_exit_2_with_a_sentence(tmp_path, monkeypatch, capsys, tiny_base, picture, arguments, message):
    monkeypatch.chdir(tmp_path)
    module = random_motion_module(tiny_config(), seed=5)
    save_with(tmp_path / "pia.safetensors", module, "conv_in.", pia_conv())
    save_with(tmp_path / "i2v.safetensors", module, "img_encoder.", i2v_encoder().state_dict())
    save_state_dict(module.state_dict(), tmp_path / "plain.safetensors")
    (tmp_path / "image.png").write_bytes(picture[1].read_bytes())
    assert main(["generate", "a red circle", "--base", str(tiny_base), *arguments, "-o", "x.gif"]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
