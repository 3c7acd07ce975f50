"""Measure the gpu recipe's long stages on the GPU at hand, and train them sized to a time budget.

    python bench/gpu_recipe.py FOLDER [--budget 450] [--light] [--pack OUT]

Renders the gpu recipe's datasets (in parallel processes, while the first stage trains), then, for
vae, base, shadow_trails (the base's fine-tune), adapter and motion in turn, measures seconds per step
with two short probe runs (20 and 120 steps) and trains the stage for its share of the time left, never
more steps than the recipe names (its counts were sized this way on an H200: docs/shapes-model.md). The
probes' step times and the step counts chosen go to FOLDER/sized.json. With `--light` the light stages
(personalized models, MotionLoRAs) follow at the recipe's own step counts; with `--pack OUT` the trained
results are packed into OUT after each stage (a tar split into parts of at most 15 MiB), so that a run
cut short keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from animatediff.files import atomic_path
from animatediff.shapes import recipe
from animatediff.shapes.recipe import GPU_DATASETS, GPU_PLAN, PLANS, claim_folder, record_time, render_data, retrain

LONG = {"vae": 0.16, "base": 0.34, "shadow_trails": 0.06, "adapter": 0.06, "motion": 0.38}  # shares of the budget

log = logging.getLogger("gpu_recipe")


def train_for(folder: Path, plan, steps: int, name: str | None = None) -> tuple[float, float]:
    """Train `plan` for `steps` into runs/<name>; returns (seconds in the training loop, seconds in all)."""
    from animatediff.training.config import load_train_config
    from animatediff.training.trainer import train

    every = min(plan.train["checkpoint_every"], steps)
    plan = replace(plan, name=name or plan.name, train={**plan.train, "steps": steps, "checkpoint_every": every})
    started = time.perf_counter()
    run = train(load_train_config(recipe.write_config(folder, plan)), resume=True)
    return run.seconds, time.perf_counter() - started


def probe(folder: Path, plan, probes: tuple[int, int]) -> tuple[float, float]:
    """(seconds per step, seconds of set-up and saving) of `plan`, from two short runs."""
    loops, walls = [], []
    for steps in probes:
        loop, wall = train_for(folder, plan, steps, f"probe_{plan.name}")
        shutil.rmtree(folder / "runs" / f"probe_{plan.name}")
        loops.append(loop)
        walls.append(wall)
    # the difference leaves the first steps' warm-up out; short probes can make it tiny, so never below
    # half the longer probe's mean
    per_step = max((loops[1] - loops[0]) / (probes[1] - probes[0]), 0.5 * loops[1] / probes[1])
    return per_step, max(walls[1] - loops[1], 0.0) + max(loops[1] - probes[1] * per_step, 0.0)


def pack(folder: Path, out: Path) -> None:
    """Tar the finished shipped stages' results (no checkpoints, no intermediate stages: the device's
    64 MiB of files back hold the shipped ones alone) into `out`, in parts of at most 15 MiB."""
    results = [str(recipe.stage_result(folder, PLANS[name]).relative_to(folder)) for name in recipe.EXPORT]
    members = [m for m in [*results, "configs", "recipe.txt", "timings.json", "sized.json"] if (folder / m).exists()]
    for old in out.glob("results.tar.part-*"):
        old.unlink()
    subprocess.run(["tar", "cf", str(out / "results.tar"), "-C", str(folder), *members], check=True)
    subprocess.run(["split", "-b", "15M", str(out / "results.tar"), str(out / "results.tar.part-")], check=True)
    (out / "results.tar").unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the long stages, in all")
    parser.add_argument("--probes", type=int, nargs=2, default=(20, 120), help="the probe runs' step counts")
    parser.add_argument("--data-scale", type=float, default=1.0, help="shrink every dataset (smoke runs)")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="shrink every batch (smoke runs)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="shrink the light stages (smoke runs)")
    parser.add_argument("--pack", type=Path, help="pack the results here after each stage")
    parser.add_argument("--light", action="store_true", help="then train the light stages too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    folder = args.folder
    claim_folder(folder, "gpu")
    # fork the renderers before CUDA starts in this process
    pool = multiprocessing.get_context("fork").Pool(len(GPU_DATASETS))
    rendering = {name: pool.apply_async(render_data, (folder, name, args.data_scale, "gpu")) for name in GPU_DATASETS}
    pool.close()

    from animatediff.shapes.models import scaffold

    if not (folder / "scaffold").exists():
        scaffold(folder / "scaffold", seed=0)
    sized_path = folder / "sized.json"
    sized = json.loads(sized_path.read_text()) if sized_path.exists() else {}
    plans = {
        plan.name: replace(
            plan, train={**plan.train, "batch_size": max(1, round(plan.train["batch_size"] * args.batch_scale))}
        )
        for plan in GPU_PLAN
    }
    for position, name in enumerate(LONG):
        plan = plans[name]
        rendering[plan.data].get()
        if recipe.stage_result(folder, plan).exists():
            log.info("%s: done already", name)
            continue
        per_step, overhead = probe(folder, plan, args.probes)
        left = args.budget - (time.perf_counter() - started)
        share = left * LONG[name] / sum(list(LONG.values())[position:])
        steps = max(args.probes[1], min(plan.train["steps"], int((share - overhead) / per_step)))
        log.info(
            "%s: %.1f ms a step, %.1f s set-up; %.0f s of %.0f s left → %d steps",
            name,
            per_step * 1000,
            overhead,
            share,
            left,
            steps,
        )
        loop, wall = train_for(folder, plan, steps)
        sized[name] = {"steps": steps, "ms_per_step": round(per_step * 1000, 2), "seconds": round(wall, 1)}
        with atomic_path(sized_path) as temporary:
            temporary.write_text(json.dumps(sized, indent=2) + "\n")
        record_time(folder, replace(plan, train={**plan.train, "steps": steps}), wall)
        log.info("%s: %d steps in %.0f s (%.0f s training)", name, steps, wall, loop)
        if args.pack:
            pack(folder, args.pack)
    for job in rendering.values():
        job.get()
    pool.join()
    log.info("long stages done in %.0f s", time.perf_counter() - started)
    if args.light:
        for name in [name for name in plans if name not in LONG]:  # one at a time, each packed when done
            seconds = retrain(
                folder, resume=True, only=[name], steps_scale=args.steps_scale, data_scale=args.data_scale, recipe="gpu"
            )
            log.info("%s: %.0f s", name, seconds[name])
            if args.pack:
                pack(folder, args.pack)
        log.info("all stages done in %.0f s", time.perf_counter() - started)


if __name__ == "__main__":
    main()
