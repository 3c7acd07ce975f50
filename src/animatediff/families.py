"""The release table: each AnimateDiff release's motion-module layout and how it samples, in one place.

A motion module's file says little about the release it came from; what differs between releases is
a handful of facts, written here once and read by loading (telling a file's release from its weights,
and running it as that release did), inflation (what a module fits), sampling (scheduler, steps,
guidance) and training (a fresh module's layout):

| release | position table | mid block | UNet levels | motion GroupNorm | image GroupNorm |
|---|---|---|---|---|---|
| v1 | 24 frames | no | 4 (SD1.x) | per frame | pooled over frames |
| v2 | 32 frames | yes | 4 (SD1.x) | per frame | per frame |
| v3 | 32 frames | no | 4 (SD1.x) | per frame | per frame |
| sdxl (beta) | 32 frames | no | 3 (SDXL) | pooled over frames | per frame |

Importing this module is cheap (no torch): the command line reads it to build its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# DDIM as the official inference configs set it (every other setting at diffusers' defaults)
OFFICIAL_DDIM = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1, clip_sample=False)

# `--scheduler` names → a diffusers scheduler class and the options that make it that sampler. Each is built
# on the release's own noise schedule (the official linear betas for v1-v3: what the motion modules were
# trained with), so only the sampler changes. Names follow the A1111/ComfyUI ones users know.
SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler",
                       {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "dpm++sde-karras": ("DPMSolverMultistepScheduler",  # DPM++ 2M SDE Karras: needs no torchsde
                        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}  # fmt: skip


def make_scheduler(name: str, noise_schedule: dict):
    """The diffusers scheduler called `name` (a key of `SCHEDULERS`) on `noise_schedule` (betas, offset)."""
    import diffusers

    class_name, options = SCHEDULERS[name]
    settings = noise_schedule if name == "ddim" else {k: v for k, v in noise_schedule.items() if k != "clip_sample"}
    return getattr(diffusers, class_name).from_config({**settings, **options})


@dataclass(frozen=True)
class Family:
    """One release: its motion module's layout and behaviour, and how its clips are sampled."""

    name: str
    description: str
    max_frames: int  # the position table's length: the longest clip one pass can take
    mid_block: bool  # a temporal module after the UNet's mid block
    norm_over_frames: bool  # the motion module's GroupNorm pools over all frames (else per frame)
    image_norm_over_frames: bool  # the image UNet's resnet GroupNorms pool over all frames (v1's training)
    signature: dict  # what tells it apart in the weights: levels, mid_block and/or max_frames
    trainable: bool = True  # `animatediff train` can start a fresh module of this layout
    steps: int = 25
    guidance_scale: float = 7.5
    scheduler: dict = field(default_factory=lambda: dict(OFFICIAL_DDIM))

    def module_settings(self) -> dict:
        """The `MotionModuleConfig` fields that say how this release ran (not its widths)."""
        return {"norm_over_frames": self.norm_over_frames, "image_norm_over_frames": self.image_norm_over_frames}

    def fresh_module_settings(self) -> dict:
        """Every `MotionModuleConfig` field a new module of this release takes, besides the UNet's widths."""
        return {"mid_block": self.mid_block, "max_frames": self.max_frames, **self.module_settings()}

    def matches(self, levels: int, mid_block: bool, max_frames: int) -> bool:
        found = {"levels": levels, "mid_block": mid_block, "max_frames": max_frames}
        return all(found[key] == value for key, value in self.signature.items())

    def rule(self) -> str:
        """How `detect` recognises it, in words (for `inspect` and the sidecar)."""
        return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in self.signature.items())


FAMILIES = {
    family.name: family
    for family in (  # in the order `detect` tries them
        Family("sdxl", "the official SDXL beta module (mm_sdxl_v10_beta)", 32, False, True, False,
               signature={"levels": 3}, trainable=False),
        Family("v2", "the official v2 module (mm_sd_v15_v2)", 32, True, False, False, signature={"mid_block": True}),
        Family("v1", "the official v1 modules (mm_sd_v14, mm_sd_v15)", 24, False, False, True,
               signature={"mid_block": False, "max_frames": 24}),
        Family("v3", "the official v3 module (v3_sd15_mm)", 32, False, False, False, signature={"mid_block": False}),
    )
}  # fmt: skip
DEFAULT = FAMILIES["v3"]  # what a fresh module is, and how a clip samples when nothing says otherwise


def detect(levels: int, mid_block: bool, max_frames: int) -> Family:
    """The release whose layout a motion module's weights have (levels of widths, mid block, table length)."""
    return next(family for family in FAMILIES.values() if family.matches(levels, mid_block, max_frames))


def family(name: str) -> Family:
    """The release called `name`; a `KeyError` that lists the names otherwise."""
    if name not in FAMILIES:
        raise KeyError(f"unknown release {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
