"""Motion scale and effect: how strongly the motion modules act, per frame and per denoising step.

ComfyUI-AnimateDiff-Evolved's two knobs, with its meaning: the **scale** multiplies the keys of the motion
modules' temporal attention (so the query-key products, before the softmax: above 1 each frame attends more
sharply to the frames most like it, more motion; below 1 more evenly, less), the **effect** blends each motion
module's output with its input (`x + effect · (module(x) − x)`: 0 is the image model alone). Both are given
per frame as keyframes `FRAME → value`, linear in between and held before the first and after the last; the
scale may be multiplied, per step, from a fraction of the steps on. Pure numbers here; the video UNet applies
them (`motion_module.MotionStrength`). No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

Keys = tuple[tuple[int, float], ...]  # FRAME → value, frames increasing


def per_frame(keys: Keys, frames: Sequence[int]) -> list[float] | None:
    """The value at each of `frames` (clip frame indices), linear between keyframes; None when every value is 1
    (the module as trained: the video UNet then runs exactly as without the option)."""
    if not keys:
        return None
    values = [_at(keys, frame) for frame in frames]
    return None if all(value == 1.0 for value in values) else values


def _at(keys: Keys, frame: int) -> float:
    if frame <= keys[0][0]:
        return keys[0][1]
    for (start, low), (end, high) in pairwise(keys):
        if frame <= end:
            return low + (high - low) * (frame - start) / (end - start)
    return keys[-1][1]


def step_factor(keys: tuple[tuple[float, float], ...], step: int, steps: int) -> float:
    """The scale's factor at step `step` (0-based) of `steps`: the value of the last keyframe whose fraction of
    the steps has been reached (1 before the first)."""
    reached = [value for fraction, value in keys if step / steps >= fraction]
    return reached[-1] if reached else 1.0


def scaled(keys: Keys, factor: float) -> Keys:
    """Every keyframe's value times `factor` (empty keys: 1 everywhere)."""
    return tuple((frame, value * factor) for frame, value in keys or ((0, 1.0),))


def as_keys(value: float | Keys | None) -> Keys:
    """A request's motion scale or effect as keyframes: one number holds from frame 0; None: no keyframes (1)."""
    if value is None:
        return ()
    return ((0, float(value)),) if isinstance(value, (int, float)) else tuple(value)
