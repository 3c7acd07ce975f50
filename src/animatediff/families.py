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
| pia | 32 frames | no | 4 (SD1.x) | per frame | pooled over frames |
| animatelcm-i2v | none stored (64 frames) | yes | 4 (SD1.x) | per frame | per frame |

Two releases condition the video UNet on an image besides the text, through weights stored beside their
motion modules (`image_input`, told from the weights alone): PIA's (`pia.ckpt`) a 9-channel `conv_in`
taking the noisy latents, a per-frame affinity mask and the image's latents; AnimateLCM-I2V's
(`AnimateLCM_sd15_i2v.ckpt`) an image encoder (`img_encoder.*`) whose features join the down blocks.
PIA samples as its release's configs (official DDIM, 25 steps, guidance 7.5); AnimateLCM-I2V as its
release's app (`app-i2v.py`, `configs/inference-i2v.yaml`): LCM on linear betas ending at 0.014, 200
original steps, 4 steps, guidance 1.

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
    signature: dict | None  # what tells it apart in the weights (levels, mid_block, max_frames, table, image_input);
    # None: nothing
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

    def matches(self, levels: int, mid_block: bool, max_frames: int | None, image_input: str | None = None) -> bool:
        """Whether weights of this layout (`max_frames` None: no position table stored; `image_input` the image
        conditioning stored beside the motion module: `pia`, `i2v` or None) are this release's."""
        if self.signature is None or (image_input is not None and "image_input" not in self.signature):
            return False  # weights with an image input are only the releases' that name it
        found = {
            "levels": levels,
            "mid_block": mid_block,
            "max_frames": max_frames,
            "table": max_frames is not None,
            "image_input": image_input,
        }
        return all(found[key] == value for key, value in self.signature.items())

    @property
    def image_input(self) -> str | None:
        """The image conditioning its files carry beside the motion module (`pia`, `i2v`), or None."""
        return (self.signature or {}).get("image_input")

    def rule(self) -> str:
        """How `detect` recognises it, in words (for `inspect` and the sidecar)."""
        words = {
            "table": lambda value: "a position table" if value else "no position table",
            "image_input": lambda value: IMAGE_INPUTS[value],
        }
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


IMAGE_INPUTS = {  # the image conditioning a release stores beside its motion module, in words
    "pia": "PIA's image-conditioning conv_in",
    "i2v": "AnimateLCM-I2V's image encoder",
}
I2V_SCHEDULE = dict(  # AnimateLCM-I2V's configs/inference-i2v.yaml
    beta_start=0.00085, beta_end=0.014, beta_schedule="linear", steps_offset=1, original_inference_steps=200
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
        Family(
            "pia",
            "PIA, the Personalized Image Animator (pia.ckpt): motion modules and an image-conditioning conv_in",
            32,
            False,
            False,
            True,
            signature={"image_input": "pia"},
            distinctive=True,
            trainable=False,
        ),
        Family(
            "animatelcm-i2v",
            "AnimateLCM-I2V (AnimateLCM_sd15_i2v): consistency-distilled, with an image encoder and its LCM LoRA",
            64,
            True,
            False,
            False,
            signature={"image_input": "i2v"},
            distinctive=True,
            trainable=False,
            steps=4,
            guidance_scale=1.0,
            sampler="lcm",
            scheduler=dict(I2V_SCHEDULE),
        ),
    )
}
DEFAULT = FAMILIES["v3"]  # what a fresh module is, and how a clip samples when nothing says otherwise
METADATA_KEY = "animatediff.family"  # a motion module file's metadata entry naming its release


def detect(levels: int, mid_block: bool, max_frames: int | None, image_input: str | None = None) -> Family:
    """The release whose layout a motion module's weights have (levels of widths, mid block, table length;
    `max_frames` None when no position table is stored; `image_input` the image conditioning stored beside it)."""
    return next(f for f in FAMILIES.values() if f.matches(levels, mid_block, max_frames, image_input))


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
    image_input: str | None = None,
) -> tuple[Family, str]:
    """A motion module's release and the rule that decided it (module docstring): `override` (--family),
    then distinctive weights, the file's metadata (`metadata`: the release name it states), its name, and
    last the weights' layout."""
    if override is not None:
        return family(override), "--family"
    weights = detect(levels, mid_block, max_frames, image_input)
    if weights.distinctive:
        return weights, f"weights: {weights.rule()}"
    if metadata is not None:
        return family(metadata), f"metadata: {METADATA_KEY} = {metadata}"
    named = by_name(file_name)
    if named is not None and named.base == weights.base:
        return named, f"file name: {file_name}"
    return weights, f"weights: {weights.rule()}"


# PIA's motion-strength presets (`--pia-strength`): each frame's affinity to the image, by its distance from the
# image's frame, the last value held for farther frames. The values are the release's (PIA's
# `animatediff/utils/util.py` RANGE_LIST, diffusers' `PIAPipeline` `motion_scale` 0-8, in this order): lower
# affinity lets a frame move further from the image; the loops come back to it; the style-transfer presets keep
# less of it from the first frame on.
PIA_PRESETS = {
    "small": (1.0, 0.9, 0.85, 0.85, 0.85, 0.8),
    "moderate": (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75),
    "large": (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5),
    "loop-small": (1.0, 0.9, 0.85, 0.85, 0.85, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.85, 0.85, 0.9, 1.0),
    "loop-moderate": (1.0, 0.8, 0.8, 0.8, 0.79, 0.78, 0.75, 0.75, 0.75, 0.75, 0.75, 0.78, 0.79, 0.8, 0.8, 1.0),
    "loop-large": (1.0, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.5, 0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 1.0),
    "style-small": (0.5, 0.4, 0.4, 0.4, 0.35, 0.3),
    "style-moderate": (0.5, 0.4, 0.4, 0.4, 0.35, 0.35, 0.3, 0.25, 0.2),
    "style-large": (0.5, 0.2),
}
PIA_DEFAULT = "small"  # diffusers' motion_scale 0


def pia_affinity(preset: str, frames: int, image_frame: int = 0) -> tuple[float, ...]:
    """Each frame's affinity to the image at `image_frame` under a PIA preset (its mask channel's value)."""
    values = PIA_PRESETS[preset]
    values = values + (values[-1],) * max(frames - len(values), 0)
    return tuple(values[abs(frame - image_frame)] for frame in range(frames))
