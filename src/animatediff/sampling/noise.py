"""FreeNoise (Qiu et al. 2023): the initial noise of frames after the first window repeats the window's
own noise, shuffled, so that far-apart windows start from related noise and a long clip keeps one look.

Frames `[length + k·stride, …)` take a seeded permutation of the `stride` frames `length` before them,
drawn from the run's generator, in order, as diffusers' `shuffle_context` noise type does.
"""

from __future__ import annotations

import torch


def shuffle_noise(noise: torch.Tensor, length: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """`noise` (b c f h w) with the frames after the first `length` rescheduled; a new tensor."""
    noise = noise.clone()
    num_frames = noise.shape[2]
    for target in range(length, num_frames, stride):
        source = target - length
        count = min(stride, num_frames - source)
        order = torch.arange(source, source + count)[torch.randperm(count, generator=generator)]
        kept = min(count, num_frames - target)
        noise[:, :, target : target + kept] = noise[:, :, order[:kept]]
    return noise
