"""Video-to-video, ControlNet and IP-Adapter reproduce diffusers' `AnimateDiffVideoToVideoPipeline`,
`AnimateDiffControlNetPipeline`, their combination and `AnimateDiffPipeline` with an IP-Adapter, on the
same tiny weights with the motion GroupNorm pooled as diffusers computes it."""

import numpy as np
import pytest
import torch
from diffusers import (
    AnimateDiffControlNetPipeline,
    AnimateDiffVideoToVideoControlNetPipeline,
    AnimateDiffVideoToVideoPipeline,
    ControlNetModel,
)
from diffusers import AnimateDiffPipeline as DiffusersAnimateDiffPipeline
from PIL import Image

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.control import Conditions, ControlNetInput, InitVideo
from animatediff.control.image_prompt import image_prompt, load_ip_adapter, reads_hidden_states
from animatediff.control.init_latents import first_step
from animatediff.control.preprocess import canny
from animatediff.errors import AnimateDiffError
from animatediff.formats import to_motion_adapter
from helpers import assert_bfloat16_close, tiny_image_encoder

SIZE = dict(height=32, width=32)
FRAMES, SEED = 6, 11


def random_controlnet(folder, seed: int = 7) -> ControlNetModel:
    """A ControlNet shaped for the tiny base, every weight random (its zero convolutions too)."""
    controlnet = ControlNetModel.from_unet(load_base(folder).unet, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in controlnet.parameters():
            parameter.normal_(0, 0.05)
    return controlnet.eval()


def video(seed: int, frames: int = FRAMES) -> np.ndarray:
    """A moving gradient with noise: F×32×32×3 uint8."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, 32)
    clips = [
        np.stack(
            [np.roll(ramp, 3 * f)[None].repeat(32, 0), ramp[:, None].repeat(32, 1), rng.uniform(0, 255, (32, 32))],
            axis=-1,
        )
        for f in range(frames)
    ]
    return np.stack(clips).astype(np.uint8)


def as_pil(frames: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(frame) for frame in frames]


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def ours(models) -> AnimateDiffPipeline:
    folder, motion_module = models
    return AnimateDiffPipeline.from_components(load_base(folder), motion_module)


def theirs(models, kind=DiffusersAnimateDiffPipeline, **extra):
    folder, motion_module = models
    base = load_base(folder)
    parts = dict(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet)
    pipeline = kind(**parts, motion_adapter=to_motion_adapter(motion_module), scheduler=official_scheduler(), **extra)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def diffusers_frames(pipeline, steps: int = 5, **inputs) -> np.ndarray:
    output = pipeline(
        prompt="a red circle",
        negative_prompt="blurry",
        num_inference_steps=steps,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
        guidance_scale=7.5,
        **SIZE,
        **inputs,
    )
    return output.frames[0]


def our_frames(pipeline, conditions: Conditions, steps: int = 5, frames: int = FRAMES, **settings) -> np.ndarray:
    clip = pipeline.generate(
        "a red circle",
        negative_prompt="blurry",
        steps=steps,
        seed=SEED,
        num_frames=frames,
        progress=False,
        guidance_scale=7.5,
        conditions=conditions,
        **SIZE,
        **settings,
    )
    return clip.permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------------
# Video-to-video


@pytest.mark.parametrize(("steps", "strength", "first"), [(10, 0.6, 4), (10, 1.0, 0), (5, 0.5, 3), (4, 0.1, 4)])
def test_strength_selects_the_first_step_as_diffusers(steps, strength, first):
    assert first_step(steps, strength) == first


@pytest.mark.parametrize("strength", [0.6, 1.0])
def test_video_to_video_reproduces_diffusers(models, strength):
    clip = video(1)
    expected = diffusers_frames(theirs(models, AnimateDiffVideoToVideoPipeline), video=as_pil(clip), strength=strength)
    frames = our_frames(ours(models), Conditions(init=InitVideo(as_tensor(clip), strength)))
    assert frames.shape == expected.shape == (FRAMES, 32, 32, 3)
    assert np.abs(frames - expected).max() < 1e-4


def test_the_clip_follows_its_input_video_and_a_strength_that_leaves_no_step_is_refused(models):
    pipeline = ours(models)
    first, second = (our_frames(pipeline, Conditions(init=InitVideo(as_tensor(video(s)), 0.4))) for s in (1, 5))
    assert np.abs(first - second).mean() > 1e-2
    with pytest.raises(AnimateDiffError, match="strength 0.1 leaves none of the 5 steps"):
        our_frames(pipeline, Conditions(init=InitVideo(as_tensor(video(1)), 0.1)))


# ---------------------------------------------------------------------------------------------------
# ControlNet


def test_controlnet_reproduces_diffusers(models):
    folder = models[0]
    controlnet, control = random_controlnet(folder), video(2)
    reference = theirs(models, AnimateDiffControlNetPipeline, controlnet=controlnet)
    expected = diffusers_frames(
        reference,
        conditioning_frames=as_pil(control),
        num_frames=FRAMES,
        controlnet_conditioning_scale=0.8,
        control_guidance_start=0.2,
        control_guidance_end=0.8,
    )
    inputs = ControlNetInput(controlnet, as_tensor(control), scale=0.8, start=0.2, end=0.8)
    frames = our_frames(ours(models), Conditions(controlnets=(inputs,)))
    assert np.abs(frames - expected).max() < 1e-4
    plain = our_frames(ours(models), Conditions())
    assert np.abs(frames - plain).mean() > 1e-3  # the ControlNet changed the clip


def test_video_to_video_with_controlnet_reproduces_diffusers(models):
    folder = models[0]
    controlnet, clip, control = random_controlnet(folder), video(1), video(2)
    reference = theirs(models, AnimateDiffVideoToVideoControlNetPipeline, controlnet=controlnet)
    expected = diffusers_frames(reference, video=as_pil(clip), conditioning_frames=as_pil(control), strength=0.6)
    conditions = Conditions(
        init=InitVideo(as_tensor(clip), 0.6), controlnets=(ControlNetInput(controlnet, as_tensor(control)),)
    )
    assert np.abs(our_frames(ours(models), conditions) - expected).max() < 1e-4


def test_two_controlnets_add_up_as_diffusers_multicontrolnet(models):
    folder = models[0]
    first, second = random_controlnet(folder, 7), random_controlnet(folder, 8)
    controls = video(2), video(3)
    reference = theirs(models, AnimateDiffControlNetPipeline, controlnet=[first, second])
    expected = diffusers_frames(
        reference,
        conditioning_frames=[as_pil(c) for c in controls],
        num_frames=FRAMES,
        controlnet_conditioning_scale=[1.0, 0.5],
    )
    inputs = (ControlNetInput(first, as_tensor(controls[0])), ControlNetInput(second, as_tensor(controls[1]), 0.5))
    assert np.abs(our_frames(ours(models), Conditions(controlnets=inputs)) - expected).max() < 1e-4


def test_guess_mode_gives_the_unconditional_half_no_residuals(models):
    folder = models[0]
    controlnet, control = random_controlnet(folder), as_tensor(video(2))
    pipeline = ours(models)
    guessing = our_frames(pipeline, Conditions(controlnets=(ControlNetInput(controlnet, control, guess_mode=True),)))
    normal = our_frames(pipeline, Conditions(controlnets=(ControlNetInput(controlnet, control),)))
    plain = our_frames(pipeline, Conditions())
    assert np.abs(guessing - normal).mean() > 1e-4 and np.abs(guessing - plain).mean() > 1e-4


def test_controlnet_in_context_windows_slices_the_control_frames_per_window(models):
    from animatediff.sampling.options import ContextSettings

    folder = models[0]
    controlnet, control = random_controlnet(folder), as_tensor(video(2, frames=10))
    pipeline = ours(models)
    conditions = Conditions(controlnets=(ControlNetInput(controlnet, control),))
    long = our_frames(pipeline, conditions, frames=10, context=ContextSettings(length=6, overlap=2))
    whole = our_frames(pipeline, conditions, frames=10)
    assert long.shape == whole.shape == (10, 32, 32, 3)
    assert np.abs(long - whole).mean() > 1e-5  # windows differ from the whole clip, yet both ran
    first = our_frames(pipeline, Conditions(controlnets=(ControlNetInput(controlnet, control[:6]),)), frames=6)
    alone = our_frames(pipeline, Conditions(), frames=6)
    assert np.abs(first - alone).mean() > 1e-3


def test_split_guidance_computes_the_same_clip_with_control(models):
    folder = models[0]
    controlnet = random_controlnet(folder)
    conditions = Conditions(controlnets=(ControlNetInput(controlnet, as_tensor(video(2))),))
    together = our_frames(ours(models), conditions)
    pipeline = ours(models)
    pipeline.split_guidance = True
    assert np.abs(our_frames(pipeline, conditions) - together).max() < 1e-5


# ---------------------------------------------------------------------------------------------------
# IP-Adapter


def tiny_ip_adapter(unet, embed_dim: int = 16, tokens: int = 4) -> dict[str, torch.Tensor]:
    """An IP-Adapter's flat state dict for `unet`: image projection and key/value weights per cross-attention."""
    generator = torch.Generator().manual_seed(6)
    width = unet.config.cross_attention_dim
    weights = {
        "image_proj.proj.weight": torch.randn(width * tokens, embed_dim, generator=generator) * 0.1,
        "image_proj.proj.bias": torch.zeros(width * tokens),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    names = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for number, name in enumerate(names):
        inner = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for kind in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{2 * number + 1}.{kind}.weight"] = torch.randn(inner, width, generator=generator) * 0.3
    return weights


def test_ip_adapter_reproduces_diffusers(models):
    folder, _ = models
    encoder, processor = tiny_image_encoder()
    image = video(4, frames=1)[0]
    state = tiny_ip_adapter(load_base(folder).unet)
    reference = theirs(models, image_encoder=encoder, feature_extractor=processor)
    parts = {
        part: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part)}
        for part in ("image_proj", "ip_adapter")
    }
    reference.load_ip_adapter(parts, subfolder="", weight_name="", image_encoder_folder=None)
    reference.set_ip_adapter_scale(0.7)
    expected = diffusers_frames(reference, num_frames=FRAMES, ip_adapter_image=Image.fromarray(image))
    pipeline = ours(models)
    load_ip_adapter(pipeline.unet.unet, state, scale=0.7)
    prompt = image_prompt(encoder, processor, image, reads_hidden_states(pipeline.unet.unet), guidance=True)
    frames = our_frames(pipeline, Conditions(image_prompt=prompt))
    assert np.abs(frames - expected).max() < 1e-4
    assert np.abs(frames - our_frames(ours(models), Conditions())).mean() > 1e-3


# ---------------------------------------------------------------------------------------------------
# Preprocessing


def test_canny_draws_white_edges_on_black_where_the_image_changes():
    frame = np.zeros((1, 32, 32, 3), np.uint8)
    frame[:, 8:24, 8:24] = 255
    edges = canny(frame)
    assert edges.shape == (1, 32, 32, 3) and set(np.unique(edges)) == {0, 255}
    assert edges[0, 16, 16].max() == 0 and edges[0, 2, 2].max() == 0  # inside and outside the square: no edge
    assert edges[0, 8:24, 7:9].any() and edges[0, 7:9, 8:24].any()  # its left and top sides


# ---------------------------------------------------------------------------------------------------
# The command line and prompt configs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_base):
    """Files a user would pass: an MP4, a folder of control frames, a ControlNet folder, an IP-Adapter with
    its image encoder folder, an image."""
    from animatediff.export import write_video

    folder = tmp_path_factory.mktemp("inputs")
    write_video(video(1, frames=8), folder / "input.mp4", fps=12)
    write_video(video(2, frames=8), folder / "edges")
    random_controlnet(tiny_base).save_pretrained(folder / "controlnet")
    encoder, processor = tiny_image_encoder()
    encoder.save_pretrained(folder / "image_encoder")
    processor.save_pretrained(folder / "image_encoder")
    from safetensors.torch import save_file

    save_file(tiny_ip_adapter(load_base(tiny_base).unet), folder / "ip-adapter.safetensors")
    Image.fromarray(video(4, frames=1)[0]).save(folder / "look.png")
    return folder


def cli(tiny_base, motion_module, output, *extra):
    from animatediff.cli import main

    models = ["--base", str(tiny_base), "--motion-module", str(motion_module)]
    small = ["--width", "16", "--height", "16", "--steps", "2", "--seed", "2", "--frames", "4"]
    return main(["generate", "a red circle", *models, *small, "-o", str(output), *extra])


def test_every_control_flag_runs_and_reaches_the_sidecar(tmp_path, tiny_base, tiny_motion_module_file, inputs):
    import json

    from animatediff import read_video

    flags = [
        "--init-video",
        str(inputs / "input.mp4"),
        "--strength",
        "0.5",
        "--stride",
        "2",
        "--controlnet",
        f"{inputs / 'controlnet'}:0.7",
        "--control-video",
        str(inputs / "edges"),
        "--control-start",
        "0.1",
        "--control-end",
        "0.9",
        "--guess-mode",
        "--ip-adapter",
        f"{inputs / 'ip-adapter.safetensors'}:0.6",
        "--ip-image",
        str(inputs / "look.png"),
    ]
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "all", *flags) == 0
    assert read_video(tmp_path / "all").shape == (4, 16, 16, 3)
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "bf16", *flags, "--dtype", "bfloat16") == 0
    assert_bfloat16_close(read_video(tmp_path / "all"), read_video(tmp_path / "bf16"))
    settings = json.loads((tmp_path / "all.json").read_text())
    assert settings["init_video"] == str(inputs / "input.mp4") and settings["strength"] == 0.5
    assert settings["stride"] == 2 and settings["fps"] == 6.0  # the input's 12 fps over the stride
    controlnet = {"path": str(inputs / "controlnet"), "scale": 0.7, "video": str(inputs / "edges")}
    assert settings["controlnets"] == [controlnet]
    assert (settings["control_start"], settings["control_end"], settings["guess_mode"]) == (0.1, 0.9, True)
    assert settings["ip_adapter"] == {"path": str(inputs / "ip-adapter.safetensors"), "scale": 0.6}
    assert settings["image_encoder"] == str(inputs / "image_encoder")


def test_the_command_line_computes_what_the_library_does(tmp_path, tiny_base, tiny_motion_module_file, inputs):
    from animatediff import read_video
    from animatediff.formats import load_motion_module

    flags = [
        "--init-video",
        str(inputs / "edges"),
        "--strength",
        "0.5",
        "--controlnet",
        str(inputs / "controlnet"),
        "--control-video",
        str(inputs / "edges"),
    ]
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "frames", *flags) == 0
    pipeline = AnimateDiffPipeline.from_components(load_base(tiny_base), load_motion_module(tiny_motion_module_file))
    edges = read_video(inputs / "edges")[:4]
    resized = np.stack([np.asarray(Image.fromarray(f).resize((16, 16), Image.Resampling.LANCZOS)) for f in edges])
    controlnet = ControlNetModel.from_pretrained(inputs / "controlnet")
    conditions = Conditions(
        init=InitVideo(as_tensor(resized), 0.5), controlnets=(ControlNetInput(controlnet, as_tensor(resized)),)
    )
    expected = pipeline(
        "a red circle", progress=False, conditions=conditions, num_frames=4, height=16, width=16, steps=2, seed=2
    )
    assert np.array_equal(read_video(tmp_path / "frames"), expected)


def test_a_prompt_config_takes_the_control_keys(tmp_path, tiny_base, tiny_motion_module_file, inputs):
    import json

    import yaml

    from animatediff.cli import main

    entry = {
        "motion_module": str(tiny_motion_module_file),
        "prompt": "a red circle",
        "seed": 1,
        "steps": 2,
        "W": 16,
        "H": 16,
        "L": 4,
        "init_video": str(inputs / "input.mp4"),
        "strength": 0.75,
        "controlnet": [f"{inputs / 'controlnet'}:0.5"],
        "control_video": [str(inputs / "edges")],
    }
    config = tmp_path / "restyle.yaml"
    config.write_text(yaml.safe_dump([entry]))
    out = tmp_path / "out"
    assert main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(out)]) == 0
    settings = json.loads(next(out.glob("*.json")).read_text())
    assert settings["strength"] == 0.75 and settings["controlnets"][0]["scale"] == 0.5
    assert settings["fps"] == 12.0


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, tiny_base):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "noise.mp4").write_bytes(b"not a video at all")
    (folder / "empty").mkdir()
    from animatediff.export import write_video

    write_video(video(1, frames=2), folder / "short.mp4", fps=8)
    unet = load_base(tiny_base).unet
    config = {**unet.config, "cross_attention_dim": 2048}
    torch.manual_seed(0)
    ControlNetModel.from_config(config, conditioning_embedding_out_channels=(16, 32)).save_pretrained(folder / "sdxl")
    return folder


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--init-video", "{bad}/noise.mp4"], "noise.mp4: cannot be read as a video or frames"),
        (["--init-video", "{bad}/empty"], "the folder holds no images"),
        (["--init-video", "{bad}/short.mp4"], "short.mp4 gives 2 frames; the clip needs 4"),
        (["--controlnet", "{inputs}/controlnet", "--control-video", "{bad}/short.mp4"], "gives 2 frames; the clip"),
        (["--controlnet", "{bad}/sdxl", "--control-video", "{inputs}/edges"], "is an SDXL ControlNet"),
        (
            ["--controlnet", "{inputs}/controlnet"],
            "each --controlnet takes one --control-video, in the same order; got 1 ControlNets and 0 control videos",
        ),
        (["--init-video", "{inputs}/input.mp4", "--strength", "0"], "strength must be more than 0 and at most 1"),
        (["--init-video", "{inputs}/input.mp4", "--strength", "1.5"], "strength must be more than 0 and at most 1"),
        (["--init-video", "{inputs}/input.mp4", "--strength", "0.2"], "strength 0.2 leaves none of the 2 steps"),
        (["--strength", "0.5"], "need an --init-video, an --init-image, a --controlnet or an --ip-adapter"),
        (["--ip-adapter", "{inputs}/ip-adapter.safetensors"], "give both --ip-adapter and --ip-image"),
        (
            [
                "--ip-adapter",
                "{inputs}/ip-adapter.safetensors",
                "--ip-image",
                "{inputs}/look.png",
                "--image-encoder",
                "{bad}/empty",
            ],
            "expected a CLIP vision model folder",
        ),
    ],
)
def test_bad_control_inputs_exit_2_with_one_sentence(
    tmp_path, tiny_base, tiny_motion_module_file, inputs, bad_inputs, capsys, flags, said
):
    flags = [flag.format(bad=bad_inputs, inputs=inputs) for flag in flags]
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", *flags) == 2
    error = capsys.readouterr().err
    assert said in error and error.count("\n") == 1 and "Traceback" not in error, error
    assert not (tmp_path / "o.gif").exists()


def test_preprocess_canny_writes_edge_frames_of_a_video(tmp_path, inputs):
    from animatediff import read_video
    from animatediff.cli import main

    assert (
        main(
            [
                "preprocess",
                "canny",
                str(inputs / "input.mp4"),
                "-o",
                str(tmp_path / "edges"),
                "--frames",
                "3",
                "--width",
                "16",
                "--height",
                "16",
            ]
        )
        == 0
    )
    edges = read_video(tmp_path / "edges")
    assert edges.shape == (3, 16, 16, 3) and set(np.unique(edges)) <= {0, 255} and edges.any()


def test_the_embedded_restyling_rows_score_the_worlds_own_input_clips():
    from animatediff.shapes.metrics import score_video
    from lab.control_report import input_clip

    prompt = "a blue square moving up on a black background"
    clip = input_clip(prompt, 2, 32)
    assert clip.shape == (16, 32, 32, 3) and score_video(clip, prompt)["motion"] == 1.0
    assert np.array_equal(clip, input_clip(prompt, 2, 32)) and not np.array_equal(clip, input_clip(prompt, 3, 32))


def test_the_keyframe_ceiling_row_is_the_embedded_autoencoders_round_trip_of_the_clips_ends():
    from animatediff.embedded import FOLDER
    from animatediff.loading import build_pipeline
    from lab.control_report import input_clip, through_autoencoder
    from lab.report import Row, _spec

    pipeline = build_pipeline(_spec(Row("", "", []), FOLDER))
    prompt = "a red triangle moving right on a white background"
    found = through_autoencoder(pipeline, prompt, 1, steps=25)
    assert found["first text"] == found["last text"] == 1.0  # a triangle survives the round trip
    assert 0 < found["first diff"] < 5 and 0 < found["last diff"] < 5  # close, not equal: 4×4 pixels per latent
    assert found == through_autoencoder(pipeline, prompt, 1, steps=25)  # the posterior sample comes from the seed
    assert found["first diff"] != through_autoencoder(pipeline, prompt, 2, steps=25)["first diff"]
    clip = input_clip(prompt, 1, 32, trail=True)
    keyframe_alone = float(np.abs(clip[0].astype(np.float32) - clip[-1]).mean())
    assert found["first diff"] < keyframe_alone / 3  # far closer to its keyframe than the clip's other end is


def controlnet_to_ldm(controlnet: ControlNetModel, unet) -> dict[str, torch.Tensor]:
    """A ControlNet in the single-file layout the original ControlNet releases use (`control_model.*` keys)."""
    from diffusers import UNet2DConditionModel

    from ldm_layout import unet_to_ldm

    carrier = UNet2DConditionModel.from_config(unet.config)
    carrier.load_state_dict(controlnet.state_dict(), strict=False)  # the encoder half the two share
    shared = ("input_blocks.", "middle_block.", "time_embed.")
    state = {
        f"control_model.{key.removeprefix('model.diffusion_model.')}": value
        for key, value in unet_to_ldm(carrier).items()
        if key.removeprefix("model.diffusion_model.").startswith(shared)
    }
    weights = controlnet.state_dict()
    blocks = len(controlnet.controlnet_cond_embedding.blocks)
    renames = {
        "controlnet_mid_block": "middle_block_out.0",
        "controlnet_cond_embedding.conv_in": "input_hint_block.0",
        "controlnet_cond_embedding.conv_out": "input_hint_block.14",
    }
    zero = len(controlnet.controlnet_down_blocks)
    renames |= {f"controlnet_down_blocks.{i}": f"zero_convs.{i}.0" for i in range(zero)}
    renames |= {f"controlnet_cond_embedding.blocks.{i}": f"input_hint_block.{2 * (i + 1)}" for i in range(blocks)}
    for diffusers_name, ldm_name in renames.items():
        for kind in ("weight", "bias"):
            state[f"control_model.{ldm_name}.{kind}"] = weights[f"{diffusers_name}.{kind}"]
    return state


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_a_single_file_controlnet_loads_through_diffusers_with_the_bases_config(tmp_path, models, layout):
    from safetensors.torch import save_file

    from animatediff.conditioning import load_controlnet

    folder = models[0]
    unet, controlnet = load_base(folder).unet, random_controlnet(folder)
    state = controlnet_to_ldm(controlnet, unet) if layout == "ldm" else controlnet.state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, tmp_path / "control.safetensors")
    loaded = load_controlnet(tmp_path / "control.safetensors", unet)
    expected = controlnet.state_dict()
    assert set(loaded.state_dict()) == set(expected)
    assert all(torch.equal(value, expected[key]) for key, value in loaded.state_dict().items())
