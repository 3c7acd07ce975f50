"""The `animatediff` command: argument parsing and reporting only; the work happens in the library.

Only light modules are imported here, and each command imports what it needs when it runs, so `--help`
and argument errors answer at once. `generate` resolves every setting (models, sizes, seeds, output
paths) and checks it before any weights load; the `Settings` it builds are what the library receives
and what each output's sidecar records.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import get_args

from animatediff import __version__
from animatediff.arguments import (
    Parser,
    command,
    count,
    finite_number,
    frame_and_path,
    frame_list,
    iterations,
    keyframe,
    path_and_scale,
    positive_number,
    seed_number,
    whole_number,
)
from animatediff.embedded import DEFAULT_BASE, DEFAULT_MOTION_MODULE, find, listing, resolve
from animatediff.errors import AnimateDiffError, ConfigError
from animatediff.export import FORMATS, FRAME_FOLDER, check_fps, file_stem, output_format, sidecar_path
from animatediff.families import DEFAULT, FAMILIES, SCHEDULERS, Family
from animatediff.files import check_output
from animatediff.sampling.options import ContextRequest, Fuse, Interpolation, Schedule, Scope
from animatediff.settings import (
    MAX_FREE_INIT,
    ControlNetSpec,
    ControlSpec,
    Job,
    ModelSpec,
    Sample,
    Settings,
    TimeControls,
    base_frame_size,
    check_sample,
    resolve_seed,
)
from animatediff.shapes.commands import add_shapes_parser
from animatediff.terminal import log_to_terminal, quiet_libraries

DTYPES = ("float32", "float16", "bfloat16")
SAMPLE_FLAGS = {
    "steps": "steps",
    "guidance_scale": "guidance_scale",
    "frames": "frames",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "negative_prompt": "negative_prompt",
}


# ---------------------------------------------------------------------------------------------------
# Argument types: each refuses a bad value with one sentence naming what was expected


# ---------------------------------------------------------------------------------------------------
# The parser


def _generate_parser(commands) -> None:
    parser = command(commands, "generate", "text to video with a motion module")
    parser.add_argument("prompt", nargs="?", help="what the video shows")
    models = parser.add_argument_group(
        "models", "each takes a path or an embedded model's short name (see: animatediff models)"
    )
    models.add_argument(
        "--base", help="the SD1.x image model: a diffusers folder or a single file (default: the embedded 'shapes')"
    )
    models.add_argument(
        "--dreambooth", help="personalized model: single-file checkpoint (LDM layout) or diffusers (UNet) folder"
    )
    models.add_argument(
        "--lora",
        type=path_and_scale,
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="image LoRA (kohya/civitai or diffusers) or an embedded one's name, repeatable",
    )
    models.add_argument(
        "--motion-module",
        help="motion module file or MotionAdapter folder, or 'none' (default with the embedded base: 'shapes-motion')",
    )
    models.add_argument(
        "--family",
        choices=list(FAMILIES),
        help="the motion module's release, for its sampling preset and how it runs (default: "
        "decided from its weights, metadata or file name; README, 'Model families')",
    )
    models.add_argument(
        "--motion-module-version", choices=list(FAMILIES), dest="family", help=argparse.SUPPRESS
    )  # the earlier name of --family
    models.add_argument(
        "--motion-lora",
        type=path_and_scale,
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="MotionLoRA, repeatable (they compose by weighted sum)",
    )
    models.add_argument("--domain-adapter", help="domain adapter LoRA (e.g. v3_sd15_adapter.ckpt)")
    models.add_argument(
        "--domain-adapter-scale",
        type=finite_number,
        default=1.0,
        metavar="A",
        help="the domain adapter's α (0 removes it)",
    )
    sampling = parser.add_argument_group("sampling (with --config: each one given overrides every entry's value)")
    sampling.add_argument("--negative-prompt", help="what to steer away from (default: nothing)")
    sampling.add_argument("--frames", type=whole_number, help="clip length in frames (default: 16)")
    sampling.add_argument("--width", type=whole_number, help="default: the image model's own size (512 for SD1.5)")
    sampling.add_argument("--height", type=whole_number, help="default: the image model's own size")
    sampling.add_argument(
        "--steps", type=whole_number, help=f"denoising steps (default: the family's; {DEFAULT.steps} for v1-v3)"
    )
    sampling.add_argument(
        "--scheduler",
        choices=list(SCHEDULERS),
        help="the sampler, on the release's own noise "
        "schedule (default: the family's; ddim, the official settings, for v1-v3)",
    )
    sampling.add_argument(
        "--guidance-scale",
        type=finite_number,
        help=f"classifier-free guidance; 1 or less turns it off (default: the family's; {DEFAULT.guidance_scale} "
        "for v1-v3)",
    )
    sampling.add_argument("--seed", type=seed_number, help="initial-noise seed; -1 or none: a random one, recorded")
    sampling.add_argument("--config", type=Path, help="official-style prompt config (YAML list of entries)")
    _time_arguments(parser)
    _control_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--output",
        "-o",
        type=Path,
        help="output file; its extension picks the format (.gif .mp4 .webm .webp; none: a folder "
        "of PNG frames) (default: outputs/PROMPT-SEED.gif)",
    )
    output.add_argument(
        "--output-dir", type=Path, help="folder for --config runs, one output per sample (default: outputs/CONFIG-NAME)"
    )
    output.add_argument("--format", choices=FORMATS, default="gif", help="format of --output-dir outputs")
    output.add_argument(
        "--fps",
        type=positive_number,
        help="frames per second of the video (default: 8; with --init-video, the input's own rate over --stride)",
    )
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (auto: cuda if present)")
    runtime.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        help="auto: float16 on CUDA; on the CPU bfloat16 where it has AMX or AVX-512 BF16, else float32. "
        "float32 is the path that matches the official implementation's frames",
    )
    runtime.add_argument("--compile", action="store_true", help="torch.compile the UNet (slow first step)")
    runtime.add_argument(
        "--split-guidance",
        action="store_true",
        help="run the unconditional and conditional halves one after the other (less memory)",
    )
    parser.set_defaults(run=run_generate)


def _time_arguments(parser: argparse.ArgumentParser) -> None:
    time = parser.add_argument_group(
        "long videos and time (with --config: each one given replaces every entry's own)",
        "a clip longer than the motion module's position table is made in context windows of 16 frames "
        "overlapping by 4 unless told otherwise",
    )
    time.add_argument("--context-length", type=whole_number, help="frames per context window (default: 16)")
    time.add_argument("--context-overlap", type=count, help="frames shared by neighbouring windows (default: 4)")
    time.add_argument(
        "--context-schedule",
        choices=get_args(Schedule),
        help="uniform: windows side by side; looped: windows wrapping around the end (default: uniform)",
    )
    time.add_argument(
        "--context-fuse", choices=get_args(Fuse), help="how overlapping windows are averaged (default: pyramid)"
    )
    time.add_argument(
        "--context-scope",
        choices=get_args(Scope),
        help="unet: every layer sees one window; motion: "
        "only the motion modules are windowed, as diffusers' FreeNoise (default: unet)",
    )
    time.add_argument(
        "--noise-shuffle",
        action="store_true",
        help="FreeNoise: later windows start from a shuffle of the first window's noise",
    )
    time.add_argument("--loop", action="store_true", help="a closed loop: the last frame flows into the first")
    time.add_argument(
        "--free-init",
        type=iterations,
        metavar="N",
        help=f"FreeInit: sample N times (1-{MAX_FREE_INIT}), each from the last result's low frequencies",
    )
    time.add_argument(
        "--prompt-at",
        type=keyframe,
        action="append",
        default=[],
        metavar="FRAME:TEXT",
        help="prompt travel: the prompt from this frame on (repeatable; negative frames count from "
        "the end; PROMPT is frame 0's unless 0: is given)",
    )
    time.add_argument(
        "--prompt-interpolation",
        choices=get_args(Interpolation),
        default="linear",
        help="how text states change between keyframes",
    )


def _control_arguments(parser: argparse.ArgumentParser) -> None:
    control = parser.add_argument_group(
        "video to video, ControlNet, IP-Adapter, image to video (init image, SparseCtrl) (with --config: given "
        "flags replace every entry's own)",
        "videos: any file PyAV reads or a folder of per-frame images, resized to cover the clip and "
        "centre-cropped; frames taken from the first",
    )
    control.add_argument("--init-video", help="restyle this video: its frames are noised to --strength and denoised")
    control.add_argument(
        "--strength",
        type=finite_number,
        help="how much of the init video is redrawn, in (0, 1] (default: 0.6; 1: all of it)",
    )
    control.add_argument(
        "--stride", type=whole_number, help="take every n-th frame of the init and control videos (default: 1)"
    )
    control.add_argument(
        "--controlnet",
        type=path_and_scale,
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="an SD1.5 ControlNet (diffusers folder or single file), repeatable; each takes the "
        "--control-video in the same place",
    )
    control.add_argument(
        "--control-video",
        action="append",
        default=[],
        metavar="PATH",
        help="control frames (edges, pose, depth …) for the ControlNet in the same place",
    )
    control.add_argument(
        "--control-start", type=finite_number, help="fraction of the steps before the ControlNets act (default: 0)"
    )
    control.add_argument(
        "--control-end", type=finite_number, help="fraction of the steps after which they stop (default: 1)"
    )
    control.add_argument("--guess-mode", action="store_true", help="ControlNets see no text (the conditional half)")
    control.add_argument(
        "--ip-adapter",
        type=path_and_scale,
        metavar="PATH[:SCALE]",
        help="an SD1.5 IP-Adapter (.safetensors or .bin) steered by --ip-image",
    )
    control.add_argument("--ip-image", help="the image prompt of --ip-adapter")
    control.add_argument(
        "--image-encoder",
        help="CLIP vision model folder for --ip-adapter (default: image_encoder/ beside the IP-Adapter file)",
    )
    control.add_argument(
        "--init-image",
        help="start the clip from this image (any motion module): blended into "
        "each frame's starting latents, less each frame, then noised to --init-strength",
    )
    control.add_argument(
        "--init-strength", type=finite_number, help="how much of the blend is redrawn, in (0, 1] (default: 0.75)"
    )
    control.add_argument(
        "--init-falloff",
        type=finite_number,
        metavar="FRAMES",
        help="the image's weight falls from 1 to 0 over this many frames (default: 32)",
    )
    control.add_argument("--last-image", help="end the clip on this image, blended in the same way from the end")
    control.add_argument(
        "--sparsectrl",
        type=path_and_scale,
        metavar="PATH[:SCALE]",
        help="a SparseCtrl encoder (RGB or scribble; official .ckpt/.safetensors or diffusers "
        "folder) steered by keyframes",
    )
    control.add_argument(
        "--control-image",
        type=frame_and_path,
        action="append",
        default=[],
        metavar="FRAME:PATH",
        help="a SparseCtrl keyframe: the image (scribbles: white lines on black) at FRAME (negative: "
        "from the end, as --control-image=-1:PATH), repeatable; cropped to the clip's aspect ratio "
        "and resized",
    )
    control.add_argument(
        "--control-latents",
        metavar="FILE.npy",
        help="precomputed RGB keyframe latents, (keyframes, "
        "4, h, w) scaled by the VAE's scaling factor, instead of --control-image",
    )
    control.add_argument(
        "--control-frames",
        type=frame_list,
        metavar="I,J,…",
        help="the frames of the --control-latents (default: 0, 1, …)",
    )
    control.add_argument(
        "--normalize-condition-images",
        action="store_true",
        help="turn control images grey and stretch them to [0, 1] (the official key of that name)",
    )


def _control_spec(args: argparse.Namespace) -> ControlSpec | None:
    """The control inputs the flags give (None: none given)."""
    if len(args.controlnet) != len(args.control_video):
        raise ConfigError(
            f"each --controlnet takes one --control-video, in the same order; got {len(args.controlnet)} "
            f"ControlNets and {len(args.control_video)} control videos."
        )
    names = ("strength", "stride", "control_start", "control_end", "init_strength", "init_falloff")
    values = {name: getattr(args, name) for name in names}
    values = {name: value for name, value in values.items() if value is not None}
    controlnets = tuple(
        ControlNetSpec(resolve(path, "--controlnet"), scale, Path(video))
        for (path, scale), video in zip(args.controlnet, args.control_video, strict=True)
    )
    ip_adapter, ip_scale = args.ip_adapter or (None, 1.0)
    sparsectrl, sparse_scale = args.sparsectrl or (None, 1.0)
    if args.control_image and args.control_frames:
        raise ConfigError("--control-frames places --control-latents; each --control-image gives its own FRAME.")
    spec = ControlSpec(
        init_video=_path(args.init_video),
        controlnets=controlnets,
        guess_mode=args.guess_mode,
        ip_adapter=_path(ip_adapter),
        ip_adapter_scale=ip_scale,
        ip_image=_path(args.ip_image),
        image_encoder=_path(args.image_encoder),
        init_image=_path(args.init_image),
        last_image=_path(args.last_image),
        sparsectrl=resolve(sparsectrl, "--sparsectrl"),
        sparsectrl_scale=sparse_scale,
        control_images=tuple(Path(p) for _, p in args.control_image),
        control_frames=tuple(f for f, _ in args.control_image) or args.control_frames or (),
        control_latents=_path(args.control_latents),
        normalize_condition_images=args.normalize_condition_images,
        **values,
    )
    if not spec.given and (values or args.guess_mode or args.ip_image or args.image_encoder):
        raise ConfigError(
            "--strength, --stride, --control-start/--control-end, --guess-mode, --init-strength, "
            "--init-falloff and the IP-Adapter image need an --init-video, an --init-image, a "
            "--controlnet or an --ip-adapter."
        )
    return spec if spec.given else None


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _time_controls(args: argparse.Namespace) -> TimeControls:
    request = ContextRequest(
        args.context_length,
        args.context_overlap,
        args.context_schedule,
        args.context_fuse,
        args.context_scope,
        args.loop,
    )
    return TimeControls(
        keyframes=tuple(args.prompt_at),
        interpolation=args.prompt_interpolation,
        context=request,
        noise_shuffle=args.noise_shuffle,
        free_init=args.free_init,
    )


def _time_given(args: argparse.Namespace) -> bool:
    controls = _time_controls(args)
    return bool(controls.keyframes or controls.context.given() or controls.noise_shuffle or controls.free_init)


def _serve_parser(commands) -> None:
    serve = command(commands, "serve", "the web app and HTTP API (127.0.0.1:7860)")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (another than loopback: say who may connect with --auth or --token-file)",
    )
    serve.add_argument("--port", type=whole_number, default=7860, help="port to listen on")
    serve.add_argument(
        "--models", type=Path, help="a folder whose checkpoints the page lists (the embedded models are always listed)"
    )
    serve.add_argument("--outputs", type=Path, default=Path("outputs"), help="where outputs and job records go")
    serve.add_argument("--auth", metavar="USER:PASSWORD", help="ask for this user (page and API: HTTP Basic)")
    serve.add_argument("--token-file", type=Path, help="API clients may send this file's token as a Bearer token")
    serve.add_argument(
        "--device",
        action="append",
        default=[],
        help="a device with a worker of its own, repeatable (default: cuda if available, else cpu)",
    )
    serve.add_argument("--queue", type=whole_number, default=8, help="jobs that may wait; more answer 429")
    for name, what in (
        ("frames", "frames"),
        ("size", "width or height"),
        ("steps", "steps"),
        ("prompt-length", "prompt characters"),
    ):
        serve.add_argument(
            f"--max-{name}",
            type=whole_number,
            help=f"the most {what} a request may ask for (default: what fits the device)",
        )
    serve.set_defaults(run=run_serve)


def _tool_parsers(commands) -> None:
    inspect = command(commands, "inspect", "say what a checkpoint file or folder is")
    inspect.add_argument("path", help="a file, a folder, or an embedded model's short name")
    inspect.set_defaults(run=run_inspect)
    convert = command(commands, "convert", "rewrite a motion module, MotionLoRA or SparseCtrl in another layout")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path, help=".safetensors file (diffusers: or a model folder, no extension)")
    convert.add_argument("--to", required=True, choices=["official", "diffusers"], help="the layout to write")
    convert.set_defaults(run=run_convert)
    models = command(commands, "models", "list the embedded models and their short names")
    models.set_defaults(run=run_models)
    train = command(commands, "train", "train a domain adapter, motion module, MotionLoRA or image model")
    train.add_argument("config", type=Path, help="training config (YAML)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.add_argument("--steps", type=whole_number, help="train this many steps instead of the config's")
    train.set_defaults(run=run_train)
    evaluate = command(commands, "eval", "score generated videos (shapes-world metrics, CLIP metric)")
    evaluate.add_argument("folder", type=Path, help="folder of videos with their JSON sidecars")
    evaluate.add_argument("--clip-model", help="a CLIP model folder, for the paper's CLIP metric")
    evaluate.add_argument("--reference-images", help="folder of PNGs for the CLIP domain similarity")
    evaluate.add_argument("--json", type=Path, help="also write the scores to this file")
    evaluate.set_defaults(run=run_eval)


def _preprocess_parser(commands) -> None:
    preprocess = command(commands, "preprocess", "control frames from a video: canny edges")
    preprocess.add_argument("kind", choices=["canny"], help="what to draw: canny (white edges on black)")
    preprocess.add_argument("input", type=Path, help="a video file or a folder of frames")
    preprocess.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        help="video file (its extension picks the format) or a folder of PNG frames",
    )
    preprocess.add_argument("--frames", type=whole_number, help="only the first N frames (after --stride)")
    preprocess.add_argument("--stride", type=whole_number, default=1, help="take every n-th frame")
    preprocess.add_argument("--width", type=whole_number, help="resize and centre-crop to this width")
    preprocess.add_argument("--height", type=whole_number, help="… and height (both or neither)")
    preprocess.add_argument("--low", type=count, default=100, help="Canny's lower threshold (default: 100)")
    preprocess.add_argument("--high", type=count, default=200, help="Canny's upper threshold (default: 200)")
    preprocess.add_argument("--fps", type=positive_number, default=8.0, help="frame rate of a video output")
    preprocess.set_defaults(run=run_preprocess)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="animatediff", description="Animate Stable Diffusion image models.")
    parser.add_argument("--version", action="version", version=f"animatediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    _generate_parser(commands)
    _tool_parsers(commands)
    _serve_parser(commands)
    _preprocess_parser(commands)
    add_shapes_parser(commands)  # the lab's commands last
    return parser


# ---------------------------------------------------------------------------------------------------
# generate: flags (or a prompt config) → complete Settings, checked before any weights load


def _model_from_flags(args: argparse.Namespace, base: Path, default_module: Path | None) -> ModelSpec:
    if args.motion_module is None and default_module is None:
        raise ConfigError("--motion-module is required (a motion module file, or 'none' for still images).")
    module = args.motion_module or DEFAULT_MOTION_MODULE
    model = ModelSpec(
        base=base,
        motion_module=None if module == "none" else resolve(module, "--motion-module"),
        dreambooth=resolve(args.dreambooth, "--dreambooth"),
        loras=[(resolve(path, "--lora"), scale) for path, scale in args.lora],
        domain_adapter=resolve(args.domain_adapter, "--domain-adapter"),
        domain_adapter_scale=args.domain_adapter_scale,
        motion_loras=[(resolve(path, "--motion-lora"), scale) for path, scale in args.motion_lora],
        sampler=args.scheduler,
    )
    return model.with_family(args.family)


def _sample_from_flags(args: argparse.Namespace, base: Path, release: Family) -> Sample:
    size = base_frame_size(base)
    return Sample(
        prompt=args.prompt or "",
        negative_prompt=args.negative_prompt or "",
        seed=resolve_seed(args.seed),
        steps=args.steps or release.steps,
        guidance_scale=release.guidance_scale if args.guidance_scale is None else args.guidance_scale,
        frames=args.frames or 16,
        width=args.width or size,
        height=args.height or size,
    )


def _flag_overrides(args: argparse.Namespace) -> dict:
    """The sample settings given as flags (with --config they replace every entry's own)."""
    given = {name: getattr(args, flag) for name, flag in SAMPLE_FLAGS.items() if getattr(args, flag) is not None}
    if "seed" in given:
        given["seed"] = resolve_seed(given["seed"])
    return given


def _jobs(args: argparse.Namespace) -> tuple[list[Job], tuple[str, ...]]:
    """Every model and clip to make, with the names of the sample settings that flags override."""
    base = resolve(args.base or DEFAULT_BASE, "--base")
    default_module = resolve(DEFAULT_MOTION_MODULE, "--motion-module") if args.base is None else None
    if args.config is None:
        starts = any(frame == 0 for frame, _ in args.prompt_at)
        if not args.prompt and not starts:
            raise ConfigError(
                'generate needs a PROMPT (or --config), e.g. animatediff generate "a red circle moving right".'
            )
        if args.prompt and starts:
            raise ConfigError("PROMPT and --prompt-at 0:… both give frame 0's prompt; give one of them.")
        model = _model_from_flags(args, base, default_module)
        model.check()
        control = _control_spec(args) or ControlSpec()
        control.check()
        return [Job(model, (_sample_from_flags(args, base, model.release),), _time_controls(args), control)], ()
    if args.output is not None:
        raise ConfigError("--config writes one output per sample: use --output-dir and --format, not --output.")
    if args.prompt:
        raise ConfigError("a PROMPT and --config were both given; the config's entries hold the prompts.")
    from animatediff.prompt_config import read_prompt_config

    jobs = read_prompt_config(args.config, base, default_module, family=args.family)
    overrides = _flag_overrides(args)
    time = _time_controls(args) if _time_given(args) else None
    control = _control_spec(args)
    models = {"sampler": args.scheduler} if args.scheduler else {}
    jobs = [
        Job(
            replace(job.model, **models),
            tuple(replace(sample, **overrides) for sample in job.samples),
            time or job.time,
            control or job.control,
        )
        for job in jobs
    ]
    for job in jobs:
        job.control.check()
    replaced = [
        name
        for name, given in (
            ("time controls", time),
            ("scheduler", models),
            ("family", args.family),
            ("control", control),
        )
        if given
    ]
    return jobs, tuple(sorted(overrides)) + tuple(replaced)


def fast_bfloat16() -> bool:
    """Whether this CPU runs bfloat16 matmuls and convolutions natively (AMX or AVX-512 BF16), as torch reports."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def _device_and_dtype(device: str, dtype: str) -> tuple[str, str, str]:
    """The device, the dtype and why that dtype (`--dtype auto`: float16 on CUDA; on the CPU bfloat16 where it
    runs natively, at the quality of float32 on the held-out clips and about twice its speed, bench/RESULTS.md;
    float32 elsewhere. `--dtype float32` is the path whose frames match the official implementation's)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a device name such as cpu, cuda or cuda:0.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    if dtype != "auto":
        return str(resolved), dtype, "--dtype"
    if resolved.type == "cuda":
        return str(resolved), "float16", "auto: float16 on CUDA"
    if fast_bfloat16():
        return str(resolved), "bfloat16", "auto: bfloat16 on a CPU with AMX or AVX-512 BF16 (--dtype float32: parity)"
    return str(resolved), "float32", "auto: float32 on a CPU without native bfloat16"


class OutputNames:
    """Output paths for the runs of one command: the given one, or a new name per clip."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.taken: set[Path] = set()

    def __call__(self, sample: Sample, number: int) -> Path:
        args = self.args
        if args.config is None:
            if args.output is not None:
                return args.output
            return self._unused(Path("outputs"), f"{file_stem(sample.prompt)}-{sample.seed}", ".gif")
        folder = args.output_dir or Path("outputs") / args.config.stem
        suffix = "" if args.format == "png" else f".{args.format}"
        return self._unused(folder, f"{number:03d}-{file_stem(sample.prompt)}-{sample.seed}", suffix)

    def _unused(self, folder: Path, stem: str, suffix: str) -> Path:
        path, index = folder / f"{stem}{suffix}", 1
        while path.exists() or path in self.taken:
            path, index = folder / f"{stem}-{index}{suffix}", index + 1
        self.taken.add(path)
        return path


def plan_outputs(args: argparse.Namespace) -> list[Settings]:
    """Every output `generate` will write, each with its complete settings; output paths checked."""
    jobs, overrides = _jobs(args)
    device, dtype, dtype_reason = _device_and_dtype(args.device, args.dtype)
    names = OutputNames(args)
    runs = []
    for job in jobs:
        table = motion_table(job.model)
        for sample in job.samples:
            sample, note = job.time.apply(sample, table)
            check_sample(job.model, sample)
            output = names(sample, len(runs))
            fps = output_fps(args.fps, job.control)
            check_fps(fps, output_format(output))
            check_output(output, directory=output_format(output) == "png", replaceable=FRAME_FOLDER)
            check_output(sidecar_path(output))
            runs.append(
                Settings(
                    sample=sample,
                    model=job.model,
                    output=output,
                    fps=fps,
                    device=device,
                    dtype=dtype,
                    dtype_reason=dtype_reason,
                    overrides=overrides,
                    notes=(note,) if note else (),
                    control=job.control,
                )
            )
    return runs


def output_fps(given: float | None, control: ControlSpec) -> float:
    """The output's frame rate: the one given; else a restyled video's own over the stride; else 8."""
    if given is not None:
        return given
    if control.init_video is not None:
        from animatediff.media import video_fps

        rate = video_fps(control.init_video)
        if rate:
            return rate / control.stride
    return 8.0


def motion_table(model: ModelSpec) -> int | None:
    """The length of the model's motion-module position table, read without loading it (None: no module)."""
    if model.motion_module is None:
        return None
    if "max_frames" in model.motion_module_settings:
        return int(model.motion_module_settings["max_frames"])
    from animatediff.formats import motion_module_table

    return motion_module_table(model.motion_module)


def _this_process_share(runs: list[Settings]) -> list[Settings]:
    """Under `accelerate launch` (or torchrun) with several processes: this process's share of the outputs
    (accelerate's `split_between_processes`, in order), each made on this process's device. Every process
    plans the same outputs, so names and settings are those one process would give."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return runs
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes: gloo, as `train` runs them
    with state.split_between_processes(runs) as share:
        share = list(share)
    if state.device.type != "cpu":
        share = [replace(run, device=str(state.device)) for run in share]
    return share


def run_generate(args: argparse.Namespace) -> int:
    runs = _this_process_share(plan_outputs(args))
    from animatediff.memory import check_memory

    for run in runs:
        check_memory(run, args.split_guidance)
    from animatediff.generation import generate_outputs

    outputs = generate_outputs(runs, split_guidance=args.split_guidance, compile=args.compile)
    for number, (run, output) in enumerate(outputs, start=1):
        count = f"[{number}/{len(runs)}] " if len(runs) > 1 else ""
        sample = run.sample
        print(f"{count}wrote {output} ({sample.frames} frames, {sample.width}×{sample.height}, seed {sample.seed})")
    return 0


# ---------------------------------------------------------------------------------------------------
# The other commands


def run_models(args: argparse.Namespace) -> int:
    print(listing())
    return 0


def settings_from_flags(words: list[str]) -> Settings:
    """The one output a `generate` command line makes, planned with every check `generate` makes (the web
    app's requests go through it); a refused flag is a `ConfigError` saying why."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            args = build_parser().parse_args(words)
    except SystemExit as error:  # the parser refused a value, saying why
        reason = said.getvalue().strip().removeprefix("animatediff generate: error: ")
        raise ConfigError(f"the request's settings were refused: {reason}") from error
    (settings,) = plan_outputs(args)
    return settings


def chosen_dtype(device: str) -> tuple[str, str, str]:
    """`--dtype auto` on `device`: (device, dtype, why)."""
    return _device_and_dtype(device, "auto")


def app_callbacks() -> dict:
    """What the web app takes from the command line (`ServerOptions`' callbacks)."""
    return {"settings_from_flags": settings_from_flags, "device_dtype": chosen_dtype}


def serve_options(args: argparse.Namespace):
    """The server's options from `serve`'s flags."""
    import torch

    from animatediff.app.requests import Limits
    from animatediff.app.server import ServerOptions

    devices = tuple(args.device) or ("cuda" if torch.cuda.is_available() else "cpu",)
    limits = Limits.for_device(devices[0])
    given = {
        "frames": args.max_frames,
        "size": args.max_size,
        "steps": args.max_steps,
        "prompt_length": args.max_prompt_length,
    }
    limits = replace(limits, **{name: value for name, value in given.items() if value is not None})
    auth = None
    if args.auth is not None:
        user, colon, password = args.auth.partition(":")
        if not colon or not user or not password:
            raise ConfigError(f"--auth expects USER:PASSWORD; got {args.auth!r}.")
        auth = (user, password)
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as error:
            raise ConfigError(f"--token-file {args.token_file}: cannot be read ({error.strerror}).") from error
        if len(token) < 16:
            raise ConfigError(f"--token-file {args.token_file}: the token must be at least 16 characters.")
    if args.models is not None and not args.models.is_dir():
        raise ConfigError(f"--models {args.models}: no such folder.")
    args.outputs.mkdir(parents=True, exist_ok=True)
    return ServerOptions(
        **app_callbacks(),
        outputs=args.outputs,
        models=args.models,
        limits=limits,
        devices=devices,
        capacity=args.queue,
        auth=auth,
        token=token,
    )


def run_serve(args: argparse.Namespace) -> int:
    import ipaddress

    options = serve_options(args)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and options.auth is None and options.token is None:
        print(
            f"animatediff serve: warning: listening on {args.host} without authentication: anyone who can reach "
            "this address can generate and read outputs; give --auth USER:PASSWORD or --token-file.",
            file=sys.stderr,
        )
    import uvicorn

    from animatediff.app.server import create_app

    print(f"animatediff serve: http://{args.host}:{args.port}/ (API: /api, schema: /docs)")
    uvicorn.run(create_app(options), host=args.host, port=args.port, log_level="warning")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from animatediff.formats import Kind, identify

    path = find(args.path) or Path(args.path)
    if not path.exists():
        raise ConfigError(
            f"{args.path}: no such file or folder, nor an embedded model's name (see: animatediff models)."
        )
    info = identify(path)
    if info.kind == Kind.SPARSECTRL:
        from animatediff.sparsectrl import describe

        info.details.update(describe(path))
    print(f"{args.path}: {info.description}")
    for key, value in info.details.items():
        print(f"  {key}: {value}")
    return 0 if info.kind != Kind.UNKNOWN else 2


def run_convert(args: argparse.Namespace) -> int:
    from animatediff.formats import Layout, convert_checkpoint
    from animatediff.sparsectrl import convert_sparsectrl

    info = convert_checkpoint(args.source, args.target, Layout(args.to), convert_sparsectrl)
    print(f"wrote {args.target}: {info.kind.replace('_', ' ')} in the {args.to} layout")
    return 0


def run_preprocess(args: argparse.Namespace) -> int:
    if (args.width is None) != (args.height is None):
        raise ConfigError("give both --width and --height, or neither (the input's own size).")
    if args.low > args.high:
        raise ConfigError(f"--low must not be above --high; got {args.low} and {args.high}.")
    check_output(args.output, directory=output_format(args.output) == "png", replaceable=FRAME_FOLDER)
    from animatediff.control.preprocess import canny
    from animatediff.export import write_video
    from animatediff.media import read_frames

    size = (args.width, args.height) if args.width else None
    frames = read_frames(args.input, "input", args.frames, size, args.stride)
    settings = {
        "preprocess": args.kind,
        "input": str(args.input.resolve()),
        "low": args.low,
        "high": args.high,
        "stride": args.stride,
    }
    written = write_video(canny(frames, args.low, args.high), args.output, fps=args.fps, settings=settings)
    print(f"wrote {written} ({len(frames)} frames of {args.kind} edges, {frames.shape[2]}×{frames.shape[1]})")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from animatediff.training.config import load_train_config
    from animatediff.training.trainer import train

    log_to_terminal(logging.INFO)
    config = load_train_config(args.config, steps=args.steps)
    run = train(config, resume=args.resume)
    print(f"wrote {run.result} ({run.steps} steps in {run.seconds:.1f} s, {len(run.skipped)} videos skipped)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from animatediff.evaluation.evaluate import evaluate_folder, format_table, lossy_note
    from animatediff.files import atomic_path
    from animatediff.shapes.metrics import score_video

    rows = evaluate_folder(args.folder, score_video, args.clip_model, args.reference_images)
    print(format_table(rows))
    if lossy_note(rows):
        logging.getLogger("animatediff").warning(lossy_note(rows))
    if args.json is not None:
        with atomic_path(args.json) as temporary:
            temporary.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------------
# Running a command


def _run(args: argparse.Namespace) -> int:
    quiet_libraries()
    log_to_terminal()
    try:
        return args.run(args)
    except AnimateDiffError as error:
        print(f"animatediff {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"animatediff {args.command}: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process and return its exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help, --version, or an argument error (already printed)
        return exit.code if isinstance(exit.code, int) else 2
    return _run(args)


def console() -> None:
    """The `animatediff` program (and `python -m animatediff`).

    A `generate` that finished has written and renamed its videos, and all that is left is Python's teardown
    of torch, transformers and diffusers, which frees nothing the operating system does not and takes
    about a second, a tenth of the whole command on the embedded model; so it exits without it. Every
    other command, and any error, exits normally."""
    args = build_parser().parse_args()
    status = _run(args)
    if args.command == "generate" and status == 0 and not args.compile:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    console()
