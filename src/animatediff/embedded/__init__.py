"""The models that ship inside the package: a shapes-world AnimateDiff, trained from nothing by the
recipe in `animatediff.shapes.recipe`, in the layouts real checkpoints use.

Every model flag of `animatediff generate` takes these short names as well as paths; `animatediff
models` lists them. Without `--base`, generation uses `shapes` with the `shapes-motion` module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animatediff.errors import ConfigError

FOLDER = Path(__file__).parent / "shapes"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    flag: str  # the generate flag that takes it
    file: str  # inside FOLDER
    description: str

    @property
    def path(self) -> Path:
        return FOLDER / self.file


MODELS = {
    model.name: model
    for model in (
        EmbeddedModel("shapes", "--base", "base", "base text-to-image model, 32×32 (diffusers folder)"),
        EmbeddedModel(
            "shapes-outlined",
            "--dreambooth",
            "outlined",
            "DreamBooth-style fine-tune: outlined shapes, trigger 'outlinestyle' (diffusers UNet)",
        ),
        EmbeddedModel(
            "shapes-striped",
            "--lora",
            "striped.safetensors",
            "image LoRA: striped shapes, trigger 'stripestyle' (diffusers LoRA)",
        ),
        EmbeddedModel(
            "shapes-adapter", "--domain-adapter", "adapter.safetensors", "domain adapter (official v3 adapter layout)"
        ),
        EmbeddedModel(
            "shapes-motion",
            "--motion-module",
            "motion_module.safetensors",
            "motion module, v3 placement (official layout)",
        ),
        EmbeddedModel(
            "shapes-zoom-in",
            "--motion-lora",
            "motion_lora_zoom_in.safetensors",
            "MotionLoRA: camera zooming in (official layout)",
        ),
        EmbeddedModel(
            "shapes-pan-left",
            "--motion-lora",
            "motion_lora_pan_left.safetensors",
            "MotionLoRA: camera panning left (official layout)",
        ),
        EmbeddedModel(
            "shapes-lcm",
            "--motion-module",
            "lcm/motion_module.safetensors",
            "few-step motion module (4 steps, LCM), distilled from shapes-motion; applies its image LoRA",
        ),
        EmbeddedModel(
            "shapes-edges",
            "--controlnet",
            "controlnet_edges",
            "ControlNet on Canny edges, with --control-video of edge maps (diffusers folder)",
        ),
        EmbeddedModel(
            "shapes-sparsectrl",
            "--sparsectrl",
            "sparsectrl.safetensors",
            "RGB SparseCtrl: image to video from --control-image FRAME:PATH keyframes (official layout)",
        ),
    )
}
DEFAULT_BASE = "shapes"
DEFAULT_MOTION_MODULE = "shapes-motion"


def resolve(value: str | Path | None, flag: str) -> Path | None:
    """A short name of an embedded model for `flag` → its path; anything else is taken as a path."""
    if value is None:
        return None
    model = MODELS.get(str(value))
    if model is None:
        return Path(value)
    if model.flag != flag:
        raise ConfigError(f"{flag} {value}: '{value}' is the embedded {model.description}; it goes with {model.flag}.")
    if not model.path.exists():
        raise ConfigError(f"{flag} {value}: the embedded model is missing from this installation ({model.path}).")
    return model.path


def find(name: str) -> Path | None:
    """The path of the embedded model called `name` (for any flag), or None if there is none of that name."""
    model = MODELS.get(str(name))
    return None if model is None else model.path


def listing() -> str:
    """The table `animatediff models` prints."""
    width = max(len(name) for name in MODELS)
    lines = [f"{'name':<{width}}  {'flag':<16}  description"]
    for model in MODELS.values():
        present = "" if model.path.exists() else "  [missing]"
        lines.append(f"{model.name:<{width}}  {model.flag:<16}  {model.description}{present}")
    return "\n".join(lines)
