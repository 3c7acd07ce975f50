"""Doing less per clip: guidance that ends early or reuses its unconditional half, and step caching (DeepCache,
Pyramid Attention Broadcast), each against the uncached clip of the same tiny seeded model."""

import json

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel

from animatediff import AnimateDiffPipeline, load_base
from animatediff.cli import main
from animatediff.control.conditions import Conditions, ControlNetInput
from animatediff.motion_module import TemporalAttention
from animatediff.planner import Planner
from animatediff.request import Request
from animatediff.sampling.options import ContextSettings
from animatediff.sampling.speed import FAST, StepCache, attention_computed
from helpers import random_motion_module

SETTINGS = dict(num_frames=4, height=16, width=16, steps=6, seed=3, progress=False)
DEEP_BOUND = 0.005  # measured on this model: interval 3 moves the frames by 0.0015 on average (0.009 at most)


@pytest.fixture(scope="module")
def pipe(tiny_base):
    return AnimateDiffPipeline.from_components(load_base(tiny_base), random_motion_module())


def frames(pipe, **settings) -> np.ndarray:
    return pipe.generate("a cat", **{**SETTINGS, **settings}).numpy()


@pytest.fixture(scope="module")
def today(pipe):
    """The uncached clip, every step guided."""
    return frames(pipe)


def with_batches(pipe, **settings) -> tuple[list[int], np.ndarray]:
    """The batch of every video-UNet call of a clip, and its frames."""
    calls = []
    handle = pipe.unet.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    try:
        return calls, frames(pipe, **settings)
    finally:
        handle.remove()


def test_no_cache_and_every_step_guided_is_todays_clip(pipe, today):
    assert np.array_equal(frames(pipe, cache=StepCache("none"), guidance_end=1.0), today)
    assert np.array_equal(frames(pipe, cache=StepCache("deep", interval=1)), today)  # every step a full step


def test_guidance_ends_after_its_fraction_of_the_steps(pipe, today):
    batches, ended = with_batches(pipe, guidance_end=0.5)
    assert batches == [2, 2, 2, 1, 1, 1]
    assert 0 < np.abs(ended - today).mean() < 0.01
    assert np.array_equal(frames(pipe, guidance_end=0.0), frames(pipe, guidance_scale=1.0))


def test_guidance_reuse_skips_the_unconditional_half_on_alternate_late_steps(pipe, today):
    batches, reused = with_batches(pipe, guidance_reuse=True)
    assert batches == [2, 2, 2, 2, 1, 2]  # step 4: its conditional half and step 3's difference
    assert 0 < np.abs(reused - today).mean() < 0.002


def test_deep_cache_runs_the_deep_blocks_on_full_steps_only(pipe, today):
    mid_calls = []
    handle = pipe.unet.unet.mid_block.resnets[0].register_forward_hook(lambda *_: mid_calls.append(1))
    try:
        cached = frames(pipe, cache=StepCache("deep", interval=3))
    finally:
        handle.remove()
    assert len(mid_calls) == 2  # steps 0 and 3 of 6
    assert 0 < np.abs(cached - today).mean() < DEEP_BOUND
    quadratic = frames(pipe, cache=StepCache("deep", interval=3, schedule="quadratic"))
    assert 0 < np.abs(quadratic - today).mean() < DEEP_BOUND
    assert not pipe.unet.unet.mid_block.__dict__.get("forward")  # nothing left on the model after the call


def test_deep_cache_keeps_each_context_window_and_guidance_half_in_prompt_travel(pipe):
    travel = ((0, "a cat"), (5, "a dog"))  # prompt travel: per-frame text states, cut to a window and a half
    context = dict(num_frames=8, steps=4, context=ContextSettings(length=6, overlap=2), prompt_map=travel)
    uncached = frames(pipe, **context)
    assert np.array_equal(frames(pipe, cache=StepCache("deep", interval=1), **context), uncached)
    cached = frames(pipe, cache=StepCache("deep", interval=2), guidance_end=0.7, **context)
    assert 0 < np.abs(cached - uncached).mean() < DEEP_BOUND
    pipe.split_guidance = True
    try:
        split = frames(pipe, cache=StepCache("deep", interval=2), guidance_end=0.7, **context)
    finally:
        pipe.split_guidance = False
    assert np.abs(split - cached).max() < 1e-5  # the same features kept, one half at a time


def test_deep_cache_with_a_controlnet_matches_the_uncached_clip_at_interval_1(pipe, tiny_base, today):
    controlnet = ControlNetModel.from_unet(load_base(tiny_base).unet, conditioning_embedding_out_channels=(16, 32))
    torch.manual_seed(7)
    with torch.no_grad():
        for parameter in controlnet.parameters():
            parameter.normal_(0, 0.05)
    control = torch.rand(SETTINGS["num_frames"], 3, 16, 16, generator=torch.Generator().manual_seed(1))
    conditions = Conditions(controlnets=(ControlNetInput(controlnet.eval(), control, scale=0.8),))

    def clip(**settings):
        return pipe.generate("a cat", conditions=conditions, **{**SETTINGS, **settings}).numpy()

    uncached = clip()
    assert np.abs(uncached - today).mean() > 1e-3  # the ControlNet acts
    assert np.array_equal(clip(cache=StepCache("deep", interval=1)), uncached)
    assert 0 < np.abs(clip(cache=StepCache("deep", interval=2)) - uncached).mean() < DEEP_BOUND


def test_attention_broadcast_reuses_each_kind_over_its_own_range(pipe):
    temporal = [m for m in pipe.unet.motion_module.modules() if isinstance(m, TemporalAttention)]
    computed = []
    handles = [m.to_q.register_forward_hook(lambda *_: computed.append(1)) for m in temporal]
    try:
        cached = frames(pipe, steps=10, cache=StepCache("attention", interval=1))
    finally:
        for handle in handles:
            handle.remove()
    steps_computed = sum(attention_computed(step, 10, "temporal", 1) for step in range(10))
    assert steps_computed == 7 and len(computed) == steps_computed * len(temporal)  # steps 3, 5, 7 reuse
    assert 0 < np.abs(cached - frames(pipe, steps=10)).mean() < 0.001


def test_the_sidecar_records_the_speed_settings_and_fast_fills_the_unsaid_ones(tmp_path):
    planner = Planner()

    def sidecar(**said):
        request = Request(prompt="a red circle moving right", **said)
        return planner.plan(request, lambda sample: tmp_path / "clip.gif").sidecar()

    assert (sidecar()["cache"], sidecar()["guidance_end"]) == (
        {"mode": "none", "interval": 3, "depth": 0, "schedule": "uniform"},
        1.0,
    )
    preset = sidecar(fast=True)
    assert (preset["cache"], preset["guidance_end"]) == (
        {"mode": "deep", "interval": 4, "depth": 0, "schedule": "uniform"},
        0.25,
    )
    fast = sidecar(fast=True, cache_interval=2)
    assert fast["cache"]["mode"] == FAST["cache"] and fast["cache"]["interval"] == 2  # the explicit flag wins
    assert fast["guidance_end"] == FAST["guidance_end"] and fast["request"]["fast"] is True


def test_a_cached_clip_on_the_command_line_records_its_settings(tmp_path, tiny_base, tiny_motion_module_file):
    args = ["generate", "a cat", "--base", str(tiny_base), "--motion-module", str(tiny_motion_module_file)]
    args += ["--frames", "3", "--width", "16", "--height", "16", "--steps", "3", "-o", str(tmp_path / "c.gif")]
    assert main([*args, "--cache", "attention", "--cache-interval", "2", "--guidance-reuse"]) == 0
    sidecar = json.loads((tmp_path / "c.gif.json").read_text())
    assert sidecar["cache"] == {"mode": "attention", "interval": 2, "depth": 0, "schedule": "uniform"}
    assert sidecar["guidance_reuse"] is True and sidecar["request"]["cache"] == "attention"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cache", "fancy"], "argument --cache: invalid choice: 'fancy'"),
        (["--cache-interval", "0"], "argument --cache-interval: must be between 1 and 10; got 0"),
        (["--guidance-end", "1.5"], "argument --guidance-end: must be between 0 and 1; got 1.5"),
        (["--cache", "deep", "--cache-depth", "1"], "cache depth 1 is too deep for this UNet: it has 2 up blocks"),
    ],
)
def test_bad_speed_settings_exit_2(tmp_path, tiny_base, tiny_motion_module_file, capsys, flags, message):
    args = ["generate", "a cat", "--base", str(tiny_base), "--motion-module", str(tiny_motion_module_file)]
    args += ["--frames", "2", "--width", "16", "--height", "16", "--steps", "1", "-o", str(tmp_path / "o.gif")]
    assert main([*args, *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_the_benchmarks_only_keeps_the_uncached_run_and_refuses_a_name_that_is_no_setting(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "bench"))
    import step_cache as bench

    monkeypatch.setattr(bench, "SETTINGS", dict(bench.SETTINGS))
    assert bench.label("deep 4 + guidance-end 0.25") == "deep 4 + guidance-end 0.25 (--fast)"  # the preset's row
    assert bench.label("deep 3 + guidance-end 0.2") == "deep 3 + guidance-end 0.2"
    with pytest.raises(ValueError, match="not a setting: 'deep 4 \\+ guidance-end 0.25 \\(--fast\\)'"):
        bench.keep_only(["deep 4 + guidance-end 0.25 (--fast)"])
    bench.keep_only(["deep 4 + guidance-end 0.25"])
    assert list(bench.SETTINGS) == ["uncached", "deep 4 + guidance-end 0.25"]
