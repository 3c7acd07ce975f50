"""The settings of time control, as a clip records them (importing this needs no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Schedule = Literal["uniform", "looped"]
Fuse = Literal["pyramid", "flat", "overlap-linear"]
Scope = Literal["unet", "motion"]
Interpolation = Literal["linear", "slerp", "none"]


@dataclass(frozen=True)
class ContextSettings:
    """How a clip longer than one window is denoised: windows of `length` frames overlapping by `overlap`,
    laid out by `schedule`, averaged with `fuse` weights; `scope` unet runs the whole video UNet on each
    window, motion only the motion modules' attention (the image layers see every frame)."""

    length: int = 16
    overlap: int = 4
    schedule: Schedule = "uniform"
    fuse: Fuse = "pyramid"
    scope: Scope = "unet"

    def __post_init__(self):
        for name, kind in (("schedule", Schedule), ("fuse", Fuse), ("scope", Scope)):
            value = getattr(self, name)
            if value not in get_args(kind):
                raise ValueError(f"context {name} must be one of {', '.join(get_args(kind))}; got {value!r}")
        if self.length < 2 or not 0 <= self.overlap < self.length:
            raise ValueError(
                f"the context overlap must be at least 0 and less than the context length; got length "
                f"{self.length}, overlap {self.overlap}"
            )

    @property
    def stride(self) -> int:
        return self.length - self.overlap
