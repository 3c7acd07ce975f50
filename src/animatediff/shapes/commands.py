"""`animatediff shapes`: the shapes world's commands, listed last in `animatediff --help`.

`render` and `retrain` run from the installed package (the world and the recipe that made the embedded
models). `results` and `ablations` regenerate the repository's docs with its lab/ folder, which only a
clone carries (`pip install .` does not install it): they import it when run, from beside the package's
source tree. Building the parser loads no torch; every run function imports what it needs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from types import ModuleType

import animatediff
from animatediff.arguments import command, positive_number, whole_number
from animatediff.errors import ConfigError
from animatediff.files import check_output
from animatediff.shapes.world import CAMERA_MOTIONS, KINDS, STYLES, TRAIL_COLOURS
from animatediff.terminal import log_to_terminal

LAB_MISSING = (
    "`animatediff shapes results` and `animatediff shapes ablations` regenerate the repository's docs "
    "(docs/results.md and its GIFs, docs/ablations.json) with the repository's lab/ folder, which is not "
    "installed with the package (it is looked for beside the package's source tree, at {folder}). They run "
    "from a clone: `git clone` the repository, then `pip install -e .` inside it and run the command there."
)


def add_shapes_parser(commands) -> None:
    """The `shapes` command and its actions, added to the `animatediff` command's subparsers."""
    lab = command(
        commands, "shapes", "lab: the shapes world (render datasets, retrain the embedded models, measure them)"
    )
    actions = lab.add_subparsers(dest="action", required=True, metavar="ACTION")
    _render_parser(actions)
    _retrain_parser(actions)
    _results_parser(actions)
    _ablations_parser(actions)


def _render_parser(actions) -> None:
    render = command(actions, "render", "write a shapes-world dataset")
    render.add_argument("folder", type=Path)
    render.add_argument("--kind", choices=KINDS, default="clips", help="what to render")
    render.add_argument("--count", type=whole_number, default=100, help="how many items")
    render.add_argument("--seed", type=int, default=0, help="the dataset's seed")
    render.add_argument("--size", type=whole_number, default=64, help="frame size in pixels (at least 8)")
    render.add_argument("--frames", type=whole_number, default=16, help="frames per clip")
    render.add_argument("--layout", choices=["jsonl", "webvid"], default="jsonl", help="how the clips are listed")
    render.add_argument(
        "--style",
        choices=[*sorted(STYLES), "any"],
        help="draw every item in this style; any: each in a random style or plain",
    )
    render.add_argument("--camera", choices=sorted(CAMERA_MOTIONS), help="camera clips: only this motion")
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
        help="what the trail's copies are drawn in: the object's colour or the background's shadow",
    )
    render.set_defaults(run=run_render)


def _retrain_parser(actions) -> None:
    retrain = command(actions, "retrain", "train the embedded models from nothing (the shipped recipe)")
    retrain.add_argument("folder", type=Path, help="work folder: datasets, configs, checkpoints, results")
    retrain.add_argument(
        "--recipe",
        default="cpu",
        help="cpu: sized for 2 CPU cores (the shipped models); gpu: more data and steps, one GPU",
    )
    retrain.add_argument("--resume", action="store_true", help="continue an interrupted or time-limited run")
    retrain.add_argument("--export", type=Path, metavar="MODELS", help="then copy the results here, as shipped")
    retrain.add_argument(
        "--steps-scale", type=positive_number, default=1.0, help="scale every stage's steps (smoke runs)"
    )
    retrain.add_argument(
        "--data-scale", type=positive_number, default=1.0, help="scale every dataset's size (smoke runs)"
    )
    retrain.set_defaults(run=run_retrain)


def _results_parser(actions) -> None:
    results = command(actions, "results", "regenerate docs/results.md: the embedded models' quality table")
    results.add_argument("--output", type=Path, default=Path("docs/results.md"), help="the markdown file")
    results.add_argument("--media", type=Path, default=Path("docs/media"), help="folder for the example GIFs")
    results.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of every prompt")
    results.add_argument("--ablations", type=Path, help="JSON from `shapes ablations`, rendered as tables 2-5")
    _evaluation_budget(results)
    results.set_defaults(run=run_results)


def _ablations_parser(actions) -> None:
    ablations = command(actions, "ablations", "train and score the paper's ablations on a retrain folder")
    ablations.add_argument("folder", type=Path, help="the work folder of `animatediff shapes retrain`")
    ablations.add_argument("--output", type=Path, default=Path("docs/ablations.json"), help="the tables' JSON")
    ablations.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of every prompt")
    ablations.add_argument(
        "--only",
        nargs="+",
        metavar="TABLE",
        help="make just these tables: modules, adapter, motion_lora (the rest of an earlier run's JSON is kept)",
    )
    ablations.add_argument(
        "--steps-scale", type=positive_number, default=1.0, help="scale every arm's training steps (smoke runs)"
    )
    _evaluation_budget(ablations)
    ablations.set_defaults(run=run_ablations)


def _evaluation_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sampling-steps", type=whole_number, default=25, help="denoising steps of every clip")
    parser.add_argument(
        "--max-prompts", type=whole_number, help="score only the first N prompts of each row (smoke runs; default: all)"
    )


# ---------------------------------------------------------------------------------------------------
# The lab, found in the clone the package was installed from


def lab_folder() -> Path:
    """Where a clone keeps the lab: beside the package's source tree (src/animatediff → lab/)."""
    return Path(animatediff.__file__).parents[2] / "lab"


def import_lab(module: str) -> ModuleType:
    """`lab.<module>` of this package's clone; a ConfigError saying where to run from in an installed copy."""
    folder = lab_folder()
    if not (folder / "__init__.py").is_file():
        raise ConfigError(LAB_MISSING.format(folder=folder))
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    return importlib.import_module(f"lab.{module}")


# ---------------------------------------------------------------------------------------------------
# Running an action


def run_render(args: argparse.Namespace) -> int:
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    spec = DatasetSpec(
        kind=args.kind,
        count=args.count,
        seed=args.seed,
        size=args.size,
        frames=args.frames,
        layout=args.layout,
        style=args.style,
        camera=args.camera,
        watermark=False if args.clean else None,
        trail=args.trail,
        trail_colour=args.trail_colour,
    )
    folder = render_dataset(args.folder, spec, progress=True)
    print(f"wrote {args.count} {args.kind} to {folder}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from animatediff.shapes.recipe import EXPORTED, export, retrain

    log_to_terminal(logging.INFO)
    if args.export is not None:  # a target holding files of the user's is refused before hours of training
        check_output(args.export, directory=True, replaceable=EXPORTED)
    seconds = retrain(
        args.folder, resume=args.resume, steps_scale=args.steps_scale, data_scale=args.data_scale, recipe=args.recipe
    )
    for stage, value in seconds.items():
        print(f"{stage}: {value:.0f} s")
    if args.export is not None:
        print(f"wrote {export(args.folder, args.export)}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    report = import_lab("report")
    written = report.write_results(
        args.output, args.media, args.seeds, args.ablations, steps=args.sampling_steps, max_prompts=args.max_prompts
    )
    print(f"wrote {written}")
    return 0


def run_ablations(args: argparse.Namespace) -> int:
    ablations = import_lab("ablations")
    log_to_terminal(logging.INFO)
    written = ablations.run_ablations(
        args.folder,
        args.output,
        args.seeds,
        steps=args.sampling_steps,
        max_prompts=args.max_prompts,
        only=args.only,
        steps_scale=args.steps_scale,
    )
    print(f"wrote {written}")
    return 0
