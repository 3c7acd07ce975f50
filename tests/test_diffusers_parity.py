"""Same weights in diffusers' AnimateDiffPipeline (pooled motion GroupNorm) give the same frames."""

import numpy as np
import torch
from diffusers import AnimateDiffPipeline as DiffusersAnimateDiffPipeline

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.formats import to_motion_adapter
from helpers import random_motion_module, save_tiny_base, tiny_config

SETTINGS = dict(num_frames=6, height=32, width=32, guidance_scale=7.5)


def test_frames_match_diffusers_animatediff_pipeline(tmp_path):
    folder = save_tiny_base(tmp_path / "base", seed=3)
    motion_module = random_motion_module(tiny_config(norm_over_frames=True), seed=5)
    base = load_base(folder)
    reference = DiffusersAnimateDiffPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        motion_adapter=to_motion_adapter(motion_module),
        scheduler=official_scheduler(),
    )
    reference.set_progress_bar_config(disable=True)
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
