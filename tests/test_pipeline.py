import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from helpers import random_motion_module

SETTINGS = dict(num_frames=4, height=16, width=24, steps=3, seed=3, progress=False)


def pipeline(tiny_base, dtype=torch.float32, scheduler=None):
    return AnimateDiffPipeline.from_components(load_base(tiny_base, dtype), random_motion_module(), scheduler)


def test_output_is_uint8_frames_of_the_requested_size(tiny_base):
    frames = pipeline(tiny_base)("a cat", **SETTINGS)
    assert frames.dtype == np.uint8 and frames.shape == (4, 16, 24, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_stays_close_to_float32(tiny_base, dtype):
    reference = pipeline(tiny_base)("a cat", **SETTINGS).astype(int)
    frames = pipeline(tiny_base, dtype)("a cat", **SETTINGS).astype(int)
    assert np.abs(frames - reference).mean() < 4


def test_in_bfloat16_the_scheduler_still_steps_float32_latents(tiny_base):
    pipe = pipeline(tiny_base, torch.bfloat16)
    seen, step = [], pipe.scheduler.step

    def recording(eps, t, latents, *args, **kwargs):
        seen.append((eps.dtype, latents.dtype))
        return step(eps, t, latents, *args, **kwargs)

    pipe.scheduler.step = recording
    pipe("a cat", **SETTINGS)
    assert seen == [(torch.float32, torch.float32)] * 3  # the UNet runs in bfloat16; guidance and steps do not


def test_guidance_scale_one_skips_the_unconditional_batch(tiny_base):
    calls = []
    pipe = pipeline(tiny_base)
    pipe.unet.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    pipe("a cat", guidance_scale=1.0, **SETTINGS)
    assert calls == [1, 1, 1]
    calls.clear()
    pipe("a cat", guidance_scale=7.5, **SETTINGS)
    assert calls == [2, 2, 2]


def test_negative_prompt_changes_the_result(tiny_base):
    pipe = pipeline(tiny_base)
    plain = pipe("a cat", **SETTINGS).astype(int)
    steered = pipe("a cat", negative_prompt="a dog", **SETTINGS).astype(int)
    assert np.abs(plain - steered).mean() > 1


@pytest.mark.parametrize("scheduler_class", [DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler])
def test_any_diffusers_scheduler_can_drive_sampling(tiny_base, scheduler_class):
    config = official_scheduler().config
    frames = pipeline(tiny_base, scheduler=scheduler_class.from_config(config))("a cat", **SETTINGS)
    again = pipeline(tiny_base, scheduler=scheduler_class.from_config(config))("a cat", **SETTINGS)
    assert frames.shape == (4, 16, 24, 3)
    np.testing.assert_array_equal(frames, again)


def test_split_guidance_gives_the_same_frames(tiny_base):
    frames = pipeline(tiny_base)("a cat", **SETTINGS).astype(int)
    split = pipeline(tiny_base)
    split.split_guidance = True
    assert np.abs(split("a cat", **SETTINGS).astype(int) - frames).max() <= 1
