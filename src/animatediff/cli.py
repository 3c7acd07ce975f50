"""The `animatediff` command: argument parsing and reporting only; the work happens in the library."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from pathlib import Path

import torch

from animatediff import __version__
from animatediff.embedded import DEFAULT_BASE, DEFAULT_MOTION_MODULE, listing, resolve
from animatediff.errors import AnimateDiffError, ConfigError
from animatediff.export import FORMATS, file_stem, output_format, write_video
from animatediff.formats import VERSION_SETTINGS, convert_checkpoint, identify
from animatediff.loading import ModelSpec, build_pipeline
from animatediff.prompt_config import Job, Sample, read_prompt_config

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _path_and_scale(text: str) -> tuple[Path, float]:
    """`PATH[:SCALE]` → (path, scale); the scale defaults to 1."""
    path, _, scale = text.rpartition(":")
    try:
        return (Path(path), float(scale)) if path else (Path(text), 1.0)
    except ValueError:
        return Path(text), 1.0


def _generate_parser(commands) -> None:
    parser = commands.add_parser("generate", help="text to video with a motion module")
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
        type=_path_and_scale,
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
        "--motion-module-version",
        choices=sorted(VERSION_SETTINGS),
        help="run the motion module as this release did (default: read from its weights)",
    )
    models.add_argument(
        "--motion-lora",
        type=_path_and_scale,
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="MotionLoRA, repeatable (they compose)",
    )
    models.add_argument("--domain-adapter", help="domain adapter LoRA (e.g. v3_sd15_adapter.ckpt)")
    models.add_argument("--domain-adapter-scale", type=float, default=1.0, metavar="A")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--negative-prompt", default="", help="what to steer away from")
    sampling.add_argument("--frames", type=int, default=16)
    sampling.add_argument("--width", type=int, help="default: the image model's own size (512 for SD1.5)")
    sampling.add_argument("--height", type=int, help="default: the image model's own size")
    sampling.add_argument("--steps", type=int, default=25, help="denoising steps")
    sampling.add_argument("--guidance-scale", type=float, default=7.5)
    sampling.add_argument("--seed", type=int, help="initial-noise seed (default: a random one, recorded)")
    sampling.add_argument("--config", type=Path, help="official-style prompt config (YAML list of entries)")
    output = parser.add_argument_group("output")
    output.add_argument("--output", "-o", type=Path, help="output file; its extension picks the format")
    output.add_argument("--output-dir", type=Path, help="folder for --config runs (one output per sample)")
    output.add_argument("--format", choices=FORMATS, default="gif", help="format of --output-dir outputs")
    output.add_argument("--fps", type=float, default=8.0)
    output.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda if present)")
    output.add_argument("--compile", action="store_true", help="torch.compile the UNet (slow first step)")
    output.add_argument(
        "--split-guidance",
        action="store_true",
        help="run the unconditional and conditional halves one after the other (less memory)",
    )
    output.add_argument("--dtype", default="auto", choices=["auto", *DTYPES], help="default: float16 on CUDA")
    parser.set_defaults(run=run_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animatediff", description="Animate Stable Diffusion image models.")
    parser.add_argument("--version", action="version", version=f"animatediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _generate_parser(commands)
    inspect = commands.add_parser("inspect", help="say what a checkpoint file or folder is")
    inspect.add_argument("path", type=Path)
    inspect.set_defaults(run=run_inspect)
    convert = commands.add_parser("convert", help="rewrite a motion module or MotionLoRA in another layout")
    convert.add_argument("source", type=Path)
    convert.add_argument("target", type=Path, help=".safetensors file (diffusers: or a MotionAdapter folder)")
    convert.add_argument("--to", required=True, choices=["official", "diffusers"])
    convert.set_defaults(run=run_convert)
    train = commands.add_parser("train", help="train a domain adapter, motion module or MotionLoRA")
    train.add_argument("config", type=Path, help="training config (YAML)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.set_defaults(run=run_train)
    models = commands.add_parser("models", help="list the embedded models and their short names")
    models.set_defaults(run=run_models)
    _shapes_parser(commands)
    evaluate = commands.add_parser("eval", help="score generated videos (shapes-world metrics, CLIP metric)")
    evaluate.add_argument("folder", type=Path, help="folder of videos with their JSON sidecars")
    evaluate.add_argument("--clip-model", help="a CLIP model folder, for the paper's CLIP metric")
    evaluate.add_argument("--reference-images", help="folder of PNGs for the CLIP domain similarity")
    evaluate.add_argument("--json", type=Path, help="also write the scores to this file")
    evaluate.set_defaults(run=run_eval)
    return parser


def _shapes_parser(commands) -> None:
    from animatediff.shapes.ablations import TABLES
    from animatediff.shapes.datasets import KINDS
    from animatediff.shapes.recipe import RECIPES
    from animatediff.shapes.world import CAMERA_MOTIONS, STYLES, TRAIL_COLOURS

    shapes = commands.add_parser("shapes", help="the procedural shapes world").add_subparsers(
        dest="action", required=True
    )
    render = shapes.add_parser("render", help="write a shapes-world dataset")
    render.add_argument("folder", type=Path)
    render.add_argument("--kind", choices=KINDS, default="clips")
    render.add_argument("--count", type=int, default=100)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--size", type=int, default=64)
    render.add_argument("--frames", type=int, default=16)
    render.add_argument("--layout", choices=["jsonl", "webvid"], default="jsonl")
    render.add_argument(
        "--style",
        choices=[*sorted(STYLES), "any"],
        help="draw every item in this style; any: each in a random style or plain",
    )
    render.add_argument("--camera", choices=sorted(CAMERA_MOTIONS))
    render.add_argument("--clean", action="store_true", help="no video-domain watermark, blur or noise")
    render.add_argument(
        "--trail",
        action="store_true",
        help="moving objects leave a fading trail (growing, shrinking, spinning: a shadow)",
    )
    render.add_argument(
        "--trail-colour",
        choices=TRAIL_COLOURS,
        default="object",
        help="what the trail's copies are drawn in: the object's colour, or the background's shadow colour",
    )
    render.set_defaults(run=run_shapes_render)
    retrain = shapes.add_parser("retrain", help="train the embedded models from nothing (the shipped recipe)")
    retrain.add_argument("folder", type=Path, help="work folder: datasets, configs, checkpoints, results")
    retrain.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default="cpu",
        help="cpu: sized for 2 CPU cores (about 2 h 20 min; the shipped models); gpu: more data and steps, "
        "about 15 min on one H200",
    )
    retrain.add_argument("--resume", action="store_true", help="continue an interrupted or time-limited run")
    retrain.add_argument("--export", type=Path, metavar="MODELS", help="then copy the results here, as shipped")
    retrain.add_argument("--steps-scale", type=float, default=1.0, help="scale every stage's steps (smoke runs)")
    retrain.add_argument("--data-scale", type=float, default=1.0, help="scale every dataset's size (smoke runs)")
    retrain.set_defaults(run=run_shapes_retrain)
    results = shapes.add_parser("results", help="regenerate docs/results.md: the embedded models' quality table")
    results.add_argument("--output", type=Path, default=Path("docs/results.md"))
    results.add_argument("--media", type=Path, default=Path("docs/media"), help="folder for the example GIFs")
    results.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    results.add_argument("--ablations", type=Path, help="JSON from `shapes ablations`, rendered as tables 2-5")
    results.set_defaults(run=run_shapes_results)
    ablations = shapes.add_parser("ablations", help="train and score the paper's ablations on a retrain folder")
    ablations.add_argument("folder", type=Path, help="the work folder of `animatediff shapes retrain`")
    ablations.add_argument("--output", type=Path, default=Path("docs/ablations.json"))
    ablations.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ablations.add_argument("--only", nargs="+", choices=TABLES,
                           help="make just these tables (the rest of an earlier run's JSON is kept)")  # fmt: skip
    ablations.set_defaults(run=run_shapes_ablations)


def _device_and_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a device name such as cpu, cuda or cuda:0.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu.")
    if dtype == "auto":
        return resolved, torch.float16 if resolved.type == "cuda" else torch.float32
    return resolved, DTYPES[dtype]


def _unused_path(folder: Path, stem: str, suffix: str) -> Path:
    path, index = folder / f"{stem}{suffix}", 1
    while path.exists():
        path, index = folder / f"{stem}-{index}{suffix}", index + 1
    return path


def _job_from_flags(args: argparse.Namespace) -> Job:
    if not args.prompt:
        raise ConfigError(
            'generate needs a PROMPT (or --config), e.g. animatediff generate "a red circle moving right".'
        )
    if args.motion_module is None:
        raise ConfigError("--motion-module is required (a motion module file, or 'none' for still images).")
    spec = ModelSpec(
        base=args.base,
        motion_module=None if args.motion_module == "none" else resolve(args.motion_module, "--motion-module"),
        dreambooth=resolve(args.dreambooth, "--dreambooth"),
        loras=[(resolve(path, "--lora"), scale) for path, scale in args.lora],
        domain_adapter=resolve(args.domain_adapter, "--domain-adapter"),
        domain_adapter_scale=args.domain_adapter_scale,
        motion_loras=[(resolve(path, "--motion-lora"), scale) for path, scale in args.motion_lora],
        motion_module_settings=dict(VERSION_SETTINGS.get(args.motion_module_version, {})),
    )
    sample = Sample(args.prompt, args.negative_prompt, args.seed, args.steps, args.guidance_scale,
                    args.frames, args.width, args.height)  # fmt: skip
    for name in ("frames", "width", "height", "steps"):
        if getattr(sample, name) is not None and getattr(sample, name) < 1:
            raise ConfigError(f"--{name} must be at least 1; got {getattr(sample, name)}.")
    return Job(spec, [sample])


def _jobs(args: argparse.Namespace) -> list[Job]:
    """Everything to make, checked before any weights load."""
    if args.base is None:  # the embedded default, with its own motion module unless told otherwise
        args.motion_module = args.motion_module or DEFAULT_MOTION_MODULE
    args.base = resolve(args.base or DEFAULT_BASE, "--base")
    if args.fps <= 0:
        raise ConfigError(f"--fps must be positive; got {args.fps}.")
    if args.output is not None:
        output_format(args.output)
    if args.config is not None:
        if args.output is not None:
            raise ConfigError("--config writes one output per sample: use --output-dir and --format, not --output.")
        return read_prompt_config(args.config, args.base)
    job = _job_from_flags(args)
    job.model.check()
    return [job]


def _output_path(args: argparse.Namespace, sample: Sample, seed: int, number: int) -> Path:
    if args.config is None:
        return args.output or _unused_path(Path("outputs"), f"{file_stem(sample.prompt)}-{seed}", ".gif")
    folder = args.output_dir or Path("outputs") / args.config.stem
    suffix = "" if args.format == "png" else f".{args.format}"
    return _unused_path(folder, f"{number:03d}-{file_stem(sample.prompt)}-{seed}", suffix)


def run_generate(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    device, dtype = _device_and_dtype(args.device, args.dtype)
    number = 0
    for job in jobs:
        pipeline = build_pipeline(job.model, device, dtype)
        pipeline.split_guidance = args.split_guidance
        if args.compile:
            pipeline.compile()
        for sample in job.samples:
            seed = sample.seed if sample.seed is not None else secrets.randbelow(2**31)
            sample.width, sample.height = sample.width or pipeline.default_size, sample.height or pipeline.default_size
            frames = pipeline(
                sample.prompt, negative_prompt=sample.negative_prompt, num_frames=sample.frames,
                height=sample.height, width=sample.width, steps=sample.steps,
                guidance_scale=sample.guidance_scale, seed=seed,
            )  # fmt: skip
            settings = {**vars(sample), "seed": seed, **job.model.describe(), "device": str(device),
                        "dtype": str(dtype).removeprefix("torch."), "animatediff_version": __version__}  # fmt: skip
            output = write_video(frames, _output_path(args, sample, seed, number), fps=args.fps, settings=settings)
            print(f"wrote {output} ({frames.shape[0]} frames, {frames.shape[2]}×{frames.shape[1]}, seed {seed})")
            number += 1
    return 0


def run_models(args: argparse.Namespace) -> int:
    print(listing())
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    info = identify(args.path)
    print(f"{args.path}: {info.description}")
    for key, value in info.details.items():
        print(f"  {key}: {value}")
    return 0 if info.kind != "unknown" else 2


def run_convert(args: argparse.Namespace) -> int:
    info = convert_checkpoint(args.source, args.target, args.to)
    print(f"wrote {args.target}: {info.kind.replace('_', ' ')} in the {args.to} layout")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from animatediff.training.config import load_train_config
    from animatediff.training.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_train_config(args.config)
    run = train(config, resume=args.resume)
    print(f"wrote {run.result} ({run.steps} steps in {run.seconds:.1f} s, {len(run.skipped)} videos skipped)")
    return 0


def run_shapes_render(args: argparse.Namespace) -> int:
    from animatediff.shapes.datasets import render_dataset

    if args.count < 1 or args.size < 8 or args.frames < 1:
        raise ConfigError("--count and --frames must be at least 1 and --size at least 8.")
    folder = render_dataset(args.folder, args.kind, args.count, args.seed, args.size, args.frames, args.layout,
                            args.style, args.camera, False if args.clean else None,
                            trail=args.trail, trail_colour=args.trail_colour)  # fmt: skip
    print(f"wrote {args.count} {args.kind} to {folder}")
    return 0


def run_shapes_retrain(args: argparse.Namespace) -> int:
    from animatediff.shapes.recipe import export, retrain

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.steps_scale <= 0 or args.data_scale <= 0:
        raise ConfigError("--steps-scale and --data-scale must be positive.")
    seconds = retrain(
        args.folder, resume=args.resume, steps_scale=args.steps_scale, data_scale=args.data_scale, recipe=args.recipe
    )
    for stage, value in seconds.items():
        print(f"{stage}: {value:.0f} s")
    if args.export is not None:
        print(f"wrote {export(args.folder, args.export)}")
    return 0


def run_shapes_results(args: argparse.Namespace) -> int:
    from animatediff.shapes.report import write_results

    print(f"wrote {write_results(args.output, args.media, args.seeds, args.ablations)}")
    return 0


def run_shapes_ablations(args: argparse.Namespace) -> int:
    from animatediff.shapes.ablations import run_ablations

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"wrote {run_ablations(args.folder, args.output, args.seeds, only=args.only)}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import json

    from animatediff.evaluation.evaluate import evaluate_folder, format_table

    rows = evaluate_folder(args.folder, args.clip_model, args.reference_images)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress bar and errors."""
    import diffusers
    import transformers

    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _run(args: argparse.Namespace) -> int:
    _quiet_libraries()
    try:
        return args.run(args)
    except AnimateDiffError as error:
        print(f"animatediff {args.command}: error: {error}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process and return its exit status."""
    return _run(build_parser().parse_args(argv))


def console() -> None:
    """The `animatediff` program (and `python -m animatediff`).

    A `generate` that finished has written and renamed its videos, and all that is left is Python's teardown
    of torch, transformers and diffusers, which frees nothing the operating system does not and takes
    about a second, a tenth of the whole command on the embedded model; so it exits without it. Every
    other command, and any error, exits normally."""
    args = build_parser().parse_args()
    status = _run(args)
    if args.command == "generate" and not args.compile:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    console()
