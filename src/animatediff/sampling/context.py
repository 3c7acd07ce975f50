"""Context windows: which frames each pass of the video UNet sees, and how the passes are fused.

A motion module attends over at most as many frames as its position table holds (24 or 32). A longer
clip is denoised in overlapping windows of `length` frames; every step, each window's noise prediction
is computed on its own and the predictions are averaged per frame with fuse weights, so each frame's
prediction blends every window that saw it.

- `uniform`: a window every `length − overlap` frames, the last one moved back to end on the last frame;
- `looped`: windows that wrap around the clip's end (the last frames flow into the first), starting at
  an offset that changes from step to step (the bit-reversed step number, a "ordered halving" sequence:
  0, 1/2, 1/4, 3/4, …, of the clip), and, for long clips, also taken with every 2nd and 4th frame.

Fuse weights over a window's frames: `pyramid` (1, 2, …, middle, …, 2, 1), `flat` (all 1) and
`overlap-linear` (1 in the middle, falling linearly over the `overlap` frames at each end).
"""

from __future__ import annotations

import math

import torch

from animatediff.sampling.options import ContextSettings, Fuse


def uniform_windows(num_frames: int, length: int, overlap: int) -> list[list[int]]:
    """Windows of `length` frames every `length − overlap` frames; the last one ends on the last frame."""
    if num_frames <= length:
        return [list(range(num_frames))]
    stride = length - overlap
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [list(range(start, start + length)) for start in starts]


def ordered_halving(step: int) -> float:
    """The step number's 64 bits in reverse order, as a fraction of 1: 0, 1/2, 1/4, 3/4, 1/8, … — offsets
    that spread evenly over the clip however many steps there are."""
    return int(f"{step:064b}"[::-1], 2) / 2**64


def looped_windows(num_frames: int, length: int, overlap: int, step: int) -> list[list[int]]:
    """Windows that wrap around the clip's end, from an offset that moves each step; for clips several
    windows long, also windows of every 2nd (and 4th) frame, so distant frames are denoised together."""
    if num_frames <= length:
        return [list(range(num_frames))]
    dilations = [2**level for level in range(min(3, math.ceil(math.log2(num_frames / length)) + 1))]
    windows = []
    for dilation in dilations:
        span = length * dilation
        if span > num_frames:
            break
        offset = round(num_frames * ordered_halving(step)) + int(ordered_halving(step) * dilation)
        for start in range(offset, offset + num_frames, span - overlap):
            windows.append([frame % num_frames for frame in range(start, start + span, dilation)])
    return windows


def windows(num_frames: int, step: int, settings: ContextSettings) -> list[list[int]]:
    """The frame indices each pass of step `step` sees."""
    if settings.schedule == "looped":
        return looped_windows(num_frames, settings.length, settings.overlap, step)
    return uniform_windows(num_frames, settings.length, settings.overlap)


def fuse_weights(length: int, fuse: Fuse, overlap: int = 0) -> torch.Tensor:
    """Each frame's weight in its window (`length` frames) when windows are averaged."""
    if fuse == "flat":
        return torch.ones(length)
    if fuse == "pyramid":
        middle = (length + 1) // 2
        rising = list(range(1, middle + 1))
        return torch.tensor(rising + rising[: length - middle][::-1], dtype=torch.float32)
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    weights = torch.ones(length)
    if overlap:
        weights[:overlap], weights[length - overlap :] = ramp, ramp.flip(0)
    return weights
