"""Motion scale and effect on the embedded model: how far the prompted object moves.

    python bench/motion_strength.py                 # held-out prompts, seeds 1-3, 25 steps, 16 frames
    python bench/motion_strength.py --prompts 4     # the first four held-out prompts only

For each held-out prompt of `lab/report.py` whose motion has a magnitude (not 'staying still', not a spinning
circle), seeds 1-3, the clip is made at motion scales 0.8, 1.0, 1.2, 1.4 (effect 1) and effects 0.5, 0.75
(scale 1; effect 1 is the scale-1 row) and scored by the `motion` metric's magnitude factor alone
(`shapes.metrics.directional_score`: the clip's total change the prompted way over a clear minimum, capped at
1; an object not found in half the frames: 0), and by the same ratio uncapped. Rows: mean over every clip ±
the spread (standard deviation) of the per-seed means, as lab/report.py reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from animatediff.embedded import MODELS
from animatediff.loading import build_pipeline
from animatediff.planner import with_family
from animatediff.settings import ModelSpec
from animatediff.shapes.metrics import REQUIRED, _steps, prompted_track
from animatediff.shapes.world import MOTIONS, parse_prompt

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, for lab/
from lab.report import held_out_prompts  # noqa: E402

SCALES = (0.8, 1.0, 1.2, 1.4)
EFFECTS = (0.5, 0.75, 1.0)
SEEDS = (1, 2, 3)


def magnitude(frames: np.ndarray, prompt: str) -> float | None:
    """The total change the prompt asks for over the clip, relative to the metric's clear minimum (uncapped;
    None for a prompt without a direction; 0 when the object is missing from half the frames)."""
    if not directed(prompt):
        return None
    attributes = parse_prompt(prompt)
    kind, sign = MOTIONS[attributes.motion]
    path = prompted_track(frames, attributes)
    if path.found.mean() < 0.5:
        return 0.0
    steps = _steps(path, kind)
    return max(0.0, float(sign * steps[np.isfinite(steps)].sum() / REQUIRED[kind]))


def directed(prompt: str) -> bool:
    """Whether the prompt's motion has a direction the metric measures (not stillness, not a spinning circle)."""
    attributes = parse_prompt(prompt)
    kind, _ = MOTIONS[attributes.motion]
    return kind != "still" and not (kind == "rotation" and attributes.shape == "circle")


def arms() -> list[tuple[str, float, float]]:
    """(label, scale, effect) of each row: the scales at effect 1, then the effects below 1 at scale 1."""
    return [(f"scale {s:g}", s, 1.0) for s in SCALES] + [(f"effect {e:g}", 1.0, e) for e in EFFECTS if e != 1.0]


def measure(prompts: list[str], steps: int) -> dict[str, np.ndarray]:
    """label → uncapped magnitudes, (seeds, prompts); each row printed as it is done."""
    pipeline = build_pipeline(with_family(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)))
    results = {}
    print(HEADER, flush=True)
    for label, scale, effect in arms():
        values = np.zeros((len(SEEDS), len(prompts)))
        for p, prompt in enumerate(prompts):
            for s, seed in enumerate(SEEDS):
                strength = {"motion_scale": ((0, scale),), "motion_effect": ((0, effect),)}
                frames = pipeline(prompt, num_frames=16, steps=steps, seed=seed, progress=False, **strength)
                values[s, p] = magnitude(frames, prompt)
        results[label] = values
        print(row(label, values), flush=True)
    return results


HEADER = "| motion | magnitude (capped at 1, as in `motion`) | magnitude uncapped |\n|---|---|---|"


def row(label: str, values: np.ndarray) -> str:
    """mean over every clip ± the spread of the per-seed means, capped and uncapped."""
    cells = [f"{v.mean():.2f} ± {v.mean(axis=1).std():.2f}" for v in (np.minimum(values, 1.0), values)]
    return f"| {label} | {' | '.join(cells)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="the first N held-out prompts with a direction")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more oversubscribe a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = [prompt for prompt in held_out_prompts() if directed(prompt)][: args.prompts]
    threads = f"{args.threads} torch thread(s)"
    print(f"{len(prompts)} prompts × seeds {SEEDS}, {args.steps} steps, 16 frames, {threads}", flush=True)
    measure(prompts, args.steps)


if __name__ == "__main__":
    main()
