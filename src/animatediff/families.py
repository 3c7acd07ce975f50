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
| animatelcm | none stored (64 frames) | as stored | 4 (SD1.x) | per frame | per frame |
| lightning-N | 32 frames | yes (v2's) | 4 (SD1.x) | per frame | per frame |
| distilled | as its teacher's | as its teacher's | as its teacher's | per frame | per frame |

How a file's release is decided (`resolve`), first rule that answers: `--family`; the weights, where
they alone tell (three UNet levels: sdxl; no position table: animatelcm; a 24-frame table: v1); the
file's metadata (`animatediff.family`, which this package writes); the file's name (AnimateDiff-Lightning
and AnimateLCM releases keep theirs: `animatediff_lightning_4step_diffusers.safetensors`,
`AnimateLCM_sd15_t2v.ckpt`); the weights' layout (mid block: v2, else v3).

The few-step families sample as their releases' model cards say: AnimateLCM with diffusers'
`LCMScheduler` on linear betas (`beta_schedule="linear"`), 6 steps, guidance 2.0; AnimateDiff-Lightning
with `EulerDiscreteScheduler` on linear betas with `timestep_spacing="trailing"`, guidance 1.0 and the
step count the module was distilled for. A module distilled by this package's `distill` stage (family
`distilled`, named in its metadata, as the embedded `shapes-lcm`) samples as AnimateLCM but in 4 steps
without guidance (its teacher's guidance is distilled into it), with the image LoRA its metadata names.

Importing this module is cheap (no torch): the command line reads it to build its options.
"""

from __future__ import annotations

import re
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
    "dpm++2m-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpm++sde-karras": (
        "DPMSolverMultistepScheduler",  # DPM++ 2M SDE Karras: needs no torchsde
        {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}


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
    signature: dict | None  # what tells it apart in the weights (levels, mid_block, max_frames, table); None: nothing
    distinctive: bool = False  # the signature alone decides, before metadata and names (no other release has it)
    names: tuple[str, ...] = ()  # regular expressions on the file's name (lower case) that name this release
    trainable: bool = True  # `animatediff train` can start a fresh module of this layout
    steps: int = 25
    guidance_scale: float = 7.5
    sampler: str = "ddim"  # a key of SCHEDULERS
    scheduler: dict = field(default_factory=lambda: dict(OFFICIAL_DDIM))  # the noise schedule and its spacing
    made_for_steps: tuple[int, ...] = ()  # a distilled module's step counts (empty: any)
    base: str = "sd1"  # the image models it fits: sd1 or sdxl
    size: int = 512  # the base's native frame size

    def module_settings(self) -> dict:
        """The `MotionModuleConfig` fields that say how this release ran (not its widths)."""
        return {"norm_over_frames": self.norm_over_frames, "image_norm_over_frames": self.image_norm_over_frames}

    def fresh_module_settings(self) -> dict:
        """Every `MotionModuleConfig` field a new module of this release takes, besides the UNet's widths."""
        return {"mid_block": self.mid_block, "max_frames": self.max_frames, **self.module_settings()}

    def matches(self, levels: int, mid_block: bool, max_frames: int | None) -> bool:
        """Whether weights of this layout (`max_frames` None: no position table stored) are this release's."""
        if self.signature is None:
            return False
        found = {"levels": levels, "mid_block": mid_block, "max_frames": max_frames, "table": max_frames is not None}
        return all(found[key] == value for key, value in self.signature.items())

    def rule(self) -> str:
        """How `detect` recognises it, in words (for `inspect` and the sidecar)."""
        words = {"table": lambda value: "a position table" if value else "no position table"}
        return ", ".join(
            words[key](value) if key in words else f"{key.replace('_', ' ')} {value}"
            for key, value in (self.signature or {}).items()
        )

    def sampling(self) -> str:
        """Its preset in words: scheduler, steps, guidance."""
        spacing = self.scheduler.get("timestep_spacing")
        return (
            f"{self.sampler}{f' ({spacing} timesteps)' if spacing else ''}, {self.steps} steps, "
            f"guidance {self.guidance_scale:g}"
        )


def _lightning(steps: int) -> Family:
    return Family(
        f"lightning-{steps}",
        f"AnimateDiff-Lightning, distilled for {steps} step{'s' * (steps > 1)}",
        32,
        True,
        False,
        False,
        signature=None,
        names=(rf"lightning.*(?<![0-9]){steps}[_-]?steps?",),
        trainable=False,
        steps=steps,
        guidance_scale=1.0,
        sampler="euler",
        scheduler={**OFFICIAL_DDIM, "timestep_spacing": "trailing"},
        made_for_steps=(steps,),
    )


FAMILIES = {
    family.name: family
    for family in (  # in the order `detect` tries them
        Family(
            "sdxl",
            "the official SDXL beta module (mm_sdxl_v10_beta)",
            32,
            False,
            True,
            False,
            signature={"levels": 3},
            distinctive=True,
            trainable=False,
            base="sdxl",
            size=1024,
        ),
        Family(
            "animatelcm",
            "AnimateLCM (AnimateLCM_sd15_t2v): consistency-distilled, with its LCM LoRA",
            64,
            False,
            False,
            False,
            signature={"table": False},
            distinctive=True,
            names=(r"animatelcm",),
            trainable=False,
            steps=6,
            guidance_scale=2.0,
            sampler="lcm",
        ),
        Family(
            "v1",
            "the official v1 modules (mm_sd_v14, mm_sd_v15)",
            24,
            False,
            False,
            True,
            signature={"mid_block": False, "max_frames": 24},
            distinctive=True,
        ),
        *(_lightning(steps) for steps in (1, 2, 4, 8)),
        Family(
            "distilled",
            "consistency-distilled by this package's distill stage (shapes-lcm), with its image LoRA",
            32,
            False,
            False,
            False,
            signature=None,
            trainable=False,
            steps=4,
            guidance_scale=1.0,
            sampler="lcm",
        ),
        Family(
            "cameractrl",
            "the v3 module steered by CameraCtrl's pose layers (--camera-ctrl with --camera-poses)",
            32,
            False,
            False,
            False,
            signature=None,  # v3's layout: chosen by a CameraCtrl file's keys (its pose encoder, its pose layers)
            trainable=False,
            guidance_scale=14.0,  # the release's inference default
        ),
        Family("v2", "the official v2 module (mm_sd_v15_v2)", 32, True, False, False, signature={"mid_block": True}),
        Family("v3", "the official v3 module (v3_sd15_mm)", 32, False, False, False, signature={"mid_block": False}),
    )
}
DEFAULT = FAMILIES["v3"]  # what a fresh module is, and how a clip samples when nothing says otherwise
METADATA_KEY = "animatediff.family"  # a motion module file's metadata entry naming its release


def detect(levels: int, mid_block: bool, max_frames: int | None) -> Family:
    """The release whose layout a motion module's weights have (levels of widths, mid block, table length;
    `max_frames` None when no position table is stored)."""
    return next(family for family in FAMILIES.values() if family.matches(levels, mid_block, max_frames))


def family(name: str) -> Family:
    """The release called `name`; a `KeyError` that lists the names otherwise."""
    if name not in FAMILIES:
        raise KeyError(f"unknown release {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def by_name(file_name: str) -> Family | None:
    """The release a file's name names (`animatediff_lightning_4step_diffusers`, `AnimateLCM_sd15_t2v`), if any."""
    lowered = file_name.lower()
    return next((f for f in FAMILIES.values() if any(re.search(p, lowered) for p in f.names)), None)


def resolve(
    file_name: str,
    levels: int,
    mid_block: bool,
    max_frames: int | None,
    metadata: str | None = None,
    override: str | None = None,
) -> tuple[Family, str]:
    """A motion module's release and the rule that decided it (module docstring): `override` (--family),
    then distinctive weights, the file's metadata (`metadata`: the release name it states), its name, and
    last the weights' layout."""
    if override is not None:
        return family(override), "--family"
    weights = detect(levels, mid_block, max_frames)
    if weights.distinctive:
        return weights, f"weights: {weights.rule()}"
    if metadata is not None:
        return family(metadata), f"metadata: {METADATA_KEY} = {metadata}"
    named = by_name(file_name)
    if named is not None and named.base == weights.base:
        return named, f"file name: {file_name}"
    return weights, f"weights: {weights.rule()}"
