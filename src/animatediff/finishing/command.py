"""`animatediff interpolate`: more frames for any video or frame folder. Only light modules are imported
here; OpenCV and torch load when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from animatediff.arguments import command, positive_number
from animatediff.request import MAX_FACTOR, MIN_FACTOR

DEFAULT_FPS = 8.0  # a frame folder's rate, which it does not record


def _factor(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        expected = f"expected a whole number from {MIN_FACTOR} to {MAX_FACTOR}"
        raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
    return value  # its range is checked when the command runs, with the library's sentence


def add_interpolate_parser(commands) -> None:
    parser = command(commands, "interpolate", "more frames: K − 1 new ones between each pair of a clip's frames")
    parser.add_argument("input", type=Path, help="a video file (any PyAV reads) or a folder of per-frame images")
    parser.add_argument(
        "--output", "-o", type=Path, required=True, help="video file (its extension picks the format) or a frame folder"
    )
    parser.add_argument(
        "--factor",
        type=_factor,
        required=True,
        metavar="K",
        help=f"output frames per input frame ({MIN_FACTOR}-{MAX_FACTOR})",
    )
    parser.add_argument(
        "--interpolator",
        type=Path,
        metavar="PATH",
        help="a RIFE 4.x flownet.pkl (Practical-RIFE) to interpolate with (default: the built-in optical flow)",
    )
    parser.add_argument(
        "--fps", type=positive_number, help="the output's frame rate (default: the input's × K; a frame folder: 8 × K)"
    )
    parser.add_argument("--loop", action="store_true", help="the clip is a loop: interpolate last → first too")
    parser.set_defaults(run=run_interpolate)


def run_interpolate(args: argparse.Namespace) -> int:
    from animatediff.export import FRAME_FOLDER, check_fps, output_format, sidecar_path, write_video
    from animatediff.files import check_output
    from animatediff.finishing.interpolation import check_factor, interpolate, interpolator
    from animatediff.media import read_frames, video_fps

    check_factor(args.factor)
    fmt = output_format(args.output)
    fps = args.fps or (video_fps(args.input) or DEFAULT_FPS) * args.factor
    check_fps(fps, fmt)
    check_output(args.output, directory=fmt == "png", replaceable=FRAME_FOLDER)
    check_output(sidecar_path(args.output))
    between, described = interpolator(args.interpolator)
    frames = read_frames(args.input, "input", None)
    made = interpolate(frames, args.factor, args.loop, between)
    settings = {
        "interpolate": {"input": str(args.input.resolve()), "input_frames": len(frames), **described},
        "interpolation_factor": args.factor,
        "loop": args.loop,
    }
    written = write_video(made, args.output, fps=fps, settings=settings)
    print(f"wrote {written} ({len(made)} frames from {len(frames)}, {frames.shape[2]}×{frames.shape[1]}, {fps:g} fps)")
    return 0
