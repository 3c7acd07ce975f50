"""Prompt travel: keyframed prompts become one text state per frame.

A prompt map `{frame: prompt}` (frame 0 always present) gives the text at its keyframes; between two
keyframes each frame's text states are interpolated (`linear`, as diffusers' FreeNoise prompt
interpolation; `slerp`, along the great circle between the two states of each token; `none`, the
earlier keyframe's until the next one). After the last keyframe its prompt holds to the end.
"""

from __future__ import annotations

import torch

from animatediff.sampling.options import Interpolation


def slerp(start: torch.Tensor, end: torch.Tensor, fraction: float) -> torch.Tensor:
    """Spherical interpolation of each token's state (last axis), magnitudes interpolated linearly."""
    start_norm, end_norm = start.norm(dim=-1, keepdim=True), end.norm(dim=-1, keepdim=True)
    a, b = start / start_norm.clamp_min(1e-12), end / end_norm.clamp_min(1e-12)
    angle = torch.acos((a * b).sum(-1, keepdim=True).clamp(-1, 1))
    sine = torch.sin(angle)
    parallel = sine.abs() < 1e-6
    weight_a = torch.where(parallel, 1 - fraction, torch.sin((1 - fraction) * angle) / sine.where(~parallel, 1))
    weight_b = torch.where(parallel, fraction, torch.sin(fraction * angle) / sine.where(~parallel, 1))
    return (weight_a * a + weight_b * b) * ((1 - fraction) * start_norm + fraction * end_norm)


def frame_states(
    keyframes: list[int], states: torch.Tensor, num_frames: int, interpolation: Interpolation = "linear"
) -> torch.Tensor:
    """Per-frame text states (num_frames, tokens, dim) from the states of the sorted `keyframes` (k, tokens,
    dim); the first keyframe must be 0."""
    if not keyframes or keyframes[0] != 0 or sorted(set(keyframes)) != keyframes:
        raise ValueError(f"keyframes must start at 0 and increase; got {keyframes}")
    ends = [*keyframes[1:], num_frames - 1]
    frames = states[:1].repeat(num_frames, 1, 1)
    for index, (start, end) in enumerate(zip(keyframes, ends, strict=True)):
        later = states[min(index + 1, len(keyframes) - 1)]
        for frame in range(start, end + 1):
            fraction = (frame - start) / (end - start) if end > start else 0.0
            frames[frame] = _between(states[index], later, fraction, interpolation)
    return frames


def _between(start: torch.Tensor, end: torch.Tensor, fraction: float, interpolation: Interpolation) -> torch.Tensor:
    if interpolation == "none" or fraction == 0:
        return end if fraction >= 1 else start
    if interpolation == "slerp":
        return slerp(start, end, fraction)
    return (1 - fraction) * start + fraction * end
