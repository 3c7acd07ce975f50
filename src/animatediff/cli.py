"""The `animatediff` command: argument parsing and reporting only; the work happens in the library."""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from pathlib import Path

import torch

from animatediff import __version__
from animatediff.errors import AnimateDiffError, ConfigError
from animatediff.export import output_format, write_video
from animatediff.formats import load_motion_module
from animatediff.image_models import load_base
from animatediff.pipeline import OFFICIAL_SCHEDULER, AnimateDiffPipeline

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _generate_parser(commands) -> None:
    parser = commands.add_parser("generate", help="text to video with a motion module")
    parser.add_argument("prompt", nargs="?", help="what the video shows")
    parser.add_argument("--base", type=Path, help="the image model: a diffusers folder")
    parser.add_argument(
        "--motion-module", help="motion module file (.safetensors or .ckpt, official layout), or 'none'"
    )
    parser.add_argument("--negative-prompt", default="", help="what to steer away from")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25, help="denoising steps")
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--seed", type=int, help="initial-noise seed (default: a random one, recorded)")
    parser.add_argument("--output", "-o", type=Path, help="output file; its extension picks the format")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 … (default: cuda if present)")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", *DTYPES], help="default: float16 on CUDA, float32 on CPU"
    )
    parser.set_defaults(run=run_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animatediff", description="Animate Stable Diffusion image models.")
    parser.add_argument("--version", action="version", version=f"animatediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _generate_parser(commands)
    return parser


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


def _default_output(prompt: str, seed: int) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48] or "video"
    path = Path("outputs") / f"{slug}-{seed}.gif"
    index = 1
    while path.exists():
        path = Path("outputs") / f"{slug}-{seed}-{index}.gif"
        index += 1
    return path


def _check_generate_args(args: argparse.Namespace) -> None:
    """Everything that can be checked before any weights load."""
    if not args.prompt:
        raise ConfigError('generate needs a PROMPT, e.g. animatediff generate "a red circle moving right".')
    if args.base is None:
        raise ConfigError(
            "--base is required: this release ships no embedded default model yet. Pass a diffusers "
            "folder of an SD1.x image model (see the README for a tiny one to try)."
        )
    if args.motion_module is None:
        raise ConfigError("--motion-module is required (a motion module file, or 'none' for still images).")
    if args.motion_module != "none" and not Path(args.motion_module).is_file():
        raise ConfigError(f"--motion-module {args.motion_module}: no such file.")
    for name in ("frames", "width", "height", "steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be at least 1; got {getattr(args, name)}.")
    if args.fps <= 0:
        raise ConfigError(f"--fps must be positive; got {args.fps}.")
    if args.output is not None:
        output_format(args.output)


def run_generate(args: argparse.Namespace) -> int:
    _check_generate_args(args)
    device, dtype = _device_and_dtype(args.device, args.dtype)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    output = args.output or _default_output(args.prompt, seed)
    motion_module = None if args.motion_module == "none" else load_motion_module(args.motion_module)
    components = load_base(args.base, dtype)
    pipeline = AnimateDiffPipeline.from_components(components, motion_module).to(device)
    frames = pipeline(
        args.prompt,
        negative_prompt=args.negative_prompt,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seed=seed,
    )
    settings = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "seed": seed,
        "steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "frames": args.frames,
        "width": args.width,
        "height": args.height,
        "base": str(args.base.resolve()),
        "motion_module": None if motion_module is None else str(Path(args.motion_module).resolve()),
        "motion_module_config": None if motion_module is None else motion_module.config.to_dict(),
        "domain_adapter": None,
        "domain_adapter_scale": None,
        "motion_loras": [],
        "scheduler": {"class": "DDIMScheduler", **OFFICIAL_SCHEDULER},
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "animatediff_version": __version__,
    }
    write_video(frames, output, fps=args.fps, settings=settings)
    print(f"wrote {output} ({frames.shape[0]} frames, {frames.shape[2]}×{frames.shape[1]}, seed {seed})")
    return 0


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress bar and errors."""
    import diffusers
    import transformers

    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.run(args)
    except AnimateDiffError as error:
        print(f"animatediff {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
