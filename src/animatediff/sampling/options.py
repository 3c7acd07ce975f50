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


DEFAULT_LENGTH, DEFAULT_OVERLAP = 16, 4


@dataclass(frozen=True)
class ContextRequest:
    """What a user asked of the context windows (None: not said), before the clip and the motion module
    are known."""

    length: int | None = None
    overlap: int | None = None
    schedule: Schedule | None = None
    fuse: Fuse | None = None
    scope: Scope | None = None
    loop: bool = False

    def given(self) -> bool:
        return self.loop or any(
            value is not None for value in (self.length, self.overlap, self.schedule, self.fuse, self.scope)
        )

    def resolve(self, frames: int, table: int | None) -> tuple[ContextSettings | None, str | None]:
        """The context a clip of `frames` frames is made with, for a motion module whose position table holds
        `table` frames (None: no motion module), and a note when windows were chosen for the user. Raises
        `ValueError` with one sentence for settings that cannot work."""
        if not self.given() and (table is None or frames <= table):
            return None, None
        length = self.length or min(DEFAULT_LENGTH, table or DEFAULT_LENGTH)
        if table is not None and length > table:
            raise ValueError(
                f"the context length {length} is longer than the motion module's position table "
                f"({table} frames); use at most {table}"
            )
        overlap = DEFAULT_OVERLAP if self.overlap is None else self.overlap
        if overlap >= length:
            raise ValueError(f"the context overlap ({overlap}) must be less than the context length ({length})")
        if self.loop and frames <= length:
            raise ValueError(f"a loop needs more frames than one context window ({length}); got {frames}")
        schedule = "looped" if self.loop else self.schedule or "uniform"
        context = ContextSettings(length, overlap, schedule, self.fuse or "pyramid", self.scope or "unet")
        note = None
        if not self.given():
            note = (
                f"the clip's {frames} frames exceed the motion module's {table}-frame position table, so it "
                f"was made in context windows of {length} frames overlapping by {overlap}"
            )
        return context, note
