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


def test_latents_that_become_nan_stop_the_run_naming_the_step(tiny_base):
    from animatediff import AnimateDiffError

    pipe = pipeline(tiny_base)
    step = pipe.scheduler.step
    pipe.scheduler.step = lambda eps, t, latents, **kwargs: (step(eps, t, latents, **kwargs)[0] * float("nan"),)
    with pytest.raises(AnimateDiffError, match="NaN or infinite at step 1 of 3; nothing was written"):
        pipe("a cat", **SETTINGS)


def test_a_nan_run_on_the_command_line_writes_nothing(tmp_path, capsys, monkeypatch):
    from diffusers import DDIMScheduler

    from animatediff.cli import main

    step = DDIMScheduler.step
    monkeypatch.setattr(DDIMScheduler, "step", lambda self, *a, **k: (step(self, *a, **k)[0] * float("inf"),))
    assert main(["generate", "a red circle", "--frames", "2", "--steps", "2", "-o", str(tmp_path / "o.gif")]) == 2
    assert "became NaN or infinite" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_progress_counts_context_windows_when_a_step_has_several(tiny_base, capsys):
    from animatediff.sampling.options import ContextSettings

    pipe = pipeline(tiny_base)
    context = ContextSettings(length=4, overlap=1)
    pipe("a cat", **{**SETTINGS, "num_frames": 10, "progress": True}, context=context)
    bar = capsys.readouterr().err
    windows = 3 * 3  # three windows of 4 frames cover 10 frames at stride 3, in each of 3 steps
    assert f"{windows}/{windows}" in bar and ("window/s" in bar or "s/window" in bar)
    pipe("a cat", **{**SETTINGS, "progress": True})
    assert "3/3" in capsys.readouterr().err  # a clip of one window counts steps
