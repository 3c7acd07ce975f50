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
from animatediff.control.sparsectrl import (
    SparseCtrlConfig,
    SparseCtrlInput,
    build_sparsectrl,
    crop_like_official,
    describe,
    keyframe_latents,
    load_sparsectrl,
    normalize_condition,
    save_sparsectrl,
)
from animatediff.errors import AnimateDiffError, CheckpointError, ConfigError
from animatediff.formats import Kind, identify, save_state_dict, to_motion_adapter
from helpers import random_motion_module, save_tiny_base, tiny_config

SIZE = dict(height=32, width=32)
FRAMES, SEED = 6, 11


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = save_tiny_base(tmp_path_factory.mktemp("base"), seed=3)
    return folder, random_motion_module(tiny_config(norm_over_frames=True), seed=5)


def random_sparsectrl(folder, kind: str = "scribble", seed: int = 9, over_frames: bool = True):
    """A SparseCtrl encoder for the tiny base (latent factor 2: one halving for scribbles), all weights random."""
    latent = kind == "rgb"
    config = SparseCtrlConfig(latent_condition=latent, conditioning_channels=4 if latent else 3,
                              embedding_channels=(16, 32), norm_over_frames=over_frames)  # fmt: skip
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
        vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
        motion_adapter=to_motion_adapter(motion_module), scheduler=official_scheduler(),
        controlnet=SparseControlNetModel.from_pretrained(tmp_path / "sparsectrl").eval(),
    )  # fmt: skip
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def diffusers_frames(pipeline, indices, scale, **inputs) -> np.ndarray:
    output = pipeline(prompt="a red circle", negative_prompt="blurry", num_inference_steps=5, num_frames=FRAMES,
                      generator=torch.Generator("cpu").manual_seed(SEED), output_type="np", guidance_scale=7.5,
                      controlnet_frame_indices=list(indices), controlnet_conditioning_scale=scale, **SIZE,
                      **inputs)  # fmt: skip
    return output.frames[0]


def our_frames(pipeline, conditions: Conditions, frames: int = FRAMES, **settings) -> np.ndarray:
    clip = pipeline.generate("a red circle", negative_prompt="blurry", steps=5, seed=SEED, num_frames=frames,
                             progress=False, guidance_scale=7.5, conditions=conditions, **SIZE, **settings)  # fmt: skip
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
        down, mid = reference(sample, torch.tensor(500), encoder_hidden_states=text.repeat_interleave(FRAMES, 0),
                              controlnet_cond=condition[None], conditioning_mask=mask[None], conditioning_scale=0.7,
                              return_dict=False)  # fmt: skip
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
    assert "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight" \
        in official and not any("attention_blocks.1" in key for key in official)  # fmt: skip
    assert official["controlnet_cond_embedding.weight"].shape == (32, 5, 3, 3)  # 4 latent channels and the mask
    torch.save({"controlnet": official}, tmp_path / "v3_sd15_sparsectrl_rgb.ckpt")  # as the official release
    save_sparsectrl(sparsectrl, tmp_path / "diffusers.safetensors", "diffusers")
    save_sparsectrl(sparsectrl, tmp_path / "folder", "diffusers")
    for path in ("v3_sd15_sparsectrl_rgb.ckpt", "diffusers.safetensors", "folder"):
        loaded = load_sparsectrl(tmp_path / path, unet).official_state_dict()
        assert loaded.keys() == official.keys()
        assert all(torch.equal(loaded[key], value) for key, value in official.items()), path
    info = identify(tmp_path / "v3_sd15_sparsectrl_rgb.ckpt")
    assert info.kind == Kind.SPARSECTRL and info.details["condition"] == "rgb"
    assert info.details["motion_modules"] == 4 and info.details["block_out_channels"] == (32, 64)


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
    expected = diffusers_frames(theirs(models, sparsectrl, tmp_path), [0, 5], 0.8,
                                conditioning_frames=[Image.fromarray(image) for image in images])  # fmt: skip
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
    with pytest.raises(ConfigError, match="keyframe index 5 is outside the clip's 5 frames"):
        SparseCtrlInput(sparsectrl, keyframes, (0, 5), 5)


def test_context_windows_give_each_window_its_own_keyframes(models):
    from animatediff.sampling.options import ContextSettings

    sparsectrl = random_sparsectrl(models[0], "scribble", over_frames=False)
    pipeline = ours(models)
    sparse = SparseCtrlInput(sparsectrl, as_tensor(scribbles(1)), (7,), 10)
    windowed = our_frames(pipeline, Conditions(sparsectrl=sparse), frames=10,
                          context=ContextSettings(length=6, overlap=2))  # fmt: skip
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

    other = UNet2DConditionModel(block_out_channels=(64, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                 norm_num_groups=32, sample_size=8)  # fmt: skip
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
