"""From a `Request` to checked, complete `Settings`: the one planner behind every front end.

The planner resolves model references to files (through the front end's `Sources`: the command line takes
paths and embedded names, a prompt config looks beside itself too, the web app its own lists), decides the
motion module's release and its defaults, reads what it needs of each file once (a motion module's header, an
image model's configs, an official inference config), draws random seeds, chooses context windows for a long
clip, and refuses what cannot work, naming the setting, before any weights load. Each output's `Settings`
is what the library receives and what its sidecar records.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from animatediff.embedded import DEFAULT_BASE, DEFAULT_MOTION_MODULE, MODELS
from animatediff.errors import ConfigError
from animatediff.export import FRAME_FOLDER, check_fps, file_stem, output_format, sidecar_path
from animatediff.families import PIA_DEFAULT, Family
from animatediff.files import check_output, read_json
from animatediff.memory import check_memory, check_upscale_memory
from animatediff.prompt_config import load_yaml
from animatediff.request import Request, flag
from animatediff.sampling.clip import check_frame_size, check_steps
from animatediff.sampling.motion_strength import as_keys
from animatediff.sampling.options import ContextRequest
from animatediff.sampling.speed import FAST, StepCache
from animatediff.settings import (
    LATENT_MODES,
    PIXEL_UPSCALERS,
    ControlNetSpec,
    ControlSpec,
    ModelSpec,
    Sample,
    Settings,
    TimeControls,
    UpscaleSpec,
    random_seed,
    resolve_seed,
)
from animatediff.sources import Sources

log = logging.getLogger("animatediff")


@dataclass
class Planner:
    """Plans requests, reading each file it needs once (motion-module headers, image-model configs)."""

    sources: Sources = field(default_factory=Sources)
    _headers: dict = field(default_factory=dict)
    _geometry: dict = field(default_factory=dict)

    # -- models -------------------------------------------------------------------------------------

    def model(self, request: Request, sources: Sources | None = None) -> ModelSpec:
        """The video model a request names, its files checked and its motion module's release decided."""
        sources = sources or self.sources
        base = sources.model("base", request.base or DEFAULT_BASE)
        if not Path(base).exists():
            raise ConfigError(f"base {base}: no such file or folder.")
        settings, schedule, motion = inference_settings(sources, request.inference_config)
        module = self._motion_module(request, sources, motion)
        model = ModelSpec(
            base=base,
            motion_module=module,
            dreambooth=_optional(sources.model, "dreambooth", request.dreambooth),
            loras=[(sources.model("loras", path), scale) for path, scale in request.loras],
            domain_adapter=_optional(sources.model, "domain_adapter", request.domain_adapter),
            domain_adapter_scale=1.0 if request.domain_adapter_scale is None else request.domain_adapter_scale,
            motion_loras=[(sources.model("motion_loras", path), scale) for path, scale in request.motion_loras],
            motion_module_settings=settings,
            sampler=request.scheduler,
            vae=_optional(sources.model, "vae", request.vae),
            embeddings=(embeddings := embedding_files(sources, request.embeddings)),
            embedding_digests=tuple(hashlib.sha256(path.read_bytes()).hexdigest()[:12] for path in embeddings),
            **({"scheduler": schedule} if schedule else {}),
        )
        check_files(model)
        return self.with_family(model, request.family)

    def _motion_module(self, request: Request, sources: Sources, motion: bool) -> Path | None:
        if request.pia is not None:
            return self._pia(request, sources)
        if not motion or request.motion_module == "none":
            return None
        if request.motion_module is not None:
            path = sources.model("motion_module", request.motion_module)
            if path.is_file() and self.header(path).image_input == "pia":
                from animatediff.formats import KIND_NAMES, Kind

                raise sources.fail(
                    "motion_module",
                    f"{path} is {KIND_NAMES[Kind.PIA]}; give it with --pia PATH and the image to animate with "
                    "--init-image IMG.",
                )
            return path
        if request.base is None or request.base == DEFAULT_BASE:
            return MODELS[DEFAULT_MOTION_MODULE].path
        raise sources.fail(
            "motion_module",
            "no motion module given, and this base has no default one; name one (a motion module file, or 'none' "
            "for still images; in a prompt config also use_motion_module: false in an inference_config).",
        )

    def _pia(self, request: Request, sources: Sources) -> Path:
        """The PIA checkpoint of `--pia`, which gives the motion module too."""
        if request.motion_module is not None:
            raise sources.fail(
                "pia", "a PIA checkpoint holds its own motion modules; give --pia or --motion-module, not both."
            )
        path = sources.model("pia", request.pia)
        if not path.exists():
            raise sources.fail("pia", f"{path}: no such file or folder.")
        if self.header(path).image_input != "pia":
            from animatediff.formats import KIND_NAMES, Kind, kind_of

            what = KIND_NAMES[kind_of(path)]
            raise sources.fail("pia", f"{path} is {what}, not {KIND_NAMES[Kind.PIA]}.")
        return path

    def image_input(self, model: ModelSpec) -> str | None:
        """The image conditioning the model's motion-module file stores beside it (`pia`, `i2v`), which
        loading installs whatever `--family` says; None without one."""
        module = model.motion_module
        return None if module is None or not Path(module).exists() else self.header(module).image_input

    def header(self, path: Path):
        """A motion module's header (`formats.module_header`), read once per file."""
        from animatediff.formats import module_header

        key = (Path(path).resolve(), Path(path).stat().st_mtime_ns)  # a file replaced while the app runs is read anew
        if key not in self._headers:
            self._headers[key] = module_header(path)
        return self._headers[key]

    def with_family(self, model: ModelSpec, override: str | None = None) -> ModelSpec:
        """`model` with its motion module's release decided (`families.resolve`, from the file's weights,
        metadata or name; `override`: --family) and the rule that decided it recorded. A release given by
        `override` also runs the module as that release did (its GroupNorm settings); a module whose metadata
        names the image LoRA it was distilled with brings that LoRA along."""
        from animatediff.families import FAMILIES

        release, rule = (FAMILIES[override], "--family") if override is not None else (None, None)
        loras = model.loras
        if model.motion_module is not None:
            from animatediff.formats import motion_module_family

            header = self.header(model.motion_module)
            if header.levels == 0:  # not a motion module: loading says what it is
                return replace(model, family=override, family_rule="--family" if override else None)
            release, rule = motion_module_family(model.motion_module, override, header)
            companion = None if header.image_lora is None else Path(model.motion_module).parent / header.image_lora
            if companion is not None and all(Path(p).resolve() != companion.resolve() for p, _ in loras):
                loras = (*loras, (companion, 1.0))  # the image LoRA the module was distilled with
        settings = model.motion_module_settings
        if override is not None:
            settings = {**release.module_settings(), **settings}
        return replace(
            model,
            family=release.name if release else None,
            family_rule=rule,
            loras=loras,
            motion_module_settings=settings,
        )

    def motion_table(self, model: ModelSpec) -> int | None:
        """The length of the model's motion-module position table, read without loading it (None: no module)."""
        if model.motion_module is None:
            return None
        if "max_frames" in model.motion_module_settings:
            return int(model.motion_module_settings["max_frames"])
        from animatediff.formats import motion_module_table

        return motion_module_table(model.motion_module, self.header(model.motion_module))

    def geometry(self, base: Path) -> tuple[int, int]:
        """(the frame size an image model was trained at, its VAE's downscale factor), read from a diffusers
        folder's configs once (the UNet's sample size × the factor); (512, 8) for a single-file SD1.x checkpoint."""
        base = Path(base)
        if base not in self._geometry:
            self._geometry[base] = base_geometry(base)
        return self._geometry[base]

    # -- clips --------------------------------------------------------------------------------------

    def sample(self, request: Request, model: ModelSpec, sources: Sources | None = None) -> Sample:
        """The clip a request asks for, with the release's and the image model's defaults (and the front end's
        way of reading prompts)."""
        sources = sources or self.sources
        release: Family = model.release
        size = self.geometry(model.base)[0]
        return Sample(
            prompt=request.prompt or "",
            negative_prompt=request.negative_prompt or "",
            seed=resolve_seed(request.seed),
            steps=request.steps or release.steps,
            guidance_scale=release.guidance_scale if request.guidance_scale is None else request.guidance_scale,
            frames=request.frames or 16,
            width=request.width or size,
            height=request.height or size,
            clip_skip=request.clip_skip or 1,
            prompt_syntax=request.prompt_syntax or sources.prompt_syntax,
            motion_scale=as_keys(request.motion_scale),
            motion_effect=as_keys(request.motion_effect),
            motion_scale_steps=request.motion_scale_steps or (),
            **speed_settings(request),
        )

    def check_sample(self, model: ModelSpec, sample: Sample) -> None:
        """Refuse a clip the model cannot make (its size, its steps); warn of a step count the release was not
        made for."""
        check_frame_size(sample.width, sample.height, self.geometry(model.base)[1])
        schedule = model.noise_schedule
        check_steps(sample.steps, schedule.get("num_train_timesteps", 1000), schedule.get("steps_offset", 0))
        made_for = model.release.made_for_steps
        if made_for and sample.steps not in made_for:
            counts = " or ".join(map(str, made_for))
            log.warning(
                f"the motion module {model.motion_module} ({model.release.description}) was made for {counts} "
                f"step{'s' * (made_for != (1,))}; {sample.steps} steps may give a blurred or noisy clip."
            )

    def plan(
        self, request: Request, output: Callable[[Sample], Path], sources: Sources | None = None, **run
    ) -> Settings:
        """One output's complete settings: the request's model, clip, time controls and control inputs,
        resolved and checked, written to `output(sample)`; `run`: the run's own fields of `Settings`
        (device, dtype, …)."""
        sources = sources or self.sources
        if not request.prompt and not request.prompt_map:
            raise sources.fail("prompt", "a prompt is needed (or a prompt map with frame 0).")
        model = self.model(request, sources)
        control = control_spec(request, sources)
        model = with_camera(model, control, request.family)
        control = image_input_spec(request, model, control, self.image_input(model))
        sample, note = time_controls(request).apply(self.sample(request, model, sources), self.motion_table(model))
        sample, control = extension_sample(sample, request, control)
        check_mask(control, sample)
        self.check_sample(model, sample)
        check_camera_poses(control, sample)
        output = output(sample)
        fps = output_fps(request.fps, control, request.interpolate)
        check_fps(fps, output_format(output))
        check_output(output, directory=output_format(output) == "png", replaceable=FRAME_FOLDER)
        check_output(sidecar_path(output))
        notes = (note,) if note else ()
        settings = Settings(
            sample=sample,
            model=model,
            control=control,
            output=output,
            fps=fps,
            notes=notes,
            request=request,
            interpolate=request.interpolate,
            interpolator=interpolator_file(request, sources),
            **run,
        )
        factor = self.geometry(model.base)[1]
        upscale = upscale_spec(request, sources)
        settings = replace(settings, references=sources.references(model, control), upscale=upscale, vae_factor=factor)
        check_memory(settings, settings.split_guidance)
        check_upscale_memory(settings)
        return settings


def with_family(model: ModelSpec, override: str | None = None) -> ModelSpec:
    """`model` with its motion module's release decided, as the planner decides it (for library callers
    that build a `ModelSpec` themselves)."""
    return Planner().with_family(model, override)


EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")


def embedding_files(sources: Sources, folders: tuple[str, ...]) -> tuple[Path, ...]:
    """Every textual-inversion embedding file in the folders given, in name order."""
    files = []
    for reference in folders:
        folder = sources.input("embeddings", reference)
        if not folder.is_dir():
            raise sources.fail("embeddings", f"{folder}: expected a folder of embeddings (.pt, .bin, .safetensors).")
        files += sorted(path for path in folder.iterdir() if path.suffix in EMBEDDING_SUFFIXES)
    return tuple(files)


def _optional(locate, setting: str, reference: str | None) -> Path | None:
    return None if reference is None else locate(setting, reference)


def check_files(model: ModelSpec) -> None:
    """Fail early, naming the file, if anything the model names is missing or does not fit together."""
    for name, path in model.files():
        if not path.exists():
            raise ConfigError(f"{name} {path}: no such file or folder.")
    if model.dreambooth is not None and Path(model.dreambooth).is_file() and not Path(model.base).is_dir():
        raise ConfigError(
            f"dreambooth {model.dreambooth}: a personalized checkpoint takes its configs from the base, "
            f"so the base must be a diffusers folder; {model.base} is a file."
        )
    if model.motion_loras and model.motion_module is None:
        raise ConfigError("a MotionLoRA needs a motion module to adapt; none was given.")


def base_geometry(base: Path) -> tuple[int, int]:
    """(the frame size an image model was trained at, its VAE's downscale factor), read from a diffusers
    folder's configs (the UNet's sample size × the factor); (512, 8) for a single-file SD1.x checkpoint."""
    base = Path(base)
    if not base.is_dir():
        return 512, 8
    unet, vae = (read_json(base / part / "config.json", f"{part} config") for part in ("unet", "vae"))
    try:
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
        return int(unet["sample_size"]) * factor, factor
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{base}: its unet/ and vae/ configs do not give a frame size ({error}).") from error


def upscale_spec(request: Request, sources: Sources) -> UpscaleSpec | None:
    """The hires fix a request asks for (None: none): its upscaler by name, or a model file resolved like any
    other model."""
    if request.upscale is None:
        if request.upscaler is not None or request.upscale_strength is not None:
            raise ConfigError("--upscaler and --upscale-strength act on --upscale S; give it too.")
        return None
    if request.extend is not None:
        raise ConfigError(
            "--upscale with --extend is not supported yet: upscale the extended clip with animatediff upscale."
        )
    name, model = request.upscaler or "lanczos", None
    if name not in (*PIXEL_UPSCALERS, *LATENT_MODES):
        model = sources.model("upscaler", name)
        if not Path(model).is_file():
            raise sources.fail(
                "upscaler", f"{name}: expected lanczos, latent, latent-nearest or a super-resolution model file."
            )
        name = "model"
    strength = 0.35 if request.upscale_strength is None else request.upscale_strength
    return UpscaleSpec(request.upscale, name, model, strength)


def speed_settings(request: Request) -> dict:
    """The `Sample` fields of guidance's end and reuse and of step caching: as given, else `--fast`'s preset
    (`sampling.speed.FAST`) when it is asked for, else the defaults (every step guided, no cache)."""

    def value(name: str, default):
        given = getattr(request, name)
        if given is not None:
            return given
        return FAST.get(name, default) if request.fast else default

    cache = StepCache(
        value("cache", "none"), value("cache_interval", 3), value("cache_depth", 0), value("cache_schedule", "uniform")
    )
    return {"guidance_end": value("guidance_end", 1.0), "guidance_reuse": request.guidance_reuse, "cache": cache}


def time_controls(request: Request) -> TimeControls:
    context = ContextRequest(
        request.context_length,
        request.context_overlap,
        request.context_schedule,
        request.context_fuse,
        request.context_scope,
        request.loop,
    )
    return TimeControls(
        keyframes=request.prompt_map,
        interpolation=request.prompt_interpolation or "linear",
        context=context,
        noise_shuffle=request.noise_shuffle,
        free_init=request.free_init,
    )


CONTROL_NUMBERS = (
    "strength",
    "stride",
    "control_start",
    "control_end",
    "init_strength",
    "init_falloff",
    "extend_overlap",
    "extend_guidance",
    "mask_blur",
)


def control_spec(request: Request, sources: Sources) -> ControlSpec:
    """The control inputs a request gives (an empty `ControlSpec`: none), their files checked."""
    if len(request.controlnet) != len(request.control_video):
        raise ConfigError(
            f"each --controlnet takes one --control-video, in the same order; got {len(request.controlnet)} "
            f"ControlNets and {len(request.control_video)} control videos."
        )
    if request.control_image and request.control_frames:
        raise ConfigError("--control-frames places --control-latents; each --control-image gives its own FRAME.")
    numbers = {name: getattr(request, name) for name in CONTROL_NUMBERS if getattr(request, name) is not None}
    inputs = {
        name: _optional(sources.input, name, getattr(request, name))
        for name in (
            "init_video",
            "ip_image",
            "image_encoder",
            "init_image",
            "last_image",
            "control_latents",
            "mask_video",
            "mask",
            "extend",
        )
    }
    controlnets = tuple(
        ControlNetSpec(sources.model("controlnet", path), scale, sources.input("control_video", video))
        for (path, scale), video in zip(request.controlnet, request.control_video, strict=True)
    )
    ip_adapter, ip_scale = request.ip_adapter or (None, 1.0)
    sparsectrl, sparse_scale = request.sparsectrl or (None, 1.0)
    spec = ControlSpec(
        controlnets=controlnets,
        guess_mode=request.guess_mode,
        ip_adapter=_optional(sources.model, "ip_adapter", ip_adapter),
        ip_adapter_scale=ip_scale,
        sparsectrl=_optional(sources.model, "sparsectrl", sparsectrl),
        sparsectrl_scale=sparse_scale,
        sparsectrl_settings=controlnet_settings(sources, request.controlnet_config),
        control_images=tuple(sources.input("control_image", path) for _, path in request.control_image),
        control_frames=tuple(frame for frame, _ in request.control_image) or request.control_frames or (),
        normalize_condition_images=request.normalize_condition_images,
        camera_ctrl=_optional(sources.model, "camera_ctrl", request.camera_ctrl),
        camera_poses=camera_path(sources, request.camera_poses),
        **inputs,
        **numbers,
    )
    if request.extend is None and request.extend_overlap is not None:
        raise sources.fail("extend_overlap", "the overlap of an extension needs the clip to extend (--extend).")
    if request.extend is None and request.extend_guidance is not None:
        raise sources.fail("extend_guidance", "the guidance of an extension needs the clip to extend (--extend).")
    if request.mask_blur is not None and request.mask is None and request.mask_video is None:
        raise sources.fail(
            "mask_blur", "the blurred edge of the pasted-back input needs a mask (--mask or --mask-video)."
        )
    if request.extend is not None and request.strength is not None:
        raise sources.fail("strength", "an extension draws its new frames from noise (strength 1); leave it out.")
    if not spec.given and (numbers or request.guess_mode or request.ip_image or request.image_encoder):
        raise ConfigError(
            "--strength, --stride, --control-start/--control-end, --guess-mode, --init-strength, "
            "--init-falloff and the IP-Adapter image need an --init-video, an --init-image, a "
            "--controlnet or an --ip-adapter."
        )
    check_inputs(spec)
    return spec


IMAGE_INPUT_NOT = ("last_image", "init_strength", "init_falloff")  # what an image-input model does not take


def image_input_spec(request: Request, model: ModelSpec, spec: ControlSpec, kind: str | None) -> ControlSpec:
    """`spec` for a model that animates the init image itself (`kind`: PIA's `pia`, AnimateLCM-I2V's `i2v`), with
    PIA's preset; refuses such a model without its image, and the init-image settings it does not take."""
    if kind is None:
        if request.pia_strength is not None:
            raise ConfigError("--pia-strength is PIA's motion-strength preset; it needs --pia.")
        return spec
    what = f"{model.motion_module}, {'a PIA' if kind == 'pia' else 'an AnimateLCM-I2V'} checkpoint,"
    if spec.init_image is None:
        raise ConfigError(f"{what} animates an image; give the image with --init-image IMG.")
    given = [flag(name) for name in IMAGE_INPUT_NOT if getattr(request, name) is not None]
    if given or spec.init_video is not None:
        refused = ", ".join(given + ["--init-video"] * (spec.init_video is not None))
        raise ConfigError(f"{what} conditions every step on the init image itself; leave out {refused}.")
    if request.pia_strength is not None and kind != "pia":
        raise ConfigError(f"--pia-strength is PIA's motion-strength preset; {what} is not PIA.")
    strength = (request.pia_strength or PIA_DEFAULT) if kind == "pia" else None
    return replace(spec, image_input=kind, pia_strength=strength)


def camera_path(sources: Sources, given: str | None) -> str | None:
    """--camera-poses as the control spec keeps it: a preset's name, or the pose file's absolute path."""
    from animatediff.camera_poses import PRESETS  # torch: not for --help

    if given is None or given in PRESETS:
        return given
    path = sources.input("camera_poses", given)
    if not Path(path).is_file():
        raise sources.fail("camera_poses", f"{given}: neither a pose file nor a preset ({', '.join(PRESETS)}).")
    return str(Path(path).resolve())


def with_camera(model: ModelSpec, control: ControlSpec, family: str | None) -> ModelSpec:
    """A model steered by CameraCtrl runs as the `cameractrl` release (its sampling preset) unless --family
    says otherwise; CameraCtrl needs a motion module to steer."""
    if control.camera_ctrl is None:
        return model
    if model.motion_module is None:
        raise ConfigError(f"camera-ctrl {control.camera_ctrl}: CameraCtrl steers a motion module; give the v3 one.")
    if family is not None:
        return model
    return replace(model, family="cameractrl", family_rule=f"--camera-ctrl {Path(control.camera_ctrl).name}")


def check_camera_poses(control: ControlSpec, sample: Sample) -> None:
    """A pose file must hold one readable pose per frame of the clip (a preset fits any frame count)."""
    from animatediff.camera_poses import PRESETS, check_frame_count, read_camera_poses

    if control.camera_poses is None or control.camera_poses in PRESETS:
        return
    check_frame_count(read_camera_poses(control.camera_poses), sample.frames, control.camera_poses)


def check_inputs(spec: ControlSpec) -> None:
    """Fail early, naming the file, if a control input is missing."""
    files = [
        ("init video", spec.init_video),
        ("mask video", spec.mask_video),
        ("mask", spec.mask),
        ("extend", spec.extend),
        ("ip-adapter", spec.ip_adapter),
        ("ip image", spec.ip_image),
        ("init image", spec.init_image),
        ("last image", spec.last_image),
        ("sparsectrl", spec.sparsectrl),
        ("control latents", spec.control_latents),
        ("camera-ctrl", spec.camera_ctrl),
    ]
    files += [("control image", path) for path in spec.control_images]
    files += [
        (what, path) for c in spec.controlnets for what, path in (("controlnet", c.path), ("control video", c.video))
    ]
    for what, path in files:
        if path is not None and not Path(path).exists():
            raise ConfigError(f"{what} {path}: no such file or folder.")
    encoder = spec.encoder_folder()
    if encoder is not None and not (Path(encoder) / "config.json").is_file():
        raise ConfigError(
            f"image encoder {encoder}: expected a CLIP vision model folder (config.json and weights)"
            "; give it with --image-encoder."
        )


def extension_sample(sample: Sample, request: Request, control: ControlSpec) -> tuple[Sample, ControlSpec]:
    """The clip of an extension (`sample` itself without one): at the input's size, whose frames it keeps
    unchanged (a --width or --height must be it), and with an overlap the input and the clip both hold; and the
    control inputs with the input's length."""
    if control.extend is None:
        return sample, control
    from animatediff.media import video_shape

    count, width, height = video_shape(control.extend, "extend")
    if (request.width or width, request.height or height) != (width, height):
        raise ConfigError(
            f"extend {control.extend} is {width}×{height} and the clip keeps its frames unchanged; leave out "
            f"--width and --height (got {request.width or width}×{request.height or height}) or resize the clip."
        )
    overlap = control.extend_overlap
    if overlap >= sample.frames or overlap > count:
        raise ConfigError(
            f"--extend-overlap {overlap} must be less than the {sample.frames} new frames (--frames) and at most the "
            f"{count} frames of extend {control.extend}."
        )
    return replace(sample, width=width, height=height), replace(control, extend_frames=count)


def check_mask(control: ControlSpec, sample: Sample) -> None:
    """A mask must line up with the init video: its size or its shape (both are fitted to the clip's size the
    same way, as diffusers resizes a mask to the frame size), and a mask video at least the frames it gives."""
    mask = control.mask or control.mask_video
    if mask is None:
        return
    from animatediff.media import read_image, video_shape

    what = "mask" if control.mask is not None else "mask video"
    _, width, height = video_shape(control.init_video, "init video", limit=1)
    needed = (sample.frames - 1) * control.stride + 1  # the frames of the mask video the clip takes a mask from
    if control.mask is not None:
        count, (mask_height, mask_width) = 1, read_image(mask, what).shape[:2]
    else:
        count, mask_width, mask_height = video_shape(mask, what, needed)
    if mask_width * height != mask_height * width:
        raise ConfigError(
            f"{what} {mask} is {mask_width}×{mask_height} and the init video {control.init_video} {width}×{height}; "
            "a mask must have the video's size (or its shape: it is resized with the video)."
        )
    if control.mask_video is not None and count < needed:
        every = f" taking every {control.stride}th" if control.stride > 1 else ""
        raise ConfigError(
            f"mask video {mask} gives {(count + control.stride - 1) // control.stride} frames{every}; the clip "
            f"needs a mask for each of its {sample.frames}."
        )


def output_fps(given: float | None, control: ControlSpec, interpolate: int | None = None) -> float:
    """The output's frame rate: the one given; else a restyled video's own over the stride (an extended one's
    own), or 8, times the interpolation factor (the clip lasts as long with its new frames)."""
    if given is not None:
        return given
    rate = 8.0
    if control.init_video is not None or control.extend is not None:
        from animatediff.media import video_fps

        stride = control.stride if control.extend is None else 1
        rate = (video_fps(control.init_video or control.extend) or rate * stride) / stride
    return rate * (interpolate or 1)


def interpolator_file(request: Request, sources: Sources) -> Path | None:
    """The learned interpolator's weights, checked to exist (None: the built-in optical flow)."""
    if request.interpolator is None:
        return None
    if request.interpolate is None:
        raise sources.fail("interpolator", "an interpolator's weights need a factor: give --interpolate K too.")
    path = sources.input("interpolator", request.interpolator)
    if not Path(path).is_file():
        raise sources.fail("interpolator", f"{path}: no such file (expected a RIFE 4.x flownet.pkl).")
    return Path(path)


# ---------------------------------------------------------------------------------------------------
# The official configs a request may name: an inference config, a SparseCtrl config


def inference_settings(sources: Sources, reference: str | None) -> tuple[dict, dict, bool]:
    """From an official inference config: the motion module's settings (`MotionModuleConfig` fields), the
    noise schedule, and whether a motion module is used at all. Nothing given: the release's own."""
    if reference is None:
        return {}, {}, True
    path = sources.input("inference_config", reference)
    inference = load_yaml(path, "inference config") or {}
    where = f"inference config {path}"
    if not isinstance(inference, dict):
        raise ConfigError(f"{where}: expected a YAML mapping (the official inference config format).")
    unet = inference.get("unet_additional_kwargs") or {}
    kwargs = unet.get("motion_module_kwargs") or {}
    for name in ("unet_use_cross_frame_attention", "unet_use_temporal_attention", "motion_module_decoder_only"):
        if unet.get(name):
            raise ConfigError(f"{where}: '{name}: true' is not supported (no released model uses it).")
    if unet.get("motion_module_type", "Vanilla") != "Vanilla":
        raise ConfigError(f"{where}: motion_module_type must be 'Vanilla'; got {unet['motion_module_type']!r}.")
    if list(unet.get("motion_module_resolutions", [1, 2, 4, 8])) != [1, 2, 4, 8]:
        raise ConfigError(f"{where}: motion_module_resolutions must be [1, 2, 4, 8] (every level).")
    if list(kwargs.get("attention_block_types", ["Temporal_Self", "Temporal_Self"])) != ["Temporal_Self"] * 2:
        raise ConfigError(f"{where}: attention_block_types must be [Temporal_Self, Temporal_Self].")
    if kwargs.get("temporal_attention_dim_div", 1) != 1:
        raise ConfigError(f"{where}: temporal_attention_dim_div must be 1.")
    settings = {"image_norm_over_frames": not unet.get("use_inflated_groupnorm", False)}
    renames = {
        "num_attention_heads": "num_attention_heads",
        "num_transformer_block": "num_transformer_blocks",
        "temporal_position_encoding": "position_encoding",
        "temporal_position_encoding_max_len": "max_frames",
    }
    settings.update({ours: kwargs[theirs] for theirs, ours in renames.items() if theirs in kwargs})
    if "motion_module_mid_block" in unet:
        settings["mid_block"] = bool(unet["motion_module_mid_block"])
    schedule = dict(inference.get("noise_scheduler_kwargs") or {})
    return settings, schedule, unet.get("use_motion_module", True)


def controlnet_settings(sources: Sources, reference: str | None) -> dict | None:
    """The official SparseCtrl config's `controlnet_additional_kwargs` (None when not given)."""
    if reference is None:
        return None
    path = sources.input("controlnet_config", reference)
    loaded = load_yaml(path, "controlnet_config")
    settings = loaded.get("controlnet_additional_kwargs", {}) if isinstance(loaded, dict) else None
    if not isinstance(settings, dict):
        raise sources.fail("controlnet_config", f"{path}: expected a YAML mapping with controlnet_additional_kwargs.")
    return settings


# ---------------------------------------------------------------------------------------------------
# The run: device, dtype, output names, this process's share


def fast_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 matmuls and convolutions natively (AMX or AVX-512 BF16), as torch reports."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def device_and_dtype(device: str | None, dtype: str | None) -> tuple[str, str, str]:
    """The device (`auto`: CUDA, else an Apple GPU through MPS, else the CPU), the dtype and why that dtype
    (`auto`: float16 on CUDA and MPS; on the CPU bfloat16 where it runs natively, at the quality of float32 on
    the held-out clips and about twice its speed, bench/RESULTS.md; float32 elsewhere. `float32` is the path
    whose frames match the official implementation's)."""
    import torch

    device, dtype = device or "auto", dtype or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a device name such as cpu, cuda, cuda:0 or mps.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS (an Apple GPU) is not available on this machine; use --device cpu.")
    if dtype != "auto":
        return str(resolved), dtype, "--dtype"
    if resolved.type == "cuda":
        return str(resolved), "float16", "auto: float16 on CUDA"
    if resolved.type == "mps":
        return str(resolved), "float16", "auto: float16 on MPS (an Apple GPU)"
    if fast_bfloat16():
        return str(resolved), "bfloat16", "auto: bfloat16 on a CPU with AMX or AVX-512 BF16 (--dtype float32: parity)"
    return str(resolved), "float32", "auto: float32 on a CPU without native bfloat16"


class OutputNames:
    """Output paths for the clips of one run: the given one, or a new name per clip that nothing else has."""

    def __init__(self, folder: Path = Path("outputs"), suffix: str = ".gif", numbered: bool = False):
        self.folder, self.suffix, self.numbered = Path(folder), suffix, numbered
        self.taken: set[Path] = set()

    def __call__(self, sample: Sample, number: int, given: Path | None = None) -> Path:
        if given is not None:
            return given
        stem = f"{file_stem(sample.prompt)}-{sample.seed}"
        return self._unused(f"{number:03d}-{stem}" if self.numbered else stem)

    def _unused(self, stem: str) -> Path:
        path, index = self.folder / f"{stem}{self.suffix}", 1
        while path.exists() or path in self.taken:
            path, index = self.folder / f"{stem}-{index}{self.suffix}", index + 1
        self.taken.add(path)
        return path


def plan_run(request: Request, config: Path | None = None, output_dir: Path | None = None) -> list[Settings]:
    """Every output a run makes, each with its complete settings, output paths checked: one clip from
    `request`, or with `config` one per clip of the prompt config, each entry's settings replaced by those
    `request` says (`Request.over`), written to `output_dir`."""
    planner = Planner()
    device, dtype, reason = device_and_dtype(request.device, request.dtype)
    run = dict(
        device=device,
        dtype=dtype,
        dtype_reason=reason,
        split_guidance=request.split_guidance,
        compile=request.compile,
    )
    if config is None:
        output = None if request.output is None else Path(request.output)
        names = OutputNames()
        return [planner.plan(request, lambda sample: names(sample, 0, output), **run)]
    from animatediff.prompt_config import read_prompt_config

    fmt = request.format or "gif"
    names = OutputNames(output_dir or Path("outputs") / config.stem, "" if fmt == "png" else f".{fmt}", numbered=True)
    if request.seed == -1:  # one random seed for every clip
        request = replace(request, seed=random_seed())
    runs = []
    for entry, sources in read_prompt_config(config):
        merged, overrides = request.over(entry)
        number = len(runs)
        runs.append(
            planner.plan(
                merged, lambda sample, number=number: names(sample, number), sources, overrides=overrides, **run
            )
        )
    return runs
