"""What a client may ask for: a `GenerateRequest`, whose schema is made from the settings' declarations
(`animatediff.request`: the same names, kinds, bounds and help as the command line's options), with models
by their names in the app's lists and inputs by the names of files uploaded to the app. It is checked
against `Limits` and planned by the one planner into the `Settings` the command line would make from the
same values (the same checks, the same sidecar)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from animatediff.app.catalog import Catalog
from animatediff.errors import ConfigError
from animatediff.request import (
    CHOICE,
    FRAME_INPUT,
    FRAME_LIST,
    KEYFRAMES,
    NUMBER,
    PER_FRAME,
    PER_STEP,
    SCALED,
    SEED,
    SWITCH,
    WHOLE,
    Declared,
    Request,
    declarations,
)
from animatediff.sources import Sources

CATALOG_KINDS = {"loras": "lora", "motion_loras": "motion_lora"}  # a setting → the catalog's kind of model
API_DEFAULTS = {"format": "mp4", "base": "shapes"}  # the page plays mp4; a request names its base


class Scaled(BaseModel):
    """A model by name, with its scale."""

    model_config = ConfigDict(extra="forbid")
    name: str
    scale: float = Field(1.0, allow_inf_nan=False)


def _annotation(declared: Declared):
    """The JSON type of a setting's value."""
    single = {
        WHOLE: int,
        SEED: int,
        NUMBER: float,
        SWITCH: bool,
        SCALED: Scaled | str,  # {name, scale}, or a name alone (scale 1)
        FRAME_LIST: list[int],
        FRAME_INPUT: str,  # "FRAME:NAME"
        KEYFRAMES: dict[int, str],
        PER_FRAME: float | list[tuple[int, float]],  # a number, or [frame, value] pairs
        PER_STEP: list[tuple[float, float]],  # [fraction of the steps, value] pairs
    }.get(declared.kind, str)
    if declared.kind == CHOICE:
        single = Literal[tuple(declared.choices)]
    if declared.repeat and declared.kind != KEYFRAMES:
        return list[single]
    return single


def _field(name: str, declared: Declared):
    bounds = {"ge": declared.low, "le": declared.high} if declared.kind in (WHOLE, NUMBER) else {}
    bounds = {key: value for key, value in bounds.items() if value is not None}
    if declared.kind == NUMBER:
        bounds["allow_inf_nan"] = False
    if name == "prompt":
        return str, Field(min_length=1, description=declared.help)
    empty = [] if declared.repeat and declared.kind != KEYFRAMES else {} if declared.kind == KEYFRAMES else None
    default = API_DEFAULTS.get(name, False if declared.kind == SWITCH else empty)
    kind = _annotation(declared)
    kind = kind if default is not None else kind | None
    return kind, Field(default, description=declared.help, **bounds)


GenerateRequest = create_model(
    "GenerateRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One clip, with the settings' names; `seed` null or -1 draws one (the sidecar records it).",
    **{name: _field(name, declared) for name, declared in declarations().items() if declared.api},
)


@dataclass(frozen=True)
class Limits:
    """The largest clip a request may ask for."""

    frames: int = 32
    size: int = 256
    steps: int = 50
    prompt_length: int = 1000

    @classmethod
    def for_device(cls, device: str) -> Limits:
        """Defaults that fit the device: a CUDA GPU makes SD1.5-size clips; an Apple GPU (MPS, its memory shared
        with the CPU) half as many frames of at most 768 pixels; a CPU the embedded model's."""
        if device.startswith("cuda"):
            return cls(frames=128, size=1024, steps=100)
        if device.startswith("mps"):
            return cls(frames=64, size=768, steps=100)
        return cls()


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
    if request.upscale is not None:  # the upscaled clip within twice the largest size
        side = max(request.width or 0, request.height or 0) or limits.size
        if side * request.upscale > 2 * limits.size:
            errors.append(("upscale", f"the upscaled clip must be at most {2 * limits.size} pixels a side"))
    texts = [("prompt", request.prompt), ("negative_prompt", request.negative_prompt or "")]
    texts += [(f"prompt_map.{frame}", text) for frame, text in request.prompt_map.items()]
    for name, text in texts:
        if len(text) > limits.prompt_length:
            errors.append((name, f"must be at most {limits.prompt_length} characters; got {len(text)}"))
    frames = request.frames or 16
    for frame in request.prompt_map:
        if not 0 <= frame < frames:
            errors.append((f"prompt_map.{frame}", f"the frame must be within the clip's {frames} frames"))
    if request.guidance_scale is not None and not 0 <= request.guidance_scale <= 50:
        errors.append(("guidance_scale", f"must be between 0 and 50; got {request.guidance_scale}"))
    return errors


def resolved_errors(settings, limits: Limits) -> list[tuple[str, str]]:
    """(field, message) for the values a request left to the model (its size, its family's steps) that are
    beyond the limits."""
    sample = settings.sample
    checks = [("width", sample.width, limits.size), ("height", sample.height, limits.size)]
    checks.append(("steps", sample.steps, limits.steps))
    return [
        (name, f"the model's default {value} is above the limit {high}; give a smaller {name}")
        for name, value, high in checks
        if value > high
    ]


class AppSources(Sources):
    """Models by their names in the app's lists (`UnknownModel` for any other), inputs by the bare names of
    files uploaded into `uploads` (nothing a client sends is joined to a folder as a path), and the
    textual-inversion embeddings of the models folder's `embeddings/` for every request."""

    def __init__(self, catalog: Catalog, uploads: Path | None, embeddings: Path | None = None):
        self.catalog, self.uploads, self.embeddings = catalog, uploads, embeddings

    def name(self, setting: str) -> str:
        return setting

    def model(self, setting: str, reference: str) -> Path:
        return self.catalog.path(CATALOG_KINDS.get(setting, setting), reference)

    def input(self, setting: str, reference: str) -> Path:
        if setting == "embeddings" and self.embeddings is not None and reference == str(self.embeddings):
            return self.embeddings
        if self.uploads is None:
            raise ConfigError("this app takes no uploaded inputs.")
        return self.uploads / Path(reference).name


def to_request(request: GenerateRequest) -> Request:
    """The planner's `Request` from the API's (models and inputs still by name: `AppSources` finds them)."""
    values = {}
    for name, value in request.model_dump().items():
        declared = declarations()[name]
        if declared.kind == SCALED:
            items = value if declared.repeat else [value] if value else []
            pairs = tuple((item, 1.0) if isinstance(item, str) else (item["name"], item["scale"]) for item in items)
            value = pairs if declared.repeat else (pairs[0] if pairs else None)
        elif declared.kind == KEYFRAMES:
            value = tuple(sorted(value.items()))
        elif declared.kind == FRAME_INPUT:
            value = tuple(_frame_and_name(name, item) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return Request(**values)


def _frame_and_name(name: str, text: str) -> tuple[int, str]:
    frame, colon, rest = text.partition(":")
    if not colon or not frame.lstrip("-").isdigit() or not rest:
        raise ConfigError(f"{name}: expected FRAME:NAME, got {text!r}.")
    return int(frame), rest
