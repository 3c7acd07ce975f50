"""From a description of the models to use to a ready video pipeline.

A `ModelSpec` names every file (base, DreamBooth, LoRAs, domain adapter, motion module, MotionLoRAs)
and scale; `check` verifies that every file exists before anything loads, and `build_pipeline`
loads and merges them in the official order: personalized image weights, image LoRAs, domain adapter,
motion module, MotionLoRAs. Merges happen in float32; the pipeline is cast afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from animatediff.errors import ConfigError
from animatediff.formats import load_motion_module
from animatediff.image_models import apply_dreambooth, apply_image_lora, load_base
from animatediff.lora import apply_domain_adapter, apply_motion_lora
from animatediff.pipeline import OFFICIAL_SCHEDULER, AnimateDiffPipeline


@dataclass
class ModelSpec:
    """Every file that makes up one video model, with its scale."""

    base: Path
    motion_module: Path | None
    dreambooth: Path | None = None
    loras: list[tuple[Path, float]] = field(default_factory=list)
    domain_adapter: Path | None = None
    domain_adapter_scale: float = 1.0
    motion_loras: list[tuple[Path, float]] = field(default_factory=list)
    motion_module_settings: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=lambda: dict(OFFICIAL_SCHEDULER))

    def files(self) -> list[tuple[str, Path]]:
        named = [
            ("base", self.base),
            ("motion module", self.motion_module),
            ("dreambooth", self.dreambooth),
            ("domain adapter", self.domain_adapter),
        ]
        named += [("lora", path) for path, _ in self.loras]
        named += [("motion lora", path) for path, _ in self.motion_loras]
        return [(name, path) for name, path in named if path is not None]

    def check(self) -> None:
        """Fail early, naming the file, if anything is missing or does not fit together."""
        for name, path in self.files():
            if not Path(path).exists():
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
        return {
            "base": str(Path(self.base).resolve()),
            "motion_module": None if self.motion_module is None else str(Path(self.motion_module).resolve()),
            "dreambooth": None if self.dreambooth is None else str(Path(self.dreambooth).resolve()),
            "loras": [{"path": str(Path(p).resolve()), "scale": s} for p, s in self.loras],
            "domain_adapter": None if self.domain_adapter is None else str(Path(self.domain_adapter).resolve()),
            "domain_adapter_scale": self.domain_adapter_scale if self.domain_adapter is not None else None,
            "motion_loras": [{"path": str(Path(p).resolve()), "scale": s} for p, s in self.motion_loras],
            "motion_module_settings": self.motion_module_settings,
            "scheduler": {"class": "DDIMScheduler", **self.scheduler},
        }


def build_pipeline(spec: ModelSpec, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """Load and merge everything `spec` names; returns the pipeline on `device` in `dtype`."""
    spec.check()
    components = load_base(spec.base)
    if spec.dreambooth is not None:
        components = apply_dreambooth(components, spec.dreambooth, spec.base)
    for path, scale in spec.loras:
        apply_image_lora(components, path, scale)
    if spec.domain_adapter is not None:
        apply_domain_adapter(components.unet, spec.domain_adapter, spec.domain_adapter_scale)
    motion_module = None
    if spec.motion_module is not None:
        motion_module = load_motion_module(spec.motion_module, **spec.motion_module_settings)
        for path, scale in spec.motion_loras:
            apply_motion_lora(motion_module, path, scale)
    pipeline = AnimateDiffPipeline.from_components(components, motion_module, DDIMScheduler(**spec.scheduler))
    return pipeline.to(device, dtype)
