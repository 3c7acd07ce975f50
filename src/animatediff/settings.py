"""What one output is made with, resolved completely before any weights load: values only, no file I/O
(the planner reads and checks the files).

`ModelSpec` names every file of the video model and its scales; `Sample` (`animatediff.sampling.clip`) is
the clip; `ControlSpec` what conditions it besides text; `Settings` adds where and how it is written. The
same `Settings` object goes to the library and into the output's JSON sidecar, so a sidecar repeats its
run exactly. Nothing here imports torch.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from animatediff import __version__
from animatediff.errors import ConfigError
from animatediff.families import DEFAULT, FAMILIES, SCHEDULERS, Family
from animatediff.request import ADAPTER_SCALE, LORA_SCALE, MAX_UPSCALE, RANDOM_SEED, Request
from animatediff.sampling.clip import Sample, check_finite
from animatediff.sampling.options import ContextRequest, Interpolation

__all__ = ["ControlNetSpec", "ControlSpec", "ModelSpec", "Sample", "Settings", "TimeControls", "UpscaleSpec"]


def random_seed() -> int:
    return secrets.randbelow(2**31)


def resolve_seed(seed: int | None) -> int:
    """`None` or -1 → a random seed; anything else as given (the request checked its range)."""
    return random_seed() if seed is None or seed == RANDOM_SEED else seed


def check_scale(scale: float, bound: float, what: str) -> None:
    """Refuse a scale that is not finite or beyond `bound` either way, naming what it scales."""
    check_finite(scale, what)
    if abs(scale) > bound:
        raise ConfigError(f"{what} must be between -{bound:g} and {bound:g}; got {scale}.")


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
    scheduler: dict | None = None  # the noise schedule (betas, offset, spacing); None: the release's
    sampler: str | None = None  # a key of families.SCHEDULERS; None: the release's
    family: str | None = None  # the motion module's release (`with_family`); None: not decided yet (v3's defaults)
    family_rule: str | None = None  # what decided it
    vae: Path | None = None  # an autoencoder replacing the base's (a diffusers folder or a single file)
    embeddings: tuple[Path, ...] = ()  # textual-inversion embedding files, each a word named after its file stem
    embedding_digests: tuple[str, ...] = ()  # each embedding file's sha256, its first 12 hex digits (the planner's)

    def __post_init__(self):
        object.__setattr__(self, "loras", tuple(self.loras))
        object.__setattr__(self, "embeddings", tuple(self.embeddings))
        object.__setattr__(self, "embedding_digests", tuple(self.embedding_digests))
        object.__setattr__(self, "motion_loras", tuple(self.motion_loras))
        check_scale(self.domain_adapter_scale, ADAPTER_SCALE, "the domain adapter scale")
        for name, entries in (("LoRA", self.loras), ("MotionLoRA", self.motion_loras)):
            for path, scale in entries:
                check_scale(scale, LORA_SCALE, f"the scale of {name} {path}")
        if self.sampler is not None and self.sampler not in SCHEDULERS:
            raise ConfigError(f"unknown scheduler {self.sampler!r}; expected one of {', '.join(SCHEDULERS)}.")
        if self.family is not None and self.family not in FAMILIES:
            raise ConfigError(f"unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}.")

    @property
    def release(self) -> Family:
        """The motion module's release: what its clips sample with by default."""
        return FAMILIES[self.family] if self.family is not None else DEFAULT

    @property
    def sampler_name(self) -> str:
        return self.sampler or self.release.sampler

    @property
    def noise_schedule(self) -> dict:
        return dict(self.scheduler if self.scheduler is not None else self.release.scheduler)

    def files(self) -> list[tuple[str, Path]]:
        named = [
            ("base", self.base),
            ("motion module", self.motion_module),
            ("dreambooth", self.dreambooth),
            ("domain adapter", self.domain_adapter),
            ("vae", self.vae),
        ]
        named += [("embedding", path) for path in self.embeddings]
        named += [("lora", path) for path, _ in self.loras]
        named += [("motion lora", path) for path, _ in self.motion_loras]
        return [(name, Path(path)) for name, path in named if path is not None]

    def describe(self) -> dict:
        """The resolved settings, for the output's sidecar."""

        def absolute(path: Path | None) -> str | None:
            return None if path is None else str(Path(path).resolve())

        return {
            "base": absolute(self.base),
            "motion_module": absolute(self.motion_module),
            "dreambooth": absolute(self.dreambooth),
            "vae": absolute(self.vae),
            "embeddings": [
                {"path": absolute(path), "sha256": digest}
                for path, digest in zip(
                    self.embeddings, self.embedding_digests or (None,) * len(self.embeddings), strict=True
                )
            ],
            "loras": [{"path": absolute(p), "scale": s} for p, s in self.loras],
            "domain_adapter": absolute(self.domain_adapter),
            "domain_adapter_scale": self.domain_adapter_scale if self.domain_adapter is not None else None,
            "motion_loras": [{"path": absolute(p), "scale": s} for p, s in self.motion_loras],
            "motion_module_settings": self.motion_module_settings,
            "family": None if self.family is None else {"name": self.family, "decided_by": self.family_rule},
            "scheduler": {
                "name": self.sampler_name,
                "class": SCHEDULERS[self.sampler_name][0],
                **self.noise_schedule,
                **SCHEDULERS[self.sampler_name][1],
            },
        }


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
            raise ConfigError(
                "the noise shuffle (FreeNoise) reschedules the noise of later context windows; this "
                "clip has none (give a context length shorter than the clip)."
            )
        prompt_map = self._prompt_map(sample)
        prompt = dict(prompt_map).get(0, sample.prompt)
        changed = replace(
            sample,
            prompt=prompt,
            prompt_map=prompt_map,
            prompt_interpolation=self.interpolation,
            context=context,
            noise_shuffle=self.noise_shuffle,
            free_init=self.free_init,
        )
        return changed, note

    def _prompt_map(self, sample: Sample) -> tuple[tuple[int, str], ...]:
        if not self.keyframes:
            return ()
        frames = {}
        for frame, text in self.keyframes:
            resolved = frame + sample.frames if frame < 0 else frame
            if not 0 <= resolved < sample.frames:
                raise ConfigError(
                    f"the prompt keyframe {frame} is outside the {sample.frames}-frame clip (frames "
                    f"0 to {sample.frames - 1}, or -1 to -{sample.frames} from the end)."
                )
            frames[resolved] = text
        if 0 not in frames:
            if not sample.prompt:
                raise ConfigError("frame 0 needs a prompt: give PROMPT or a keyframe at frame 0.")
            frames[0] = sample.prompt
        return tuple(sorted(frames.items()))


@dataclass(frozen=True)
class ControlNetSpec:
    """One ControlNet (a diffusers folder or a single file), its residuals' scale, and its control video
    (a video file or a folder of per-frame images)."""

    path: Path
    scale: float
    video: Path


KEYFRAME_NOISE = (
    "RGB keyframes: the VAE posterior sample, drawn for all keyframes at once from the clip's "
    "generator right after its initial noise"
)


def default_mask_blur(width: int, height: int) -> float:
    """The pasted-back edge's blur when none is given: 4 pixels at 512² (A1111's mask blur), in proportion to the
    clip's shorter side (so a 32² clip's small objects are not blurred away)."""
    return 4 * min(width, height) / 512


@dataclass(frozen=True, kw_only=True)
class ControlSpec:
    """What conditions a clip besides its text, as files (`animatediff.control` gets them as tensors):
    an init video denoised from `strength`, ControlNets active from `control_start` to `control_end`
    (fractions of the steps), an IP-Adapter with its image and CLIP image encoder folder, an init image, a
    SparseCtrl encoder with its keyframes (control images or precomputed latents at `control_frames`), a mask
    of the init video (`mask_video`, or one image `mask`: white redrawn, black kept), a clip to extend (`extend`)
    from its last `extend_overlap` frames, pulled toward them by reconstruction guidance (`extend_guidance`).
    `stride` takes every n-th frame of the input and control videos."""

    init_video: Path | None = None
    strength: float = 0.6
    stride: int = 1
    mask_video: Path | None = None
    mask: Path | None = None
    mask_blur: float | None = None  # the pasted-back input's edge in pixels (None: `default_mask_blur`)
    extend: Path | None = None
    extend_overlap: int = 4
    extend_guidance: float = 0.0
    extend_frames: int = 0  # the length of the clip to extend (the planner's; 0: not read)
    controlnets: tuple[ControlNetSpec, ...] = ()
    control_start: float = 0.0
    control_end: float = 1.0
    guess_mode: bool = False
    ip_adapter: Path | None = None
    ip_adapter_scale: float = 1.0
    ip_image: Path | None = None
    image_encoder: Path | None = None
    init_image: Path | None = None
    last_image: Path | None = None
    init_strength: float = 0.75
    init_falloff: float = 32.0
    sparsectrl: Path | None = None
    sparsectrl_scale: float = 1.0
    sparsectrl_settings: dict | None = None  # the official YAML's controlnet_additional_kwargs
    control_images: tuple[Path, ...] = ()
    control_frames: tuple[int, ...] = ()  # each keyframe's frame (negative: from the end); default 0, 1, … (null
    # in the sidecar for control latents: one per latent from frame 0)
    control_latents: Path | None = None
    normalize_condition_images: bool = False
    camera_ctrl: Path | None = None  # CameraCtrl (pose encoder and pose layers) for the motion module
    camera_poses: str | None = None  # its camera path: a preset's name, or a pose file's absolute path
    image_input: str | None = None  # the model animates the init image itself: "pia" or "i2v" (the planner's)
    pia_strength: str | None = None  # PIA's preset (`families.PIA_PRESETS`) when the model is PIA's; else None

    def __post_init__(self):
        object.__setattr__(self, "controlnets", tuple(self.controlnets))
        object.__setattr__(self, "control_images", tuple(self.control_images))
        object.__setattr__(self, "control_frames", tuple(self.control_frames))
        for name in (
            "strength",
            "control_start",
            "control_end",
            "init_strength",
            "init_falloff",
        ):
            check_finite(getattr(self, name), name)
        for name in ("ip_adapter_scale", "sparsectrl_scale"):
            check_scale(getattr(self, name), ADAPTER_SCALE, name)
        self._check_init_image()
        self._check_masks()
        self._check_keyframes()
        if (self.camera_ctrl is None) != (self.camera_poses is None):
            raise ConfigError(
                "CameraCtrl and its camera path go together: give both --camera-ctrl and --camera-poses (a pose "
                "file or a preset)."
            )
        for controlnet in self.controlnets:
            check_scale(controlnet.scale, ADAPTER_SCALE, f"the scale of ControlNet {controlnet.path}")
        if not 0 < self.strength <= 1:
            raise ConfigError(f"strength must be more than 0 and at most 1; got {self.strength}.")
        if not 0 <= self.control_start < self.control_end <= 1:
            raise ConfigError(
                "control_start and control_end must satisfy 0 ≤ start < end ≤ 1; got "
                f"{self.control_start} and {self.control_end}."
            )
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ConfigError(f"stride must be a whole number of at least 1; got {self.stride!r}.")
        if (self.ip_adapter is None) != (self.ip_image is None):
            raise ConfigError("an IP-Adapter and its image go together: give both --ip-adapter and --ip-image.")

    def _check_init_image(self) -> None:
        if self.init_image is not None and self.init_video is not None:
            raise ConfigError("an init image and an init video both give the clip's start; give one of them.")
        if self.last_image is not None and self.init_image is None:
            raise ConfigError("a last image goes with an init image (--init-image).")
        if not 0 < self.init_strength <= 1:
            raise ConfigError(f"init_strength must be more than 0 and at most 1; got {self.init_strength}.")
        if self.init_falloff <= 0:
            raise ConfigError(f"init_falloff must be more than 0 frames; got {self.init_falloff}.")

    def _check_masks(self) -> None:
        if self.mask is not None and self.mask_video is not None:
            raise ConfigError("give one mask: --mask (one image for every frame) or --mask-video, not both.")
        if (self.mask is not None or self.mask_video is not None) and self.init_video is None:
            raise ConfigError("a mask says which part of an init video is redrawn; give the video with --init-video.")
        if self.extend is not None and (self.init_video is not None or self.init_image is not None):
            raise ConfigError("--extend sets the clip's start itself; give no --init-video or --init-image with it.")
        overlap = self.extend_overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 1:
            raise ConfigError(f"extend_overlap must be a whole number of at least 1; got {overlap!r}.")
        guidance = self.extend_guidance
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance < float("inf"):
            raise ConfigError(f"extend_guidance must be a number of at least 0; got {guidance!r}.")

    def _check_keyframes(self) -> None:
        keyframes = bool(self.control_images) or self.control_latents is not None
        if self.sparsectrl is None and (keyframes or self.control_frames):
            raise ConfigError(
                "control images and control latents are SparseCtrl keyframes; give the SparseCtrl "
                "encoder with --sparsectrl."
            )
        if self.sparsectrl is not None and not keyframes:
            raise ConfigError(
                f"sparsectrl {self.sparsectrl} needs keyframes: --control-image FRAME:PATH (repeatable) "
                "or --control-latents FILE.npy."
            )
        if self.control_images and self.control_latents is not None:
            raise ConfigError("give SparseCtrl keyframes as control images or as control latents, not both.")
        if self.control_images and self.control_frames and len(self.control_frames) != len(self.control_images):
            raise ConfigError(
                f"{len(self.control_images)} control images but {len(self.control_frames)} keyframe "
                "indices; give one index per image."
            )

    @property
    def given(self) -> bool:
        return (
            self.init_video is not None
            or self.extend is not None
            or self.init_image is not None
            or bool(self.controlnets)
            or self.ip_adapter is not None
            or self.sparsectrl is not None
            or self.camera_ctrl is not None
        )

    def keyframe_indices(self, count: int | None = None) -> tuple[int, ...]:
        """Each keyframe's frame: as given, else 0, 1, … for `count` keyframes (the control images' count)."""
        if self.control_frames:
            return self.control_frames
        return tuple(range(len(self.control_images) if count is None else count))

    def encoder_folder(self) -> Path | None:
        """The CLIP image encoder folder: the one given, else `image_encoder/` beside the IP-Adapter file."""
        if self.ip_adapter is None:
            return None
        return self.image_encoder or Path(self.ip_adapter).parent / "image_encoder"

    def _init_image_record(self, absolute) -> dict:
        """The init image's fields: as a blend (`init_strength`, `init_falloff`), or the image a PIA or
        AnimateLCM-I2V model animates (`image_input`, PIA's `pia_strength`)."""
        if self.init_image is None:
            return {}
        if self.image_input is not None:
            record = {"init_image": absolute(self.init_image), "image_input": self.image_input}
            return record | ({"pia_strength": self.pia_strength} if self.pia_strength is not None else {})
        return {
            "init_image": absolute(self.init_image),
            "last_image": absolute(self.last_image),
            "init_strength": self.init_strength,
            "init_falloff": self.init_falloff,
        }

    def _masked_or_extended(self, absolute) -> dict:
        """The sidecar's fields of a mask or an extension (nothing without them)."""
        record = {}
        if self.mask is not None or self.mask_video is not None:
            record.update(mask=absolute(self.mask), mask_video=absolute(self.mask_video), mask_blur=self.mask_blur)
        if self.extend is not None:
            record.update(
                extend=absolute(self.extend),
                extend_overlap=self.extend_overlap,
                extend_guidance=self.extend_guidance,
                extend_frames=self.extend_frames,
            )
        return record

    def describe(self) -> dict:
        """The sidecar's fields for these inputs (absolute paths; nothing when none is given)."""
        if not self.given:
            return {}

        def absolute(path: Path | None) -> str | None:
            return None if path is None else str(Path(path).resolve())

        record = {
            "init_video": absolute(self.init_video),
            "stride": self.stride,
            "controlnets": [
                {"path": absolute(c.path), "scale": c.scale, "video": absolute(c.video)} for c in self.controlnets
            ],
        }
        if self.init_video is not None:
            record["strength"] = self.strength
        record.update(self._masked_or_extended(absolute))
        record.update(self._init_image_record(absolute))
        if self.controlnets:
            record.update(control_start=self.control_start, control_end=self.control_end, guess_mode=self.guess_mode)
        if self.sparsectrl is not None:
            record.update(
                sparsectrl={
                    "path": absolute(self.sparsectrl),
                    "scale": self.sparsectrl_scale,
                    "settings": self.sparsectrl_settings or {},
                },
                control_images=[absolute(path) for path in self.control_images],
                control_frames=list(self.keyframe_indices()) or None,
                control_latents=absolute(self.control_latents),
                normalize_condition_images=self.normalize_condition_images,
            )
            if self.control_images:
                record["keyframe_noise"] = KEYFRAME_NOISE
        if self.camera_ctrl is not None:
            record.update(camera_ctrl=absolute(self.camera_ctrl), camera_poses=self.camera_poses)
        if self.ip_adapter is not None:
            record.update(
                ip_adapter={"path": absolute(self.ip_adapter), "scale": self.ip_adapter_scale},
                ip_image=absolute(self.ip_image),
                image_encoder=absolute(self.encoder_folder()),
            )
        return record


LATENT_MODES = {"latent": "bicubic", "latent-nearest": "nearest-exact"}  # A1111's latent upscalers' modes
PIXEL_UPSCALERS = ("lanczos",)  # besides a model file


@dataclass(frozen=True)
class UpscaleSpec:
    """The hires fix: the clip upscaled `scale` times by `upscaler` (lanczos, latent, latent-nearest, or
    `model`, a super-resolution model file), then, unless `strength` is 0, denoised again from `strength` at
    the new size with the clip's own prompt, models, seed and controls."""

    scale: float
    upscaler: str = "lanczos"
    model: Path | None = None
    strength: float = 0.35

    def __post_init__(self):
        check_finite(self.scale, "upscale")
        if not 1 <= self.scale <= MAX_UPSCALE:
            raise ConfigError(f"upscale must be between 1 and {MAX_UPSCALE:g}; got {self.scale}.")
        if not 0 <= self.strength <= 1:
            raise ConfigError(f"upscale_strength must be between 0 and 1; got {self.strength}.")
        known = (*PIXEL_UPSCALERS, *LATENT_MODES, "model")
        if self.upscaler not in known or (self.upscaler == "model") != (self.model is not None):
            raise ConfigError(
                f"upscaler: expected lanczos, latent, latent-nearest or a model file; got {self.upscaler!r}."
            )

    @property
    def second_pass(self) -> bool:
        return self.strength > 0

    def size(self, width: int, height: int, factor: int) -> tuple[int, int]:
        """The upscaled (width, height): each side times the scale, to the nearest multiple of `factor` (the
        VAE's downscale factor) when a second pass or the latents need it."""
        step = factor if self.second_pass or self.upscaler in LATENT_MODES else 1
        return tuple(max(step, round(side * self.scale / step) * step) for side in (width, height))

    def sample(self, sample: Sample, factor: int) -> Sample:
        """The second pass's clip: `sample` at the upscaled size, started from the upscaled clip (so without
        FreeInit or the noise shuffle, which start from noise)."""
        width, height = self.size(sample.width, sample.height, factor)
        return replace(sample, width=width, height=height, free_init=None, noise_shuffle=False)

    def describe(self, width: int, height: int, factor: int) -> dict:
        upscaled = self.size(width, height, factor)
        upscaler = str(Path(self.model).resolve()) if self.model is not None else self.upscaler
        return {
            "upscale": self.scale,
            "upscaler": upscaler,
            "upscale_strength": self.strength,
            "upscaled_width": upscaled[0],
            "upscaled_height": upscaled[1],
        }


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything one output is made with: what the pipeline receives and what its sidecar records."""

    sample: Sample
    model: ModelSpec
    output: Path
    fps: float = 8.0
    device: str = "cpu"
    dtype: str = "float32"
    dtype_reason: str = "--dtype"  # what chose the dtype (`--dtype auto` says which rule)
    overrides: tuple[str, ...] = ()  # settings a command-line flag gave over a prompt config's own
    notes: tuple[str, ...] = ()  # what was decided for the user (context windows chosen for a long clip, …)
    control: ControlSpec = field(default_factory=ControlSpec)
    split_guidance: bool = False  # the guidance batch's halves one after the other (less memory)
    compile: bool = False  # torch.compile the UNet
    request: Request | None = None  # what the front end was asked (the sidecar records it beside the resolved values)
    references: tuple[tuple[str, str, str], ...] = ()  # (path, Hub id, commit) of each model from the Hub cache
    upscale: UpscaleSpec | None = None  # the hires fix after the first pass (None: none)
    vae_factor: int = 8  # the VAE's downscale factor (the upscaled size is a multiple of it for a second pass)

    def upscaled_size(self) -> tuple[int, int]:
        """The output's (width, height): the clip's, or after `upscale` the upscaled one."""
        sample = self.sample
        if self.upscale is None:
            return sample.width, sample.height
        return self.upscale.size(sample.width, sample.height, self.vae_factor)

    interpolate: int | None = None  # K: frame interpolation to K frames per frame after decoding (None: none)
    interpolator: Path | None = None  # a learned interpolator's weights (None: the built-in optical flow)

    @property
    def loops(self) -> bool:
        """Whether the clip is a closed loop (its context windows wrap around the end)."""
        return self.sample.context is not None and self.sample.context.schedule == "looped"

    @property
    def clip_frames(self) -> int:
        """The frames the pipeline makes: the clip's, or an extended clip's whole length (input + new − overlap)."""
        control = self.control
        extra = control.extend_frames - control.extend_overlap if control.extend is not None else 0
        return self.sample.frames + extra

    @property
    def output_frames(self) -> int:
        """The frames written: the clip's (`clip_frames`), with K − 1 new ones between each pair when interpolated
        (and between the last and the first of a loop)."""
        frames, factor = self.clip_frames, self.interpolate or 1
        return frames * factor if self.loops else (frames - 1) * factor + 1

    def sidecar(self) -> dict:
        record = {
            **asdict(self.sample),
            **self.model.describe(),
            **self.control.describe(),
            "device": self.device,
            "dtype": self.dtype,
            "dtype_chosen_by": self.dtype_reason,
            "animatediff_version": __version__,
        }
        record["prompt_map"] = {str(frame): text for frame, text in self.sample.prompt_map}
        if self.overrides:
            record["overridden_by_flags"] = list(self.overrides)
        if self.notes:
            record["notes"] = list(self.notes)
        if self.split_guidance:
            record["split_guidance"] = True
        if record.get("mask_blur", 0) is None:  # the size-proportional default, as the pixels it came to
            record["mask_blur"] = default_mask_blur(self.sample.width, self.sample.height)
        if self.control.extend is not None:
            record["output_frames"] = self.output_frames
        if self.request is not None:
            record["request"] = self.request.record()
        if self.upscale is not None:
            record.update(self.upscale.describe(self.sample.width, self.sample.height, self.vae_factor))
        if self.interpolate is not None:
            record["interpolate"] = self.interpolate
            record["interpolator"] = None if self.interpolator is None else str(Path(self.interpolator).resolve())
            record["output_frames"] = self.output_frames
        if self.references:
            record["hub"] = [{"path": path, "id": id, "revision": revision} for path, id, revision in self.references]
        return record
