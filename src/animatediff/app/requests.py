"""What a client may ask for: a `GenerateRequest` (the sidecar's settings, models by their names in the
app's lists), checked against `Limits`, and planned into the `Settings` the command line would make from
the same flags (the same checks, the same sidecar)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from animatediff.app.catalog import Catalog
from animatediff.errors import ConfigError
from animatediff.settings import Settings


class Scaled(BaseModel):
    """A LoRA or MotionLoRA by name, with its scale."""

    model_config = ConfigDict(extra="forbid")
    name: str
    scale: float = Field(1.0, allow_inf_nan=False)


class GenerateRequest(BaseModel):
    """One clip, with the sidecar's setting names; `seed` null or -1 draws one (the sidecar records it)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    frames: int = 16
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance_scale: float | None = Field(None, allow_inf_nan=False)
    seed: int | None = None
    fps: float = Field(8.0, gt=0, le=60, allow_inf_nan=False)
    format: Literal["gif", "mp4", "webm", "webp"] = "mp4"
    base: str = "shapes"
    dreambooth: str | None = None
    loras: list[Scaled] = []
    motion_module: str | None = None  # None: the embedded module with the embedded base; "none": still images
    motion_loras: list[Scaled] = []
    domain_adapter: str | None = None
    domain_adapter_scale: float = Field(1.0, allow_inf_nan=False)
    family: str | None = None
    scheduler: str | None = None
    context_length: int | None = None
    context_overlap: int | None = None
    loop: bool = False
    prompt_map: dict[int, str] = {}  # prompt travel: frame → prompt (frame 0's defaults to `prompt`)
    # image and video inputs: names of files the page uploaded into the outputs folder's uploads/
    init_image: str | None = None
    init_strength: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    init_video: str | None = None
    strength: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    sparsectrl: str | None = None
    sparsectrl_scale: float = Field(1.0, allow_inf_nan=False)
    control_image: str | None = None  # SparseCtrl's keyframe at frame 0


@dataclass(frozen=True)
class Limits:
    """The largest clip a request may ask for."""

    frames: int = 32
    size: int = 256
    steps: int = 50
    prompt_length: int = 1000

    @classmethod
    def for_device(cls, device: str) -> Limits:
        """Defaults that fit the device: a GPU makes SD1.5-size clips; a CPU the embedded model's."""
        return cls(frames=128, size=1024, steps=100) if device.startswith("cuda") else cls()


def limit_errors(request: GenerateRequest, limits: Limits) -> list[tuple[str, str]]:
    """(field, message) for every value out of bounds."""
    errors = []
    checks = [
        ("frames", request.frames, 1, limits.frames),
        ("width", request.width, 8, limits.size),
        ("height", request.height, 8, limits.size),
        ("steps", request.steps, 1, limits.steps),
        ("context_length", request.context_length, 2, limits.frames),
    ]
    for name, value, low, high in checks:
        if value is not None and not low <= value <= high:
            errors.append((name, f"must be between {low} and {high}; got {value}"))
    for name, text in [
        ("prompt", request.prompt),
        ("negative_prompt", request.negative_prompt),
        *((f"prompt_map.{frame}", text) for frame, text in request.prompt_map.items()),
    ]:
        if len(text) > limits.prompt_length:
            errors.append((name, f"must be at most {limits.prompt_length} characters; got {len(text)}"))
    for frame in request.prompt_map:
        if not 0 <= frame < request.frames:
            errors.append((f"prompt_map.{frame}", f"the frame must be within the clip's {request.frames} frames"))
    if request.guidance_scale is not None and not 0 <= request.guidance_scale <= 50:
        errors.append(("guidance_scale", f"must be between 0 and 50; got {request.guidance_scale}"))
    return errors


def resolved_errors(settings: Settings, limits: Limits) -> list[tuple[str, str]]:
    """(field, message) for the values a request left to the model (its size, its family's steps) that are
    beyond the limits."""
    sample = settings.sample
    checks = [
        ("width", sample.width, limits.size),
        ("height", sample.height, limits.size),
        ("steps", sample.steps, limits.steps),
    ]
    return [
        (name, f"the model's default {value} is above the limit {high}; give a smaller {name}")
        for name, value, high in checks
        if value > high
    ]


def flags(request: GenerateRequest, catalog: Catalog, output: Path, uploads: Path | None = None) -> list[str]:
    """The `generate` command line that makes `request` (models by their paths from `catalog`, which refuses
    names it does not list)."""
    words = [
        "generate",
        request.prompt,
        "--negative-prompt",
        request.negative_prompt,
        "--frames",
        str(request.frames),
        "--fps",
        str(request.fps),
        "--seed",
        str(-1 if request.seed is None else request.seed),
        "--base",
        str(catalog.path("base", request.base)),
        "-o",
        str(output),
    ]
    module = request.motion_module or ("shapes-motion" if request.base == "shapes" else None)
    if module is None:
        raise ConfigError("motion_module: choose a motion module (or 'none' for still images) for this base.")
    words += ["--motion-module", "none" if module == "none" else str(catalog.path("motion_module", module))]
    optional = {
        "--width": request.width,
        "--height": request.height,
        "--steps": request.steps,
        "--guidance-scale": request.guidance_scale,
        "--family": request.family,
        "--scheduler": request.scheduler,
        "--context-length": request.context_length,
        "--context-overlap": request.context_overlap,
    }
    words += [item for flag, value in optional.items() if value is not None for item in (flag, str(value))]
    if request.dreambooth:
        words += ["--dreambooth", str(catalog.path("dreambooth", request.dreambooth))]
    if request.domain_adapter:
        words += [
            "--domain-adapter",
            str(catalog.path("domain_adapter", request.domain_adapter)),
            "--domain-adapter-scale",
            str(request.domain_adapter_scale),
        ]
    for choice in request.loras:
        words += ["--lora", f"{catalog.path('lora', choice.name)}:{choice.scale}"]
    for choice in request.motion_loras:
        words += ["--motion-lora", f"{catalog.path('motion_lora', choice.name)}:{choice.scale}"]
    for frame, text in sorted(request.prompt_map.items()):
        words.append(f"--prompt-at={frame}:{text}")
    if request.loop:
        words.append("--loop")
    return words + _input_flags(request, catalog, uploads)


def _input_flags(request: GenerateRequest, catalog: Catalog, uploads: Path | None) -> list[str]:
    """The flags of the uploaded inputs (each taken by its bare name inside `uploads`) and of SparseCtrl."""

    def uploaded(name: str) -> str:
        if uploads is None:
            raise ConfigError("this app takes no uploaded inputs.")
        return str(uploads / Path(name).name)

    words = []
    if request.init_image:
        words += ["--init-image", uploaded(request.init_image)]
        words += ["--init-strength", str(request.init_strength)] if request.init_strength else []
    if request.init_video:
        words += ["--init-video", uploaded(request.init_video)]
        words += ["--strength", str(request.strength)] if request.strength else []
    if request.sparsectrl:
        words += ["--sparsectrl", f"{catalog.path('sparsectrl', request.sparsectrl)}:{request.sparsectrl_scale}"]
    if request.control_image:
        words += ["--control-image", f"0:{uploaded(request.control_image)}"]
    return words


def plan(
    request: GenerateRequest,
    catalog: Catalog,
    output: Path,
    device: str,
    settings_from_flags,
    uploads: Path | None = None,
) -> Settings:
    """The complete settings of `request`: `settings_from_flags(words)` plans the `generate` command line
    that makes it, with the command line's own checks (`ConfigError` if one fails)."""
    return settings_from_flags([*flags(request, catalog, output, uploads), "--device", device])
