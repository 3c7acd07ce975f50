"""The catalog: the published AnimateDiff releases and the models they go with, by short name.

Every model flag of `animatediff generate` takes these names as it takes the embedded ones (`--motion-module
mm-v15-v2`); each stands for a file or a repository on the Hugging Face Hub (`animatediff.hub`), downloaded
into its cache on first use or ahead of time with `animatediff models pull NAME…`. The ids and file names are
those the releases published: the official files of `guoyww/animatediff` (as the official README lists
them), `wangfuyun/AnimateLCM`, `ByteDance/AnimateDiff-Lightning` (its diffusers-keyed files), and the
Stable Diffusion 1.5 and VAE repositories diffusers' own examples use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animatediff.errors import ConfigError
from animatediff.hub import HubReference, cached, fetch, parse

OFFICIAL = "guoyww/animatediff"
LIGHTNING = "ByteDance/AnimateDiff-Lightning"


@dataclass(frozen=True)
class Release:
    name: str
    flag: str  # the generate flag that takes it
    reference: HubReference
    family: str | None  # the AnimateDiff release it belongs to (`families.FAMILIES`), None: an image model
    description: str


def _official(name: str, flag: str, file: str, family: str, description: str) -> Release:
    return Release(name, flag, HubReference(OFFICIAL, file), family, description)


_CAMERA = {  # MotionLoRA short name → the official file's name
    "zoom-in": "ZoomIn",
    "zoom-out": "ZoomOut",
    "pan-left": "PanLeft",
    "pan-right": "PanRight",
    "tilt-up": "TiltUp",
    "tilt-down": "TiltDown",
    "rolling-clockwise": "RollingClockwise",
    "rolling-anticlockwise": "RollingAnticlockwise",
}

RELEASES = {
    release.name: release
    for release in (
        Release(
            "sd15",
            "--base",
            HubReference("stable-diffusion-v1-5/stable-diffusion-v1-5"),
            None,
            "Stable Diffusion 1.5 (diffusers folder): the base the SD1.5 releases were trained on",
        ),
        _official("mm-v14", "--motion-module", "mm_sd_v14.ckpt", "v1", "motion module v1, trained on SD1.4"),
        _official("mm-v15", "--motion-module", "mm_sd_v15.ckpt", "v1", "motion module v1, trained on SD1.5"),
        _official("mm-v15-v2", "--motion-module", "mm_sd_v15_v2.ckpt", "v2", "motion module v2 (MotionLoRAs fit it)"),
        _official("mm-v3", "--motion-module", "v3_sd15_mm.ckpt", "v3", "motion module v3"),
        _official("adapter-v3", "--domain-adapter", "v3_sd15_adapter.ckpt", "v3", "v3's domain adapter (image LoRA)"),
        _official("sparsectrl-rgb", "--sparsectrl", "v3_sd15_sparsectrl_rgb.ckpt", "v3", "v3 SparseCtrl, RGB images"),
        _official(
            "sparsectrl-scribble", "--sparsectrl", "v3_sd15_sparsectrl_scribble.ckpt", "v3", "v3 SparseCtrl, scribbles"
        ),
        _official("mm-sdxl-beta", "--motion-module", "mm_sdxl_v10_beta.ckpt", "sdxl", "SDXL motion module (beta)"),
        *(
            _official(f"motionlora-{name}", "--motion-lora", f"v2_lora_{file}.ckpt", "v2", f"MotionLoRA: {name}")
            for name, file in _CAMERA.items()
        ),
        Release(
            "animatelcm",
            "--motion-module",
            HubReference("wangfuyun/AnimateLCM", "AnimateLCM_sd15_t2v.ckpt"),
            "animatelcm",
            "AnimateLCM motion module (6 steps; with animatelcm-lora)",
        ),
        Release(
            "animatelcm-lora",
            "--lora",
            HubReference("wangfuyun/AnimateLCM", "AnimateLCM_sd15_t2v_lora.safetensors"),
            "animatelcm",
            "AnimateLCM's image LoRA, for its motion module",
        ),
        *(
            Release(
                f"lightning-{steps}",
                "--motion-module",
                HubReference(LIGHTNING, f"animatediff_lightning_{steps}step_diffusers.safetensors"),
                f"lightning-{steps}",
                f"AnimateDiff-Lightning, {steps} step{'s' * (steps > 1)}",
            )
            for steps in (1, 2, 4, 8)
        ),
        Release(
            "cameractrl",
            "--camera-ctrl",
            HubReference("hehao13/CameraCtrl", "CameraCtrl.ckpt"),
            "cameractrl",
            "CameraCtrl for the v3 motion module (with --camera-poses)",
        ),
        Release(
            "vae-mse",
            "--vae",
            HubReference("stabilityai/sd-vae-ft-mse"),
            None,
            "SD VAE fine-tuned with MSE (vae-ft-mse-840000), the VAE most personalized models expect",
        ),
    )
}


def locate(reference: str, flag: str) -> Path | None:
    """The local path of a catalog name or a Hub reference given to `flag` (downloaded into the cache if it is
    not there yet); None for anything else (a local path)."""
    release = RELEASES.get(reference)
    if release is not None and release.flag != flag:
        raise ConfigError(f"{reference}: the catalog's {release.description}; it goes with {release.flag}.")
    hub_reference = release.reference if release is not None else parse(reference)
    return None if hub_reference is None else fetch(hub_reference)


def pull(names: list[str]) -> list[tuple[str, Path]]:
    """Fill the Hub cache with each catalog name's or Hub reference's files; (name, local path) for each."""
    if not names:
        raise ConfigError("name what to pull: catalog names (see: animatediff models) or Hub references (hf://…).")
    pulled = []
    for name in names:
        reference = RELEASES[name].reference if name in RELEASES else parse(name)
        if reference is None:
            raise ConfigError(f"{name}: neither a catalog name (see: animatediff models) nor a Hub reference.")
        pulled.append((name, fetch(reference)))
    return pulled


def listing() -> str:
    """The catalog's table for `animatediff models`, each entry marked when the Hub cache holds it."""
    width = max(len(name) for name in RELEASES)
    lines = [f"{'name':<{width}}  {'flag':<16}  {'cached':<6}  description (Hub source)"]
    for release in RELEASES.values():
        mark = "yes" if cached(release.reference) is not None else "-"
        lines.append(
            f"{release.name:<{width}}  {release.flag:<16}  {mark:<6}  {release.description} ({release.reference})"
        )
    return "\n".join(lines)
