"""Training in bfloat16 on the CPU (`mixed_precision: bf16` through accelerate) against float32.

    python bench/train_bfloat16.py FOLDER                 # every stage's speed + the motion stage's curves
    python bench/train_bfloat16.py FOLDER --curve-steps 0 # speeds alone

Speed: each stage of the CPU recipe at its own batch size, trained for `--steps` steps in float32 and in
bfloat16 on the same seed; seconds per step over the steps after the first two (allocator and oneDNN caches
warm). The stages' inputs come from a quick run of the recipe into FOLDER (a tiny fraction of its steps
and data): the speed of a step does not depend on how well its inputs were trained.
Curves: the motion stage of the recipe on the embedded base and domain adapter, `--curve-steps` steps at
the recipe's batch, learning rate and schedule, in both; with one seed both see the same clips, timesteps and
noise, so their per-step losses compare directly. Prints markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

MIXED = {"float32": "no", "bfloat16": "bf16"}


def timed_train(config: dict) -> tuple[list[float], list[float]]:
    """Train `config`; each step's end time and loss."""
    import yaml

    from animatediff.training import trainer
    from animatediff.training.config import load_train_config

    ends, losses = [], []
    report = trainer._report

    def recording(progress, loss, lr_scheduler):
        losses.append(loss.item())
        ends.append(time.perf_counter())
        report(progress, loss, lr_scheduler)

    path = Path(config["output_dir"]).with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    trainer._report = recording
    try:
        trainer.train(load_train_config(path))
    finally:
        trainer._report = report
    return ends, losses


def speeds(folder: Path, steps: int) -> list[str]:
    from animatediff.shapes.recipe import DATASETS, PLAN, render_data, retrain, stage_config

    retrain(folder, resume=True, steps_scale=0.001, data_scale=0.01)  # every stage's inputs, quickly
    small = [name for name, dataset in DATASETS.items() if dataset["count"] < 1000]
    for name in small:  # the few-image and few-clip datasets whole: a hundredth would not fill one batch
        render_data(folder / "whole", name)
    lines = ["| stage | batch | float32 s/step | bfloat16 s/step | bfloat16 / float32 |", "|---|---|---|---|---|"]
    for plan in PLAN:
        seconds = {}
        for dtype, mixed in MIXED.items():
            config = stage_config(folder, plan)
            config["output_dir"] = str(folder / "speed" / f"{plan.name}-{dtype}")
            config["train"] = {**plan.train, "steps": steps, "checkpoint_every": steps, "mixed_precision": mixed}
            if plan.data in small:
                config["data"]["path"] = str(folder / "whole" / "data" / plan.data)
            ends, _ = timed_train(config)
            seconds[dtype] = (ends[-1] - ends[1]) / (len(ends) - 2)
        ratio = seconds["bfloat16"] / seconds["float32"]
        lines.append(
            f"| {plan.name} ({plan.stage}) | {plan.train['batch_size']} | {seconds['float32']:.3f} | "
            f"{seconds['bfloat16']:.3f} | {ratio:.2f} |"
        )
        print(lines[-1], flush=True)
    return lines


def curves(folder: Path, steps: int, window: int = 50) -> list[str]:
    from animatediff.embedded import MODELS
    from animatediff.shapes.recipe import PLANS, render_data, stage_config

    data = folder / "curves"  # a tenth of the recipe's clips (the speeds' hundredth would repeat every 10 steps)
    render_data(data, "clips", data_scale=0.1)
    plan = PLANS["motion"]
    losses = {}
    for dtype, mixed in MIXED.items():
        config = stage_config(folder, replace(plan, extra={"motion_module_version": "v3"}))
        config.update(
            base=str(MODELS["shapes"].path),
            domain_adapter=str(MODELS["shapes-adapter"].path),
            output_dir=str(data / dtype),
        )
        config["data"]["path"] = str(data / "data" / "clips")
        config["train"] = {**plan.train, "steps": steps, "checkpoint_every": steps, "mixed_precision": mixed}
        ends, losses[dtype] = timed_train(config)
        print(f"{dtype}: {(ends[-1] - ends[1]) / (len(ends) - 2):.3f} s/step", flush=True)
    full, half = (np.array(losses[d]) for d in MIXED)
    lines = ["| motion stage, steps | float32 loss | bfloat16 loss | bfloat16 − float32 |", "|---|---|---|---|"]
    for start in range(0, steps, window):
        a, b = full[start : start + window].mean(), half[start : start + window].mean()
        lines.append(f"| {start + 1}-{min(steps, start + window)} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    step = np.abs(half - full).mean()
    lines += [
        "",
        "- per step (same clips, timesteps and noise): mean |bfloat16 − float32| "
        f"{step:.4f} against a mean loss of {full.mean():.4f} ({step / full.mean():.1%}); "
        f"last {window} steps: {full[-window:].mean():.4f} and {half[-window:].mean():.4f}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--steps", type=int, default=8, help="steps per stage and dtype for the speeds")
    parser.add_argument("--curve-steps", type=int, default=300)
    parser.add_argument("--skip-speeds", action="store_true")
    args = parser.parse_args()
    from run import machine  # bench/run.py

    lines = [f"Machine: {machine()}.", ""]
    if not args.skip_speeds:
        lines += speeds(args.folder.absolute(), args.steps) + [""]
    if args.curve_steps:
        lines += curves(args.folder.absolute(), args.curve_steps)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
