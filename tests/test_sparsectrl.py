"""SparseCtrl: the encoder and the pipeline's controlnet branch as the official code computes them.

The official pipeline and diffusers' `AnimateDiffSparseControlNetPipeline` share the encoder (zero latent
input, the condition and its mask at keyframes only, residuals times the scale on the whole guidance batch
at every step); they differ in how RGB keyframes become latents, which the official code draws from the
unseeded global RNG. So: the encoder and the whole loop reproduce diffusers on the same tiny weights (with
the motion GroupNorm pooled as diffusers computes it), scribble images through the pipeline and RGB
keyframes as given latents; the keyframe encoding is the VAE's posterior sample as the official code takes
it, drawn from the clip's own generator here."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffSparseControlNetPipeline, SparseControlNetModel
from PIL import Image

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.control import Conditions
from animatediff.control.sparsectrl import SparseCtrlInput, crop_like_official, keyframe_latents, normalize_condition
from animatediff.errors import AnimateDiffError, CheckpointError, ConfigError
from animatediff.formats import Kind, identify, save_state_dict, to_motion_adapter
from animatediff.formats.sparsectrl import describe, load_sparsectrl, save_sparsectrl
from animatediff.sparsectrl import SparseCtrlConfig, build_sparsectrl
from helpers import assert_bfloat16_close

SIZE = dict(height=32, width=32)
FRAMES, SEED = 6, 11


def random_sparsectrl(folder, kind: str = "scribble", seed: int = 9, over_frames: bool = True):
    """A SparseCtrl encoder for the tiny base (latent factor 2: one halving for scribbles), all weights random."""
    latent = kind == "rgb"
    config = SparseCtrlConfig(
        latent_condition=latent,
        conditioning_channels=4 if latent else 3,
        embedding_channels=(16, 32),
        norm_over_frames=over_frames,
    )
    model = build_sparsectrl(load_base(folder).unet, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model


def scribbles(count: int, seed: int = 0) -> np.ndarray:
    """White strokes on black, count×32×32×3 uint8."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 32, 32, 3), np.uint8)
    for image in images:
        for _ in range(3):
            row, col = rng.integers(2, 30, 2)
            image[row, max(0, col - 8) : col + 8] = 255
            image[max(0, row - 8) : row + 8, col] = 255
    return images


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def ours(models) -> AnimateDiffPipeline:
    folder, motion_module = models
    return AnimateDiffPipeline.from_components(load_base(folder), motion_module)


def theirs(models, sparsectrl, tmp_path) -> AnimateDiffSparseControlNetPipeline:
    folder, motion_module = models
    save_sparsectrl(sparsectrl, tmp_path / "sparsectrl", "diffusers")
    base = load_base(folder)
    pipeline = AnimateDiffSparseControlNetPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        motion_adapter=to_motion_adapter(motion_module),
        scheduler=official_scheduler(),
        controlnet=SparseControlNetModel.from_pretrained(tmp_path / "sparsectrl").eval(),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def diffusers_frames(pipeline, indices, scale, **inputs) -> np.ndarray:
    output = pipeline(
        prompt="a red circle",
        negative_prompt="blurry",
        num_inference_steps=5,
        num_frames=FRAMES,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
        guidance_scale=7.5,
        controlnet_frame_indices=list(indices),
        controlnet_conditioning_scale=scale,
        **SIZE,
        **inputs,
    )
    return output.frames[0]


def our_frames(pipeline, conditions: Conditions, frames: int = FRAMES, **settings) -> np.ndarray:
    clip = pipeline.generate(
        "a red circle",
        negative_prompt="blurry",
        steps=5,
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
# The encoder


@pytest.mark.parametrize("kind", ["scribble", "rgb"])
def test_the_encoder_reproduces_diffusers_sparse_controlnet(models, tmp_path, kind):
    sparsectrl = random_sparsectrl(models[0], kind)
    save_sparsectrl(sparsectrl, tmp_path / "folder", "diffusers")
    reference = SparseControlNetModel.from_pretrained(tmp_path / "folder").eval()
    size = 16 if kind == "rgb" else 32
    torch.manual_seed(0)
    sample, text = torch.randn(2, 4, FRAMES, 16, 16), torch.randn(2, 77, 32)
    condition = torch.randn(sparsectrl.config.conditioning_channels, FRAMES, size, size)
    mask = (torch.rand(1, FRAMES, size, size) > 0.5).float()
    with torch.no_grad():
        residuals = sparsectrl(sample, torch.tensor(500), text, condition, mask, 0.7)
        down, mid = reference(
            sample,
            torch.tensor(500),
            encoder_hidden_states=text.repeat_interleave(FRAMES, 0),
            controlnet_cond=condition[None],
            conditioning_mask=mask[None],
            conditioning_scale=0.7,
            return_dict=False,
        )
    assert len(residuals.down) == len(down) == 6  # conv_in, 2 + a downsampler, 2
    for ours_, theirs_ in zip(residuals.down, down, strict=True):
        assert ours_.shape == theirs_.shape and (ours_ - theirs_).abs().max() < 1e-5
    assert (residuals.mid - mid).abs().max() < 1e-5 and mid.abs().mean() > 1e-3
    # the noisy latents are not shown to it: other latents, the same residuals
    with torch.no_grad():
        other = sparsectrl(torch.randn_like(sample), torch.tensor(500), text, condition, mask, 0.7)
    assert torch.equal(other.mid, residuals.mid)


def test_official_and_diffusers_layouts_load_to_the_same_encoder(models, tmp_path):
    folder = models[0]
    unet = load_base(folder).unet
    sparsectrl = random_sparsectrl(folder, "rgb", over_frames=False)
    official = sparsectrl.official_state_dict()
    assert (
        "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight"
        in official
        and not any("attention_blocks.1" in key for key in official)
    )
    assert official["controlnet_cond_embedding.weight"].shape == (32, 5, 3, 3)  # 4 latent channels and the mask
    torch.save({"controlnet": official}, tmp_path / "v3_sd15_sparsectrl_rgb.ckpt")  # as the official release
    save_sparsectrl(sparsectrl, tmp_path / "diffusers.safetensors", "diffusers")
    save_sparsectrl(sparsectrl, tmp_path / "folder", "diffusers")
    for path in ("v3_sd15_sparsectrl_rgb.ckpt", "diffusers.safetensors", "folder"):
        loaded = load_sparsectrl(tmp_path / path, unet).official_state_dict()
        assert loaded.keys() == official.keys()
        assert all(torch.equal(loaded[key], value) for key, value in official.items()), path
    assert identify(tmp_path / "v3_sd15_sparsectrl_rgb.ckpt").kind == Kind.SPARSECTRL
    details = describe(tmp_path / "v3_sd15_sparsectrl_rgb.ckpt")
    assert details["condition"] == "rgb" and details["motion_modules"] == 4
    assert details["block_out_channels"] == (32, 64)


def test_a_scribble_encoder_is_told_from_its_weights(models, tmp_path):
    sparsectrl = random_sparsectrl(models[0], "scribble")
    save_sparsectrl(sparsectrl, tmp_path / "scribble.safetensors")
    details = describe(tmp_path / "scribble.safetensors")
    assert details["condition"] == "scribble" and details["conditioning_channels"] == 3


# ---------------------------------------------------------------------------------------------------
# The pipeline


def test_scribble_keyframes_reproduce_diffusers_pipeline(models, tmp_path):
    sparsectrl = random_sparsectrl(models[0], "scribble")
    images = scribbles(2)
    expected = diffusers_frames(
        theirs(models, sparsectrl, tmp_path),
        [0, 5],
        0.8,
        conditioning_frames=[Image.fromarray(image) for image in images],
    )
    sparse = SparseCtrlInput(sparsectrl, as_tensor(images), (0, -1), FRAMES, scale=0.8)  # -1: the last frame
    frames = our_frames(ours(models), Conditions(sparsectrl=sparse))
    assert np.abs(frames - expected).max() < 1e-4
    plain = our_frames(ours(models), Conditions())
    assert np.abs(frames - plain).mean() > 1e-3


def test_rgb_keyframe_latents_reproduce_diffusers_pipeline(models, tmp_path, monkeypatch):
    sparsectrl = random_sparsectrl(models[0], "rgb")
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    reference = theirs(models, sparsectrl, tmp_path)
    # diffusers draws the keyframes' posterior sample itself; hand it the same latents instead
    monkeypatch.setattr(reference, "prepare_image", lambda *args: latents[None].permute(0, 2, 1, 3, 4))
    expected = diffusers_frames(reference, [2], 1.0, conditioning_frames=[Image.new("RGB", (32, 32))])
    frames = our_frames(ours(models), Conditions(sparsectrl=SparseCtrlInput(sparsectrl, latents, (2,), FRAMES)))
    assert np.abs(frames - expected).max() < 1e-4


def test_keyframe_latents_are_the_vae_posterior_sample_from_the_given_generator(models):
    vae = load_base(models[0]).vae
    images = as_tensor(scribbles(2, seed=4))
    latents = keyframe_latents(vae, images, torch.Generator().manual_seed(3))
    expected = vae.encode(images * 2 - 1).latent_dist.sample(torch.Generator().manual_seed(3))
    assert torch.allclose(latents, expected * vae.config.scaling_factor, atol=1e-6)
    again = keyframe_latents(vae, images, torch.Generator().manual_seed(3))
    other = keyframe_latents(vae, images, torch.Generator().manual_seed(4))
    assert torch.equal(latents, again) and not torch.allclose(latents, other)


def test_the_condition_holds_keyframes_and_mask_at_their_frames_only(models):
    sparsectrl = random_sparsectrl(models[0], "rgb")
    keyframes = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 4, 2, 2) + 1
    condition, mask = SparseCtrlInput(sparsectrl, keyframes, (0, -1), 5).condition()
    assert condition.shape == (4, 5, 2, 2) and mask.shape == (1, 5, 2, 2)
    assert torch.equal(condition[:, 0], keyframes[0]) and torch.equal(condition[:, 4], keyframes[1])
    assert not condition[:, 1:4].any() and mask[0, :, 0, 0].tolist() == [1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="keyframe index 5 is outside the clip's 5 frames"):
        SparseCtrlInput(sparsectrl, keyframes, (0, 5), 5)


def test_context_windows_give_each_window_its_own_keyframes(models):
    from animatediff.sampling.options import ContextSettings

    sparsectrl = random_sparsectrl(models[0], "scribble", over_frames=False)
    pipeline = ours(models)
    sparse = SparseCtrlInput(sparsectrl, as_tensor(scribbles(1)), (7,), 10)
    windowed = our_frames(
        pipeline, Conditions(sparsectrl=sparse), frames=10, context=ContextSettings(length=6, overlap=2)
    )
    plain = our_frames(pipeline, Conditions(), frames=10, context=ContextSettings(length=6, overlap=2))
    difference = np.abs(windowed - plain).mean(axis=(1, 2, 3))
    assert difference[7] > 1e-3  # the keyframe's own frame changed


def test_keyframes_of_the_wrong_kind_or_size_are_refused(models):
    sparsectrl = random_sparsectrl(models[0], "scribble")
    latents = torch.zeros(1, 4, 16, 16)  # latents for a scribble encoder, which takes 3-channel images
    with pytest.raises(AnimateDiffError, match="this scribble SparseCtrl takes images of \\(3, 32, 32\\)"):
        our_frames(ours(models), Conditions(sparsectrl=SparseCtrlInput(sparsectrl, latents, (0,), FRAMES)))


# ---------------------------------------------------------------------------------------------------
# Files and images


def test_files_that_are_not_sparsectrl_are_refused_naming_what_they_are(models, tmp_path):
    from diffusers import ControlNetModel

    unet = load_base(models[0]).unet
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    save_state_dict({k: v.contiguous() for k, v in controlnet.state_dict().items()}, tmp_path / "cn.safetensors")
    with pytest.raises(CheckpointError, match="cn.safetensors: this file is a ControlNet \\(give it with --controlnet"):
        load_sparsectrl(tmp_path / "cn.safetensors", unet)
    save_state_dict({"lora_unet_down.lora_down.weight": torch.zeros(4, 8)}, tmp_path / "lora.safetensors")
    with pytest.raises(CheckpointError, match="this file is an image LoRA, not a SparseCtrl encoder"):
        load_sparsectrl(tmp_path / "lora.safetensors", unet)


def test_an_encoder_for_another_base_width_is_refused(models, tmp_path):
    sparsectrl = random_sparsectrl(models[0], "rgb")
    save_sparsectrl(sparsectrl, tmp_path / "sc.safetensors")
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel(
        block_out_channels=(64, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        sample_size=8,
    )
    with pytest.raises(ConfigError, match="was made for an image UNet with widths \\(32, 64\\)"):
        load_sparsectrl(tmp_path / "sc.safetensors", other)


def test_condition_images_are_cropped_as_the_official_script_crops_them():
    # 60×30 to a 32×32 clip: the centred 30×30 square, resized bilinearly
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, 15:45] = 200
    cropped = crop_like_official(Image.fromarray(pixels), 32, 32)
    assert cropped.shape == (32, 32, 3) and (cropped == 200).all()
    # a matching aspect ratio: the whole image, only resized
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8))
    assert np.array_equal(crop_like_official(image, 48, 32), np.asarray(image.resize((48, 32), Image.BILINEAR)))
    # taller than wide: the centred band of full width
    tall = np.zeros((40, 20, 3), np.uint8)
    tall[10:30] = 90
    assert (crop_like_official(Image.fromarray(tall), 20, 20) == 90).all()


def test_normalized_condition_images_are_grey_and_stretched():
    images = torch.stack([torch.full((3, 4, 4), 0.2), torch.rand(3, 4, 4)])
    images[0, :, 0, 0] = 0.6
    normalized = normalize_condition(images)
    assert torch.equal(normalized[:, 0], normalized[:, 1]) and torch.equal(normalized[:, 0], normalized[:, 2])
    assert normalized[0].max() == 1 and normalized[0].min() == 0 and normalized[1].min() == 0


# ---------------------------------------------------------------------------------------------------
# The command line and official prompt configs


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, models):
    """An official-layout RGB SparseCtrl (.ckpt under `controlnet`, per-frame motion GroupNorm as the
    official encoders), a scribble one, two keyframe images and the conftest's base and motion module."""
    folder = tmp_path_factory.mktemp("sparse_cli")
    unet = load_base(models[0]).unet
    rgb = random_sparsectrl(models[0], "rgb", over_frames=False)
    torch.save({"controlnet": rgb.official_state_dict()}, folder / "v3_sd15_sparsectrl_rgb.ckpt")
    save_sparsectrl(random_sparsectrl(models[0], "scribble", over_frames=False), folder / "scribble.safetensors")
    rng = np.random.default_rng(1)
    for name in ("first.png", "last.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    del unet
    return folder


def run_cli(tiny_base, tiny_motion_module_file, *extra) -> int:
    from animatediff.cli import main

    return main(
        [
            "generate",
            "a red circle",
            "--base",
            str(tiny_base),
            "--motion-module",
            str(tiny_motion_module_file),
            "--frames",
            "6",
            "--steps",
            "3",
            "--seed",
            "4",
            "--width",
            "32",
            "--height",
            "32",
            *map(str, extra),
        ]
    )


def read_frames_folder(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))]).astype(int)


def test_cli_keyframes_match_the_library_and_are_recorded(tiny_base, tiny_motion_module_file, cli_files, tmp_path):
    import json

    from animatediff import load_motion_module
    from animatediff.media import read_image

    ckpt = cli_files / "v3_sd15_sparsectrl_rgb.ckpt"
    assert (
        run_cli(
            tiny_base,
            tiny_motion_module_file,
            "--sparsectrl",
            f"{ckpt}:0.8",
            "--control-image",
            f"0:{cli_files / 'first.png'}",
            f"--control-image=-1:{cli_files / 'last.png'}",
            "-o",
            tmp_path / "flags",
        )
        == 0
    )
    pipeline = AnimateDiffPipeline.from_components(load_base(tiny_base), load_motion_module(tiny_motion_module_file))
    images = torch.stack(
        [
            as_tensor(read_image(cli_files / name, "", (32, 32), crop_like_official)[None])[0]
            for name in ("first.png", "last.png")
        ]
    )
    sparse = SparseCtrlInput(load_sparsectrl(ckpt, pipeline.unet.unet), images, (0, -1), 6, 0.8, encode=True)
    clip = pipeline(
        "a red circle",
        num_frames=6,
        steps=3,
        seed=4,
        height=32,
        width=32,
        progress=False,
        conditions=Conditions(sparsectrl=sparse),
    )
    assert np.abs(read_frames_folder(tmp_path / "flags") - clip.astype(int)).max() <= 1
    assert (
        run_cli(
            tiny_base,
            tiny_motion_module_file,
            "--sparsectrl",
            f"{ckpt}:0.8",
            "--control-image",
            f"0:{cli_files / 'first.png'}",
            f"--control-image=-1:{cli_files / 'last.png'}",
            "--dtype",
            "bfloat16",
            "-o",
            tmp_path / "bf16",
        )
        == 0
    )
    assert_bfloat16_close(clip, read_frames_folder(tmp_path / "bf16"))
    settings = json.loads((tmp_path / "flags.json").read_text())
    assert settings["sparsectrl"]["path"] == str(ckpt.resolve()) and settings["sparsectrl"]["scale"] == 0.8
    assert settings["control_frames"] == [0, -1] and settings["control_images"][1] == str(cli_files / "last.png")
    assert "right after its initial noise" in settings["keyframe_noise"]


def test_the_official_prompt_config_runs_unchanged(tiny_base, tiny_motion_module_file, cli_files, tmp_path):
    import yaml

    settings = {
        "controlnet_additional_kwargs": {
            "set_noisy_sample_input_to_zero": True,
            "use_simplified_condition_embedding": True,
            "conditioning_channels": 4,
            "use_motion_module": True,
            "motion_module_resolutions": [1, 2, 4, 8],
            "motion_module_mid_block": False,
            "motion_module_type": "Vanilla",
            "motion_module_kwargs": {"num_attention_heads": 8},
        }
    }
    (tmp_path / "latent_condition.yaml").write_text(yaml.safe_dump(settings))
    entry = {
        "motion_module": str(tiny_motion_module_file),
        "controlnet_config": "latent_condition.yaml",
        "controlnet_path": str(cli_files / "v3_sd15_sparsectrl_rgb.ckpt"),
        "controlnet_image_indexs": [0, -1],
        "controlnet_images": [str(cli_files / "first.png"), str(cli_files / "last.png")],
        "H": 32,
        "W": 32,
        "L": 6,
        "seed": [4],
        "steps": 3,
        "guidance_scale": 7.5,
        "prompt": ["a red circle"],
        "n_prompt": [""],
    }
    (tmp_path / "prompts.yaml").write_text(yaml.safe_dump([entry]))
    from animatediff.cli import main

    assert (
        main(
            [
                "generate",
                "--base",
                str(tiny_base),
                "--config",
                str(tmp_path / "prompts.yaml"),
                "--output-dir",
                str(tmp_path / "out"),
                "--format",
                "png",
            ]
        )
        == 0
    )
    assert (
        run_cli(
            tiny_base,
            tiny_motion_module_file,
            "--sparsectrl",
            cli_files / "v3_sd15_sparsectrl_rgb.ckpt",
            "--control-image",
            f"0:{cli_files / 'first.png'}",
            f"--control-image=-1:{cli_files / 'last.png'}",
            "-o",
            tmp_path / "flags",
        )
        == 0
    )
    (made,) = [path for path in (tmp_path / "out").iterdir() if path.is_dir()]
    assert np.array_equal(read_frames_folder(made), read_frames_folder(tmp_path / "flags"))


def test_control_latents_replace_the_encoding(tiny_base, tiny_motion_module_file, cli_files, tmp_path):
    from animatediff import load_motion_module

    latents = np.random.default_rng(3).standard_normal((2, 4, 16, 16)).astype(np.float32)
    np.save(tmp_path / "latents.npy", latents)
    ckpt = cli_files / "v3_sd15_sparsectrl_rgb.ckpt"
    assert (
        run_cli(
            tiny_base,
            tiny_motion_module_file,
            "--sparsectrl",
            ckpt,
            "--control-latents",
            tmp_path / "latents.npy",
            "--control-frames",
            "0,5",
            "-o",
            tmp_path / "lat",
        )
        == 0
    )
    pipeline = AnimateDiffPipeline.from_components(load_base(tiny_base), load_motion_module(tiny_motion_module_file))
    sparse = SparseCtrlInput(load_sparsectrl(ckpt, pipeline.unet.unet), torch.from_numpy(latents), (0, 5), 6)
    clip = pipeline(
        "a red circle",
        num_frames=6,
        steps=3,
        seed=4,
        height=32,
        width=32,
        progress=False,
        conditions=Conditions(sparsectrl=sparse),
    )
    assert np.abs(read_frames_folder(tmp_path / "lat") - clip.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sparsectrl", "rgb.ckpt", "--control-image", "6:first.png"], "keyframe index 6 is outside the clip's 6"),
        (["--sparsectrl", "rgb.ckpt", "--control-image=-7:first.png"], "keyframe index -7 is outside"),
        (["--sparsectrl", "rgb.ckpt", "--control-image", "0:notes.txt"], "control image notes.txt: not an image"),
        (["--sparsectrl", "rgb.ckpt", "--control-image", "0:missing.png"], "control image missing.png: no such file"),
        (["--sparsectrl", "cn.safetensors", "--control-image", "0:first.png"], "this file is a ControlNet (give it"),
        (["--sparsectrl", "lora.safetensors", "--control-image", "0:first.png"], "this file is an image LoRA, not a"),
        (["--sparsectrl", "wide.safetensors", "--control-image", "0:first.png"], "was made for an image UNet with"),
        (["--sparsectrl", "scribble.safetensors", "--control-latents", "latents.npy"], "scribble SparseCtrl takes"),
        (["--sparsectrl", "rgb.ckpt", "--control-latents", "bad.npy"], "control latents bad.npy: expected floats of"),
        (["--control-image", "0:first.png"], "give the SparseCtrl encoder with --sparsectrl"),
        (["--sparsectrl", "rgb.ckpt"], "needs keyframes: --control-image FRAME:PATH"),
        (["--sparsectrl", "rgb.ckpt", "--control-image", "first.png"], "expected FRAME:PATH with a whole-number"),
    ],
)
def test_bad_sparsectrl_inputs_exit_2_naming_the_value(
    tiny_base, tiny_motion_module_file, cli_files, tmp_path, monkeypatch, capsys, extra, message
):
    from diffusers import ControlNetModel, UNet2DConditionModel

    monkeypatch.chdir(tmp_path)
    for name in ("first.png", "notes.txt", "scribble.safetensors"):
        (tmp_path / name).write_bytes((cli_files / name).read_bytes())
    (tmp_path / "rgb.ckpt").write_bytes((cli_files / "v3_sd15_sparsectrl_rgb.ckpt").read_bytes())
    np.save(tmp_path / "latents.npy", np.zeros((1, 4, 16, 16), np.float32))
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 16), np.float32))
    unet = load_base(tiny_base).unet
    if "cn.safetensors" in extra:
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
        save_state_dict({k: v.contiguous() for k, v in controlnet.state_dict().items()}, tmp_path / "cn.safetensors")
    save_state_dict({"lora_unet_down.lora_down.weight": torch.zeros(4, 8)}, tmp_path / "lora.safetensors")
    if "wide.safetensors" in extra:
        wide = UNet2DConditionModel(
            block_out_channels=(64, 64),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
            sample_size=8,
        )
        save_sparsectrl(build_sparsectrl(wide, SparseCtrlConfig()), tmp_path / "wide.safetensors")
    assert run_cli(tiny_base, tiny_motion_module_file, *extra, "-o", "x.gif") == 2
    assert message in capsys.readouterr().err


def test_inspect_names_it_and_convert_writes_either_layout(models, cli_files, tmp_path, capsys):
    from animatediff.cli import main

    source = cli_files / "v3_sd15_sparsectrl_rgb.ckpt"
    assert main(["inspect", str(source)]) == 0
    shown = capsys.readouterr().out
    assert "a SparseCtrl encoder (official layout)" in shown and "condition: rgb" in shown
    assert "motion_modules: 4" in shown and "block_out_channels: (32, 64)" in shown
    assert main(["convert", str(source), str(tmp_path / "folder"), "--to", "diffusers"]) == 0
    assert main(["convert", str(tmp_path / "folder"), str(tmp_path / "back.safetensors"), "--to", "official"]) == 0
    assert main(["inspect", str(tmp_path / "folder")]) == 0
    assert "a SparseCtrl encoder (diffusers layout)" in capsys.readouterr().out
    reference = SparseControlNetModel.from_pretrained(tmp_path / "folder")  # diffusers reads what convert wrote
    assert reference.config.use_simplified_condition_embedding and reference.config.motion_max_seq_length == 32
    unet = load_base(models[0]).unet
    expected = load_sparsectrl(source, unet).official_state_dict()
    again = load_sparsectrl(tmp_path / "back.safetensors", unet).official_state_dict()
    assert all(torch.equal(again[key], value) for key, value in expected.items())
