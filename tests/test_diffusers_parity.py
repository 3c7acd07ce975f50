"""Same weights in diffusers' AnimateDiffPipeline (pooled motion GroupNorm) give the same frames."""

import numpy as np
import torch
from diffusers import AnimateDiffPipeline as DiffusersAnimateDiffPipeline

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.formats import to_motion_adapter
from helpers import random_motion_module, save_tiny_base, tiny_config

SETTINGS = dict(num_frames=6, height=32, width=32, guidance_scale=7.5)


def _reference(base, motion_module) -> DiffusersAnimateDiffPipeline:
    """diffusers' own pipeline on the same weights."""
    reference = DiffusersAnimateDiffPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        motion_adapter=to_motion_adapter(motion_module),
        scheduler=official_scheduler(),
    )
    reference.set_progress_bar_config(disable=True)
    return reference


def test_frames_match_diffusers_animatediff_pipeline(tmp_path):
    folder = save_tiny_base(tmp_path / "base", seed=3)
    motion_module = random_motion_module(tiny_config(norm_over_frames=True), seed=5)
    base = load_base(folder)
    reference = _reference(base, motion_module)
    expected = reference(
        "a red circle",
        negative_prompt="blurry",
        num_inference_steps=4,
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
        **SETTINGS,
    ).frames[0]

    ours = AnimateDiffPipeline.from_components(load_base(folder), motion_module)
    video = ours.generate("a red circle", negative_prompt="blurry", steps=4, seed=11, progress=False, **SETTINGS)
    frames = video.permute(0, 2, 3, 1).numpy()
    assert frames.shape == expected.shape == (6, 32, 32, 3)
    assert np.abs(frames - expected).max() < 1e-4
    assert frames.std() > 0.01  # a real picture, not a constant


def test_clip_skip_2_matches_diffusers_clip_skip_1(tmp_path):
    """A1111's CLIP skip 2 (the penultimate layer, through the final layer norm) is diffusers' `clip_skip=1`.
    diffusers skips the prompt's layers only; A1111 and ComfyUI skip the negative prompt's too, and so does this
    package: without guidance (no negative half) the frames are diffusers' own."""
    folder = save_tiny_base(tmp_path / "base", seed=3)
    motion_module = random_motion_module(tiny_config(norm_over_frames=True), seed=5)
    base = load_base(folder)
    reference = _reference(base, motion_module)
    if not hasattr(
        base.text_encoder, "text_model"
    ):  # diffusers' clip_skip reads text_model, which transformers 5 drops
        object.__setattr__(base.text_encoder, "text_model", base.text_encoder)  # an alias, not a submodule
    settings = {**SETTINGS, "guidance_scale": 1.0}
    generator = torch.Generator("cpu").manual_seed(11)
    expected = reference(
        "a red circle", num_inference_steps=3, generator=generator, output_type="np", clip_skip=1, **settings
    )
    ours = AnimateDiffPipeline.from_components(load_base(folder), motion_module)
    frames = ours.generate("a red circle", steps=3, seed=11, progress=False, clip_skip=2, **settings)
    unskipped = ours.generate("a red circle", steps=3, seed=11, progress=False, **settings)
    frames, unskipped = (video.permute(0, 2, 3, 1).numpy() for video in (frames, unskipped))
    assert np.abs(frames - expected.frames[0]).max() < 1e-4
    assert np.abs(frames - unskipped).max() > 1e-2  # the skip changes the clip
    theirs, _ = reference.encode_prompt("a red circle", "cpu", 1, False, clip_skip=1)
    states = ours.encode_prompt("a red circle", "blurry", guidance=True, clip_skip=2)
    assert torch.allclose(states[1:], theirs, atol=1e-6)  # the prompt's half, with guidance too
