"""AnimateDiff: animate personalized Stable Diffusion image models with a plug-in motion module.

The public names below are imported when first used, so that `animatediff --help` and the command's
argument errors answer without loading torch and diffusers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_HOMES = {
    "AnimateDiffError": "errors",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "read_video": "export",
    "write_video": "export",
    "load_motion_module": "formats",
    "read_state_dict": "formats",
    "save_motion_module": "formats",
    "Components": "image_models",
    "apply_dreambooth": "image_models",
    "apply_image_lora": "image_models",
    "load_base": "image_models",
    "AnimateDiffUNet": "inflation",
    "inflate": "inflation",
    "build_pipeline": "loading",
    "apply_domain_adapter": "lora",
    "apply_motion_lora": "lora",
    "MotionModule": "motion_module",
    "MotionModuleConfig": "motion_module",
    "AnimateDiffPipeline": "pipeline",
    "initial_noise": "pipeline",
    "official_scheduler": "pipeline",
    "Planner": "planner",
    "plan_run": "planner",
    "with_family": "planner",
    "Request": "request",
    "ModelSpec": "settings",
    "Sample": "sampling.clip",
    "Settings": "settings",
    "generate_outputs": "generation",
    "interpolate": "finishing.interpolation",
    "load_rife": "finishing.rife",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'animatediff' has no attribute {name!r}")
    return getattr(importlib.import_module(f"animatediff.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
