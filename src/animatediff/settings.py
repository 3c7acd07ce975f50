"""What one output is made with, resolved completely before any weights load.

`ModelSpec` names every file of the video model and its scales; `Sample` is the clip (prompt, seed,
size, steps, guidance); `Settings` adds where and how it is written. The same `Settings` object goes
to the pipeline (its `sample`) and into the output's JSON sidecar, so a sidecar repeats its run
exactly. Nothing here imports torch: the command line builds and checks these before loading anything.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from animatediff import __version__
from animatediff.errors import ConfigError
from animatediff.families import DEFAULT, SCHEDULERS
from animatediff.files import read_json
from animatediff.sampling.options import ContextRequest, ContextSettings, Interpolation

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 … 2**64 - 1
RANDOM_SEED = -1  # as in the official prompt configs: draw one (and record it)


def random_seed() -> int:
    return secrets.randbelow(2**31)


def resolve_seed(seed: int | None) -> int:
    """`None` or -1 → a random seed; anything else must be a seed torch can take."""
    if seed is None or seed == RANDOM_SEED:
        return random_seed()
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be between 0 and 2**64 - 1, or -1 for a random one; got {seed}.")
    return seed


def check_finite(value: float, name: str) -> float:
    """`value`, or an error naming `name` when it is NaN or infinite."""
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value}.")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """Every file that makes up one video model, with its scale."""

    base: Path
    motion_module: Path | None
    dreambooth: Path | None = None
    loras: tuple[tuple[Path, float], ...] = ()
    domain_adapter: Path | None = None
    domain_adapter_scale: float = 1.0
    motion_loras: tuple[tuple[Path, float], ...] = ()
    motion_module_settings: dict = field(default_factory=dict)  # MotionModuleConfig fields to override
    scheduler: dict = field(default_factory=lambda: dict(DEFAULT.scheduler))  # the noise schedule (betas, offset)
    sampler: str = "ddim"  # a key of families.SCHEDULERS

    def __post_init__(self):
        object.__setattr__(self, "loras", tuple(self.loras))
        object.__setattr__(self, "motion_loras", tuple(self.motion_loras))
        check_finite(self.domain_adapter_scale, "the domain adapter scale")
        if self.sampler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.sampler!r}; expected one of {', '.join(SCHEDULERS)}.")
        for name, entries in (("LoRA", self.loras), ("MotionLoRA", self.motion_loras)):
            for path, scale in entries:
                check_finite(scale, f"the scale of {name} {path}")

    def files(self) -> list[tuple[str, Path]]:
        named = [
            ("base", self.base),
            ("motion module", self.motion_module),
            ("dreambooth", self.dreambooth),
            ("domain adapter", self.domain_adapter),
        ]
        named += [("lora", path) for path, _ in self.loras]
        named += [("motion lora", path) for path, _ in self.motion_loras]
        return [(name, Path(path)) for name, path in named if path is not None]

    def check(self) -> None:
        """Fail early, naming the file, if anything is missing or does not fit together."""
        for name, path in self.files():
            if not path.exists():
                raise ConfigError(f"{name} {path}: no such file or folder.")
        if self.dreambooth is not None and Path(self.dreambooth).is_file() and not Path(self.base).is_dir():
            raise ConfigError(
                f"dreambooth {self.dreambooth}: a personalized checkpoint takes its configs from the base, "
                f"so the base must be a diffusers folder; {self.base} is a file."
            )
        if self.motion_loras and self.motion_module is None:
            raise ConfigError("a MotionLoRA needs a motion module to adapt; none was given.")

    def describe(self) -> dict:
        """The resolved settings, for the output's sidecar."""

        def absolute(path: Path | None) -> str | None:
            return None if path is None else str(Path(path).resolve())

        return {
            "base": absolute(self.base),
            "motion_module": absolute(self.motion_module),
            "dreambooth": absolute(self.dreambooth),
            "loras": [{"path": absolute(p), "scale": s} for p, s in self.loras],
            "domain_adapter": absolute(self.domain_adapter),
            "domain_adapter_scale": self.domain_adapter_scale if self.domain_adapter is not None else None,
            "motion_loras": [{"path": absolute(p), "scale": s} for p, s in self.motion_loras],
            "motion_module_settings": self.motion_module_settings,
            "scheduler": {
                "name": self.sampler,
                "class": SCHEDULERS[self.sampler][0],
                **self.scheduler,
                **SCHEDULERS[self.sampler][1],
            },
        }


MAX_FREE_INIT = 10  # FreeInit iterations: each one samples the whole clip again


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

    def __post_init__(self):
        for name in ("steps", "frames", "width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1; got {value!r}.")
        check_finite(self.guidance_scale, "guidance_scale")
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


@dataclass(frozen=True, kw_only=True)
class TimeControls:
    """The time controls a user asked for, before the clip's length and the motion module are known:
    keyframed prompts (`keyframes`: frame → text; a negative frame counts from the clip's end), context
    windows, FreeNoise's noise shuffle and FreeInit."""

    keyframes: tuple[tuple[int, str], ...] = ()
    interpolation: Interpolation = "linear"
    context: ContextRequest = field(default_factory=ContextRequest)
    noise_shuffle: bool = False
    free_init: int | None = None

    def apply(self, sample: Sample, table: int | None) -> tuple[Sample, str | None]:
        """`sample` with these controls resolved for its length and a motion module whose position table holds
        `table` frames (None: none), and a note when context windows were chosen for the user."""
        try:
            context, note = self.context.resolve(sample.frames, table)
        except ValueError as error:
            raise ConfigError(f"{error}.") from error
        if self.noise_shuffle and context is None:
            raise ConfigError("the noise shuffle (FreeNoise) reschedules the noise of later context windows; this "
                              "clip has none (give a context length shorter than the clip).")  # fmt: skip
        prompt_map = self._prompt_map(sample)
        prompt = dict(prompt_map).get(0, sample.prompt)
        changed = replace(sample, prompt=prompt, prompt_map=prompt_map, prompt_interpolation=self.interpolation,
                          context=context, noise_shuffle=self.noise_shuffle, free_init=self.free_init)  # fmt: skip
        return changed, note

    def _prompt_map(self, sample: Sample) -> tuple[tuple[int, str], ...]:
        if not self.keyframes:
            return ()
        frames = {}
        for frame, text in self.keyframes:
            resolved = frame + sample.frames if frame < 0 else frame
            if not 0 <= resolved < sample.frames:
                raise ConfigError(f"the prompt keyframe {frame} is outside the {sample.frames}-frame clip (frames "
                                  f"0 to {sample.frames - 1}, or -1 to -{sample.frames} from the end).")  # fmt: skip
            frames[resolved] = text
        if 0 not in frames:
            if not sample.prompt:
                raise ConfigError("frame 0 needs a prompt: give PROMPT or a keyframe at frame 0.")
            frames[0] = sample.prompt
        return tuple(sorted(frames.items()))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything one output is made with: what the pipeline receives and what its sidecar records."""

    sample: Sample
    model: ModelSpec
    output: Path
    fps: float = 8.0
    device: str = "cpu"
    dtype: str = "float32"
    overrides: tuple[str, ...] = ()  # settings a command-line flag gave over a prompt config's own
    notes: tuple[str, ...] = ()  # what was decided for the user (context windows chosen for a long clip, …)

    def sidecar(self) -> dict:
        record = {**asdict(self.sample), **self.model.describe(), "device": self.device, "dtype": self.dtype,
                  "animatediff_version": __version__}  # fmt: skip
        record["prompt_map"] = {str(frame): text for frame, text in self.sample.prompt_map}
        if self.overrides:
            record["overridden_by_flags"] = list(self.overrides)
        if self.notes:
            record["notes"] = list(self.notes)
        return record


def base_geometry(base: Path) -> tuple[int, int]:
    """(the frame size an image model was trained at, its VAE's downscale factor), read from a diffusers
    folder's configs (the UNet's sample size × the factor); (512, 8) for a single-file SD1.x checkpoint."""
    base = Path(base)
    if not base.is_dir():
        return 512, 8
    unet, vae = (read_json(base / part / "config.json", f"{part} config") for part in ("unet", "vae"))
    try:
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
        return int(unet["sample_size"]) * factor, factor
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{base}: its unet/ and vae/ configs do not give a frame size ({error}).") from error


def base_frame_size(base: Path) -> int:
    """The frame size an image model was trained at (512 for SD1.5)."""
    return base_geometry(base)[0]


def check_sample(model: ModelSpec, sample: Sample) -> None:
    """Refuse a clip the model cannot make: a width or height that is not a multiple of the VAE's
    downscale factor, more steps than the noise schedule has."""
    factor = base_geometry(model.base)[1]
    if sample.width % factor or sample.height % factor:
        raise ConfigError(
            f"width and height must be positive multiples of {factor} (this VAE's downscale factor); "
            f"got {sample.width}×{sample.height}."
        )
    schedule = model.scheduler.get("num_train_timesteps", 1000)
    if sample.steps > schedule:
        raise ConfigError(f"steps must be at most {schedule} (the noise schedule's length); got {sample.steps}.")


@dataclass(frozen=True)
class Job:
    """One model and the clips to make with it (one pipeline serves them all), with the time controls
    asked for them (resolved per clip: `TimeControls.apply`)."""

    model: ModelSpec
    samples: tuple[Sample, ...]
    time: TimeControls = field(default_factory=TimeControls)
