"""The `animatediff` command: argument parsing and reporting only; the work happens in the library.

Only light modules are imported here, and each command imports what it needs when it runs, so `--help`
and argument errors answer at once. `generate` resolves every setting (models, sizes, seeds, output
paths) and checks it before any weights load; the `Settings` it builds are what the library receives
and what each output's sidecar records.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from animatediff import __version__
from animatediff.app.command import add_serve_parser
from animatediff.arguments import Parser, command, count, finite_number, positive_number, whole_number
from animatediff.embedded import find, listing
from animatediff.errors import AnimateDiffError, ConfigError
from animatediff.export import FRAME_FOLDER, output_format
from animatediff.families import FAMILIES
from animatediff.files import check_output
from animatediff.finishing.command import add_interpolate_parser
from animatediff.planner import plan_run
from animatediff.request import SCALED, Request, check, declarations, flag, from_text
from animatediff.settings import Settings
from animatediff.shapes.commands import add_shapes_parser
from animatediff.terminal import log_to_terminal, quiet_libraries

# ---------------------------------------------------------------------------------------------------
# generate: its options are made from the request's declarations (animatediff.request)

GROUPS = {
    "models": (
        "models",
        "each takes a path, a short name (the embedded models and the releases: animatediff models) or a Hub id "
        "(OWNER/REPO, hf://OWNER/REPO/FILE, either with @REVISION)",
    ),
    "sampling": ("sampling (with --config: each one given overrides every entry's value)", None),
    "time": (
        "long videos and time (with --config: given ones replace every entry's own)",
        "a clip longer than the motion module's position table is made in context windows of 16 frames "
        "overlapping by 4 unless told otherwise",
    ),
    "control": (
        "video to video, ControlNet, IP-Adapter, image to video (init image, SparseCtrl) (with --config: given "
        "flags replace every entry's own)",
        "videos: any file PyAV reads or a folder of per-frame images, resized to cover the clip and "
        "centre-cropped; frames taken from the first",
    ),
    "finish": ("finishing (after the clip is decoded)", None),
    "output": ("output", None),
    "speed": ("speed (docs/results.md, 'Step caching': what each costs in quality)", None),
    "runtime": ("runtime", None),
}


def _value_type(name: str):
    """The argparse type of a setting: its text read and checked as every front end checks it."""

    def parse(text: str):
        if declarations()[name].kind == SCALED and Path(text).exists():
            return text, 1.0  # a file whose own name has a colon
        try:
            value = from_text(name, text)
            check(name, declarations()[name], value)
        except (ValueError, ConfigError) as error:
            raise argparse.ArgumentTypeError(str(error).rstrip(".").removeprefix(f"{name} ")) from None
        return value

    parse.__name__ = name  # argparse names the type in some errors
    return parse


def _add_setting(group, name: str, declared) -> None:
    option = flag(name)
    help = declared.help
    if declared.default is not None and declared.kind != "choice":
        help = f"{help} (default: {declared.default})" if "default:" not in help else help
    if declared.kind == "switch":
        group.add_argument(option, dest=name, action="store_true", help=help)
        return
    extra = {"choices": list(declared.choices)} if declared.kind == "choice" else {"type": _value_type(name)}
    if declared.repeat:
        extra.update(action="append", default=[])
    group.add_argument(option, dest=name, metavar=declared.metavar, help=help, **extra)


def _generate_parser(commands) -> None:
    parser = command(commands, "generate", "text to video with a motion module")
    parser.add_argument("prompt", nargs="?", help=declarations()["prompt"].help)
    groups = {key: parser.add_argument_group(title, text) for key, (title, text) in GROUPS.items()}
    for name, declared in declarations().items():
        if flag(name) is not None:
            _add_setting(groups[declared.group], name, declared)
    models, output = groups["models"], groups["output"]
    models.add_argument("--motion-module-version", choices=list(FAMILIES), dest="family", help=argparse.SUPPRESS)
    output.add_argument("--output", "-o", type=Path, help=declarations()["output"].help)
    output.add_argument(
        "--output-dir", type=Path, help="folder for --config runs, one output per sample (default: outputs/CONFIG-NAME)"
    )
    groups["sampling"].add_argument("--config", type=Path, help="official-style prompt config (YAML list of entries)")
    parser.set_defaults(run=run_generate)


def request_from_flags(args: argparse.Namespace) -> Request:
    """The request `generate`'s flags make (what was not given stays unsaid)."""
    values = {name: getattr(args, name) for name in declarations() if hasattr(args, name)}
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in values.items()}
    values["output"] = None if args.output is None else str(args.output)
    return Request(**values)


def _check_prompt(args: argparse.Namespace, request: Request) -> None:
    """What only the command line can get wrong: a prompt given twice, or not at all."""
    starts = any(frame == 0 for frame, _ in request.prompt_map)
    if args.config is None:
        if not request.prompt and not starts:
            raise ConfigError(
                'generate needs a PROMPT (or --config), e.g. animatediff generate "a red circle moving right".'
            )
        if request.prompt and starts:
            raise ConfigError("PROMPT and --prompt-at 0:… both give frame 0's prompt; give one of them.")
        return
    if args.output is not None:
        raise ConfigError("--config writes one output per sample: use --output-dir and --format, not --output.")
    if request.prompt:
        raise ConfigError("a PROMPT and --config were both given; the config's entries hold the prompts.")


def plan_outputs(args: argparse.Namespace) -> list[Settings]:
    """Every output `generate` will write, each with its complete settings; output paths checked."""
    request = request_from_flags(args)
    _check_prompt(args, request)
    return plan_run(request, args.config, args.output_dir)


def _this_process_share(runs: list[Settings]):
    """Under `accelerate launch` (or torchrun) with several processes: the outputs this process makes, and its
    share of each one's context windows. As many outputs as processes or more: this process's share of the
    outputs (accelerate's `split_between_processes`, in order), each made whole on this process's device.
    Fewer (one long clip): every process makes every output, running its share of each step's context windows
    (`sampling.distributed`), and process 0 writes. Every process plans the same outputs, so names and settings
    are those one process would give."""
    from animatediff.sampling.distributed import ALONE, join_processes, launched_processes, process_device

    processes = launched_processes()
    if processes <= 1:
        return runs, ALONE
    if len(runs) < processes:
        device = process_device(runs[0].device)
        spread = join_processes(device)
        return [replace(run, device=device) for run in spread.from_first(runs)], spread
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes: gloo, as `train` runs them
    with state.split_between_processes(runs) as share:
        share = list(share)
    if state.device.type != "cpu":
        share = [replace(run, device=str(state.device)) for run in share]
    return share, ALONE


def run_generate(args: argparse.Namespace) -> int:
    runs, spread = _this_process_share(plan_outputs(args))
    from animatediff.generation import generate_outputs

    outputs = generate_outputs(runs, spread=spread)
    for number, (run, output) in enumerate(outputs, start=1):
        count = f"[{number}/{len(runs)}] " if len(runs) > 1 else ""
        sample = run.sample
        width, height = (sample.width, sample.height) if run.upscale is None else run.upscaled_size()
        frames = f"{run.clip_frames} frames" + (f" interpolated to {run.output_frames}" if run.interpolate else "")
        print(f"{count}wrote {output} ({frames}, {width}×{height}, seed {sample.seed})")
    return 0


# ---------------------------------------------------------------------------------------------------
# The other commands' parsers


def _tool_parsers(commands) -> None:
    inspect = command(commands, "inspect", "say what a checkpoint file or folder is")
    inspect.add_argument("path", help="a file, a folder, or an embedded model's short name")
    inspect.set_defaults(run=run_inspect)
    convert = command(commands, "convert", "rewrite a motion module, MotionLoRA or SparseCtrl in another layout")
    convert.add_argument("source", help="a file, a folder, or an embedded model's short name")
    convert.add_argument("target", type=Path, help=".safetensors file (diffusers: or a model folder, no extension)")
    convert.add_argument("--to", required=True, choices=["official", "diffusers"], help="the layout to write")
    convert.add_argument(
        "--dtype", choices=["float16", "float32", "bfloat16"], help="the dtype to write (default: the source's)"
    )
    convert.set_defaults(run=run_convert)
    models = command(commands, "models", "list the embedded models and the releases' catalog, by short name")
    models.add_argument("pull", nargs="?", choices=["pull"], help="pull: download NAMEs into the Hugging Face cache")
    models.add_argument("names", nargs="*", metavar="NAME", help="a catalog name or a Hub reference (hf://…)")
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


def _upscale_parser(commands) -> None:
    upscale = command(commands, "upscale", "upscale an existing clip; with --prompt, denoise it again (the hires fix)")
    upscale.add_argument("input", type=Path, help="a video file or a folder of frames")
    upscale.add_argument("--output", "-o", type=Path, required=True, help=declarations()["output"].help)
    upscale.add_argument("--scale", type=positive_number, required=True, help=declarations()["upscale"].help)
    upscale.add_argument("--upscaler", metavar="lanczos|latent|PATH", help=declarations()["upscaler"].help)
    upscale.add_argument("--prompt", help="the second pass's prompt (without one: the upscaler alone)")
    upscale.add_argument(
        "--strength", type=finite_number, help="with --prompt: " + declarations()["upscale_strength"].help
    )
    for name in ("negative_prompt", "base", "motion_module", "seed", "steps", "guidance_scale", "device", "dtype"):
        _add_setting(upscale, name, declarations()[name])
    upscale.add_argument(
        "--fps", type=positive_number, help="frame rate of a video output (default: the input's, or 8)"
    )
    upscale.set_defaults(run=run_upscale)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="animatediff", description="Animate Stable Diffusion image models.")
    parser.add_argument("--version", action="version", version=f"animatediff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    _generate_parser(commands)
    _tool_parsers(commands)
    add_serve_parser(commands)
    _preprocess_parser(commands)
    _upscale_parser(commands)
    add_interpolate_parser(commands)
    add_shapes_parser(commands)  # the lab's commands last
    return parser


# ---------------------------------------------------------------------------------------------------
# The other commands


def run_models(args: argparse.Namespace) -> int:
    from animatediff import releases

    if args.pull is None:
        print(f"{listing()}\n\nThe releases' catalog (downloaded into the Hugging Face cache on first use):")
        print(releases.listing())
        return 0
    for name, path in releases.pull(args.names):
        print(f"{name}: {path}")
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
        from animatediff.formats.sparsectrl import describe

        info.details.update(describe(path))
    print(f"{args.path}: {info.description}")
    for key, value in info.details.items():
        print(f"  {key}: {value}")
    return 0 if info.kind != Kind.UNKNOWN else 2


def run_convert(args: argparse.Namespace) -> int:
    import torch

    from animatediff.formats import Layout, convert_checkpoint
    from animatediff.formats.sparsectrl import convert_sparsectrl

    source = find(args.source) or Path(args.source)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    info = convert_checkpoint(source, args.target, Layout(args.to), convert_sparsectrl, dtype)
    print(f"wrote {args.target}: {info.kind.replace('_', ' ')} in the {args.to} layout ({info.details['dtype']})")
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


def run_upscale(args: argparse.Namespace) -> int:
    from animatediff.media import read_frames, video_fps

    second_pass = args.prompt is not None and args.strength != 0
    if not second_pass and (args.strength or args.upscaler in ("latent", "latent-nearest")):
        raise ConfigError("a second pass (--strength above 0, or a latent upscaler) needs --prompt.")
    frames = read_frames(args.input, "input", None)
    fps = args.fps or video_fps(args.input) or 8.0
    settings = {name: getattr(args, name) for name in ("negative_prompt", "base", "motion_module", "seed", "steps")}
    request = Request(
        prompt=args.prompt,
        upscale=args.scale,
        upscaler=args.upscaler,
        upscale_strength=(None if second_pass else 0.0) if args.strength is None else args.strength,
        frames=len(frames),
        width=frames.shape[2],
        height=frames.shape[1],
        guidance_scale=args.guidance_scale,
        output=str(args.output),
        fps=fps,
        device=args.device,
        dtype=args.dtype,
        **settings,
    )
    record = {"input": str(args.input.resolve())}
    if second_pass:
        from animatediff.generation import upscale_video

        run = plan_run(request)[0]
        written, (width, height) = upscale_video(frames, run, record), run.upscaled_size()
    else:
        written, (width, height) = _upscale_alone(request, frames, record)
    print(f"wrote {written} ({len(frames)} frames, {width}×{height})")
    return 0


def _upscale_alone(request: Request, frames, record: dict) -> tuple[Path, tuple[int, int]]:
    """`upscale` without a second pass: the pixel upscaler alone, no models loaded."""
    from animatediff.finishing.upscaling import upscale_frames
    from animatediff.memory import check_frames_memory
    from animatediff.planner import upscale_spec
    from animatediff.sources import Sources

    spec = upscale_spec(request, Sources())
    width, height = spec.size(request.width, request.height, 1)
    check_frames_memory(request.frames, width, height, f"--scale {spec.scale:g} to {width}×{height}")
    output = Path(request.output)
    check_output(output, directory=output_format(output) == "png", replaceable=FRAME_FOLDER)
    return upscale_frames(frames, spec, output, request.fps, record), (width, height)


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


def busy_cpu_wait_policy(environ: dict, load: float, cores: int) -> str | None:
    """`PASSIVE` for OpenMP's `OMP_WAIT_POLICY` when the CPU already runs as many processes as it has cores
    (`load`, the 1-minute load average, ≥ `cores`) and the variable is not set; else None. With the cores busy,
    torch's OpenMP threads spinning at each barrier take them from the threads that have work: on a shared 2-core
    machine the embedded default took 2-5× as long as with sleeping threads, to the same bytes (bench/RESULTS.md).
    On an idle machine nothing changes."""
    return "PASSIVE" if "OMP_WAIT_POLICY" not in environ and load >= cores else None


def wait_passively_when_busy() -> None:
    """Set `busy_cpu_wait_policy`'s answer; OpenMP reads it when torch first loads, so before that."""
    if "torch" in sys.modules or not hasattr(os, "getloadavg"):
        return
    policy = busy_cpu_wait_policy(os.environ, os.getloadavg()[0], os.cpu_count() or 1)
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy


def main(argv: list[str] | None = None) -> int:
    """Run one command in this process and return its exit status."""
    wait_passively_when_busy()
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
    wait_passively_when_busy()
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
