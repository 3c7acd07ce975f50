"""Making outputs from complete `Settings`: the one function the command line (and any other front end)
calls. Consecutive outputs with the same models share one pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch

from animatediff.control import Conditions
from animatediff.export import write_video
from animatediff.loading import build_pipeline
from animatediff.settings import Sample, Settings

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class OutputMaker:
    """Makes outputs one at a time, keeping the last pipeline (and its conditions' models) loaded while the
    next output uses the same models: the command line's loop and the web app's workers both use one."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.pipeline = self.conditions = self.built_for = self.conditions_for = None

    def conditions_of(self, run: Settings, sample: Sample) -> Conditions | None:
        """The conditions of `run`'s control inputs for `sample` (its size), their models loaded once."""
        control = run.control
        if not control.given:
            return None
        from animatediff.conditioning import ConditionLoader

        if self.conditions is None or ConditionLoader.models(control) != self.conditions_for:
            self.conditions = None
            self.conditions = ConditionLoader(self.pipeline, control)
            self.conditions_for = ConditionLoader.models(control)
        return self.conditions(sample, control)

    def make(self, run: Settings, on_step: Callable[[int, int], None] | None = None) -> Path:
        """Make and write `run`'s output (its sidecar is `run.sidecar()`); `on_step(done, steps)` after each
        denoising step."""
        control = run.control
        ip_adapter = (control.ip_adapter, control.ip_adapter_scale) if control.ip_adapter is not None else None
        built_for = (run.model, run.device, run.dtype, run.split_guidance, run.compile, ip_adapter)
        if built_for != self.built_for:
            self.pipeline = self.conditions = None  # free the last ones before loading the next
            device, dtype = torch.device(run.device), DTYPES[run.dtype]
            self.pipeline = build_pipeline(run.model, device, dtype, run.split_guidance, run.compile, ip_adapter)
            self.built_for = built_for
        if run.upscale is None:
            frames = self.pipeline(run.sample, self.progress, self.conditions_of(run, run.sample), on_step)
        else:
            from animatediff.finishing.upscaling import hires_fix

            conditions = partial(self.conditions_of, run)  # at the first pass's size, then at the second's
            frames = hires_fix(self.pipeline, run.sample, run.upscale, conditions, self.progress, on_step)
        settings = {**run.sidecar(), "prompt_chunks": self.pipeline.prompt_chunks(run.sample)}
        return write_video(frames, run.output, fps=run.fps, settings=settings)


def generate_outputs(runs: list[Settings], progress: bool = True) -> Iterator[tuple[Settings, Path]]:
    """Make and write each output of `runs` in order; yields each run with the path written.

    The sidecar beside each output is the run's own `Settings.sidecar()`."""
    maker = OutputMaker(progress)
    for run in runs:
        yield run, maker.make(run)
