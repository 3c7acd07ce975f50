"""One clip to make: `Sample`, every value resolved, and the rules any clip obeys whatever made it (the
planner checks them before anything loads, the pipeline again when it is called directly). No torch here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from animatediff.errors import ConfigError
from animatediff.families import DEFAULT
from animatediff.sampling.options import ContextSettings, Interpolation
from animatediff.sampling.speed import StepCache

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 … 2**64 - 1
MAX_FREE_INIT = 10  # FreeInit iterations: each one samples the whole clip again
DECODE_CHUNK = 4  # frames the VAE decodes at a time: as fast as 8 or 16 on the CPU at 0.73× and 0.48× their
# memory (bench/RESULTS.md); the official loop decodes 1, 1.3× slower


def check_frame_size(width: int, height: int, factor: int) -> None:
    """Refuse a frame size that is not a positive multiple of the VAE's downscale factor."""
    if width % factor or height % factor or width <= 0 or height <= 0:
        raise ConfigError(
            f"width and height must be positive multiples of {factor} (this VAE's downscale factor); "
            f"got {width}×{height}."
        )


def check_steps(steps: int, train_timesteps: int, offset: int) -> None:
    """Refuse more steps than the noise schedule has (offset timesteps stay inside the schedule)."""
    most = train_timesteps - offset
    if steps > most:
        raise ConfigError(
            f"steps must be at most {most} (the noise schedule's length less its timestep offset); got {steps}."
        )


def check_finite(value: float, name: str) -> float:
    """`value`, or an error naming `name` when it is NaN or infinite."""
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value}.")
    return value


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One clip to make with a model: every value resolved (a random seed already drawn).

    Time controls (`animatediff.sampling`): `prompt_map` keyframes prompts, frame → text, frame 0
    included (empty: `prompt` for every frame), interpolated per frame by `prompt_interpolation`;
    `context` denoises a clip longer than one window in windows; `noise_shuffle` reschedules the noise
    of later windows from the first's (FreeNoise); `free_init` samples that many times, each from the
    last result's low frequencies (FreeInit; None: once, as usual)."""

    prompt: str
    negative_prompt: str = ""
    seed: int
    steps: int = DEFAULT.steps
    guidance_scale: float = DEFAULT.guidance_scale
    frames: int = 16
    width: int
    height: int
    prompt_map: tuple[tuple[int, str], ...] = ()
    prompt_interpolation: Interpolation = "linear"
    context: ContextSettings | None = None
    noise_shuffle: bool = False
    free_init: int | None = None
    clip_skip: int = 1  # A1111's CLIP skip: the text encoder's layer read, counted from the end
    prompt_syntax: str = "plain"  # how the prompts are read: a1111, comfy or plain (as written, cut at the length)
    # how strongly the motion modules act (`sampling.motion_strength`): FRAME → value, interpolated between frames
    # (empty: 1, as trained), and the scale's factor from a fraction of the steps on
    motion_scale: tuple[tuple[int, float], ...] = ()
    motion_effect: tuple[tuple[int, float], ...] = ()
    motion_scale_steps: tuple[tuple[float, float], ...] = ()
    # doing less per clip (`sampling.speed`): guidance on the first `guidance_end` of the steps only, the
    # unconditional half reused on alternate late steps, step caching
    guidance_end: float = 1.0
    guidance_reuse: bool = False
    cache: StepCache = StepCache()

    def __post_init__(self):
        for name in ("steps", "frames", "width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1; got {value!r}.")
        check_finite(self.guidance_scale, "guidance_scale")
        if isinstance(self.guidance_end, bool) or not 0 <= self.guidance_end <= 1:
            raise ConfigError(f"guidance_end must be a fraction of the steps from 0 to 1; got {self.guidance_end!r}.")
        if isinstance(self.clip_skip, bool) or not isinstance(self.clip_skip, int) or self.clip_skip < 1:
            raise ConfigError(f"clip_skip must be a whole number of at least 1; got {self.clip_skip!r}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be between 0 and 2**64 - 1; got {self.seed}.")
        self._check_time_controls()

    def _check_time_controls(self) -> None:
        if self.free_init is not None and not 1 <= self.free_init <= MAX_FREE_INIT:
            raise ConfigError(f"free_init must be between 1 and {MAX_FREE_INIT} iterations; got {self.free_init}.")
        if self.prompt_interpolation not in ("linear", "slerp", "none"):
            raise ConfigError(f"prompt_interpolation must be linear, slerp or none; got {self.prompt_interpolation!r}.")
        frames = [frame for frame, _ in self.prompt_map]
        if self.prompt_map and (frames[0] != 0 or frames != sorted(set(frames)) or frames[-1] >= self.frames):
            raise ConfigError(
                f"prompt_map keyframes must start at frame 0, increase and lie inside the {self.frames}-frame "
                f"clip; got frames {frames}."
            )
        empty = [frame for frame, text in self.prompt_map if not text.strip()]
        if empty:
            raise ConfigError(f"the prompt at keyframe {empty[0]} is empty; every keyframe needs a prompt.")
        for name in ("motion_scale", "motion_effect"):
            frames = [frame for frame, _ in getattr(self, name)]
            if frames and (frames != sorted(set(frames)) or frames[0] < 0 or frames[-1] >= self.frames):
                raise ConfigError(
                    f"{name} names frames {frames}; they must increase and lie inside the {self.frames}-frame clip "
                    f"(0 to {self.frames - 1})."
                )
