"""FreeInit (Wu et al. 2023): sample, re-noise the result to the first timestep, keep its low spatial and
temporal frequencies and take the high ones from fresh noise, then sample again.

The low-pass filter is a 3-D Butterworth filter over (frames, height, width) with diffusers' defaults
(order 4, spatial and temporal stop frequency 0.25), so a run repeats `enable_free_init`'s numbers.
"""

from __future__ import annotations

import torch
import torch.fft as fft


def butterworth_low_pass(
    frames: int, height: int, width: int, order: int = 4, spatial_stop: float = 0.25, temporal_stop: float = 0.25
) -> torch.Tensor:
    """The filter's gain at every centred frequency of an (f, h, w) grid, in [0, 1]."""
    if spatial_stop == 0 or temporal_stop == 0:
        return torch.zeros(frames, height, width)
    t = (spatial_stop / temporal_stop) * (2 * torch.arange(frames, dtype=torch.float64) / frames - 1)
    h = 2 * torch.arange(height, dtype=torch.float64) / height - 1
    w = 2 * torch.arange(width, dtype=torch.float64) / width - 1
    squared = t[:, None, None] ** 2 + h[None, :, None] ** 2 + w[None, None, :] ** 2
    return (1 / (1 + (squared / spatial_stop**2) ** order)).float()


def mix_frequencies(low: torch.Tensor, high: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """The low frequencies of `low` and the high ones of `high` (both b c f h w), through `low_pass`."""
    dims = (-3, -2, -1)
    low_spectrum = fft.fftshift(fft.fftn(low, dim=dims), dim=dims)
    high_spectrum = fft.fftshift(fft.fftn(high, dim=dims), dim=dims)
    mixed = low_spectrum * low_pass + high_spectrum * (1 - low_pass)
    return fft.ifftn(fft.ifftshift(mixed, dim=dims), dim=dims).real
