"""Making outputs from complete `Settings`: the one function the command line (and any other front end)
calls. Consecutive outputs with the same models share one pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from animatediff.export import write_video
from animatediff.loading import build_pipeline
from animatediff.settings import Settings

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def generate_outputs(runs: list[Settings], split_guidance: bool = False, compile: bool = False,
                     progress: bool = True) -> Iterator[tuple[Settings, Path]]:  # fmt: skip
    """Make and write each output of `runs` in order; yields each run with the path written.

    The sidecar beside each output is the run's own `Settings.sidecar()`."""
    pipeline, built_for, conditions = None, None, None
    for run in runs:
        if (run.model, run.device, run.dtype, run.control) != built_for:
            pipeline = conditions = None  # free the last ones before loading the next
            pipeline = build_pipeline(run.model, torch.device(run.device), DTYPES[run.dtype], split_guidance, compile)
            if run.control.given:
                from animatediff.conditioning import ConditionLoader

                conditions = ConditionLoader(pipeline, run.control)
            built_for = (run.model, run.device, run.dtype, run.control)
        frames = pipeline(run.sample, progress, conditions(run.sample) if conditions else None)
        yield run, write_video(frames, run.output, fps=run.fps, settings=run.sidecar())
