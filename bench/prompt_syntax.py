"""A colour word past the embedded text encoder's 32 tokens: read under `a1111` (a second chunk), cut under `plain`.

    python bench/prompt_syntax.py [--seeds 1 2 3] [--steps 25] [--frames 16] [--prompts 12] [--lead 5] [--arms NAME…]

Each held-out prompt (`lab.report.held_out_prompts`) is written after a lead-in that repeats its scene without
the colour (`a triangle moving right on a white background`, `--lead` times), so the colour word sits past the
32nd token while shape, motion and background are also said within the first chunk. Rows: the long prompt
under `plain` and under `a1111`, and the prompt as written (one chunk) for comparison; each `text`
(`shapes.metrics.score_video`, as the results tables score it) and its colour part (the share of frames where
an object of the prompted colour and shape is found), means over prompts and seeds; DDIM, guidance 7.5. `--prompts N`
takes the first N held-out prompts (fewer steps, frames and prompts for a quick run on a CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from animatediff.embedded import resolve
from animatediff.loading import ModelSpec, build_pipeline
from animatediff.shapes.metrics import prompted_track, score_video
from animatediff.shapes.world import parse_prompt

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, for lab/
from lab.report import held_out_prompts  # noqa: E402


def long_prompt(prompt: str, lead: int) -> str:
    """The prompt after `lead` repeats of its scene without the colour word."""
    colour = parse_prompt(prompt).colour
    scene = prompt.replace(f" {colour} ", " ").replace("an ", "a ", 1)
    return " ".join([scene] * lead + [prompt])


def colour_position(tokenizer, prompt: str) -> int:
    """The colour word's token index (after the start token) in the prompt."""
    colour = parse_prompt(prompt).colour
    before = prompt[: prompt.rindex(f" {colour} ")]
    return len(tokenizer(before, add_special_tokens=False).input_ids) + 1


def scores(pipeline, prompt: str, syntax: str, seeds: list[int], steps: int, frames: int) -> list[tuple[float, float]]:
    """(text, colour part) for each seed's video of `prompt` read with `syntax`."""
    rows = []
    attributes = parse_prompt(prompt)
    for seed in seeds:
        settings = {"steps": steps, "guidance_scale": 7.5, "seed": seed, "prompt_syntax": syntax}
        video = pipeline(prompt, num_frames=frames, progress=False, **settings)
        rows.append((score_video(video, prompt)["text"], float(prompted_track(video, attributes).found.mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--lead", type=int, default=5)
    parser.add_argument("--arms", nargs="+", help="which rows to run (all by default)")
    args = parser.parse_args()
    spec = ModelSpec(base=resolve("shapes", "--base"), motion_module=resolve("shapes-motion", "--motion-module"))
    pipeline = build_pipeline(spec)
    short = held_out_prompts()[: args.prompts]
    long = [long_prompt(prompt, args.lead) for prompt in short]
    positions = [colour_position(pipeline.tokenizer, prompt) for prompt in long]
    limit = pipeline.tokenizer.model_max_length
    print(f"colour word at token {min(positions)}-{max(positions)}; the encoder reads {limit}")
    print(f"{'arm':<28}{'text':>8}{'colour':>8}   (means over {len(long)} prompts × seeds {args.seeds})")
    arms = {"long, plain": (long, "plain"), "long, a1111": (long, "a1111"), "as written (one chunk)": (short, "plain")}
    for name in args.arms or arms:
        prompts, syntax = arms[name]
        every = [row for text in prompts for row in scores(pipeline, text, syntax, args.seeds, args.steps, args.frames)]
        text, colour = np.mean(every, axis=0)
        print(f"{name:<28}{text:8.3f}{colour:8.3f}")


if __name__ == "__main__":
    main()
