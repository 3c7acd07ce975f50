"""Each held-out prompt's scores for a base with or without a motion module (docs/shapes-model.md's per-prompt
numbers; `animatediff shapes results` reports only the means).

    python bench/held_out.py [--base shapes] [--motion-module shapes-motion | none] [--seeds 1 2 3] [--steps 25]
                             [--dreambooth shapes-outlined | --lora shapes-striped]

With a personalized model, the prompts carry its trigger word (as results.md's rows do) and `style` is
reported too.

For each of the 12 held-out prompts (`lab.report.held_out_prompts`), over the seeds: `text`, its shape part
(`metrics.shape_part`), `motion` and `smooth`, with the generation settings of results.md (16 frames,
DDIM, guidance 7.5); then the means over all videos, which match the table's row for the same models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from animatediff.embedded import resolve
from animatediff.loading import ModelSpec, build_pipeline
from animatediff.shapes.metrics import score_video
from animatediff.shapes.world import STYLES

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, for lab/
from lab.report import held_out_prompts  # noqa: E402


def style_of(model: str) -> str:
    """The style a personalized model was trained on, from its name (`shapes-outlined`, or a path naming it)."""
    for style in STYLES:
        if style in model:
            return style
    raise SystemExit(f"{model}: cannot tell which style it draws (expected 'outlined' or 'striped' in its path)")


COLUMNS = ("text", "shape", "motion", "smooth", "style")


def prompt_scores(pipeline, prompt: str, seeds: list[int], steps: int, columns: tuple[str, ...]) -> list[list[float]]:
    """One row per seed: the `columns` for the video of `prompt` (NaN where a metric has no value)."""
    rows = []
    for seed in seeds:
        frames = pipeline(prompt, num_frames=16, steps=steps, guidance_scale=7.5, seed=seed, progress=False)
        measured = score_video(frames, prompt, with_shape=True)
        rows.append([np.nan if measured.get(name) is None else measured[name] for name in columns])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="shapes")
    parser.add_argument("--motion-module", default="shapes-motion", help="a file, a short name, or 'none'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=25)
    personalized = parser.add_mutually_exclusive_group()
    personalized.add_argument("--dreambooth", help="a DreamBooth model (file or short name); prompts get its trigger")
    personalized.add_argument("--lora", help="an image LoRA (file or short name); prompts get its trigger")
    args = parser.parse_args()
    module = None if args.motion_module == "none" else resolve(args.motion_module, "--motion-module")
    spec = ModelSpec(base=resolve(args.base, "--base"), motion_module=module)
    style = None
    if args.dreambooth:
        spec.dreambooth, style = resolve(args.dreambooth, "--dreambooth"), style_of(args.dreambooth)
    if args.lora:
        spec.loras, style = [(resolve(args.lora, "--lora"), 1.0)], style_of(args.lora)
    pipeline = build_pipeline(spec)
    columns = COLUMNS if style else tuple(name for name in COLUMNS if name != "style")  # no style to score
    print(f"{'prompt':<80}" + "".join(f"{name:>8}" for name in columns))
    every = []
    for prompt in held_out_prompts(style):
        rows = prompt_scores(pipeline, prompt, args.seeds, args.steps, columns)
        every += rows
        print(f"{prompt:<80}" + "".join(f"{value:8.2f}" for value in np.nanmean(rows, axis=0)))
    print(f"{'all videos':<80}" + "".join(f"{value:8.2f}" for value in np.nanmean(every, axis=0)))


if __name__ == "__main__":
    main()
