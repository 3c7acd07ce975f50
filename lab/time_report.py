"""Long videos on the embedded model, measured: clips beyond the position table, prompt travel, loops.

`animatediff shapes results` renders these rows into docs/results.md and three 64-frame GIFs into
docs/media, on the held-out prompts:

- long clips (64 frames, context windows of 16 overlapping by 4): `motion` of each 16-frame stretch
  against the prompt, `smooth` of the whole clip, and the seam: the mean frame-to-frame change where a
  window begins or ends, over the mean change elsewhere (1.0: no seam). The world's own 64-frame clips
  of the same prompts (`world_long_clips`: a 16-frame clip's placement and speed, rendered on) score the
  stretch motion a model that moves as the world does would reach: objects that keep moving leave the
  frame or fill it;
- prompt travel (48 frames): two held-out prompts of different colours, the first held to frame 16 and
  the second from frame 32; `text` of the first and of the last 12 frames against their own prompts;
- loops (48 frames, `--loop`): `smooth` across the seam (frames 46, 47, 0, 1) against the clip's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from animatediff.export import write_video
from animatediff.sampling.context import uniform_windows
from animatediff.sampling.options import ContextSettings
from animatediff.shapes.metrics import score_video, smooth_score
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import parse_prompt, prompt_clip

LONG, TRAVEL, LOOP, STRETCH = 64, 48, 48, 16
TRAVEL_KEYFRAMES = (0, 16, 32)  # first prompt, held; then the second from here


@dataclass
class TimeScores:
    """Means over prompts and seeds (and the spread of the per-seed means)."""

    name: str
    values: dict  # metric → list of per-seed lists


def seam_ratio(frames: np.ndarray, length: int = 16, overlap: int = 4) -> float:
    """The mean frame-to-frame change where a uniform context window begins or ends, over the mean change
    between the other consecutive frames."""
    change = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    edges = {frame for window in uniform_windows(len(frames), length, overlap) for frame in (window[0], window[-1])}
    at_edges = [index for index in range(len(change)) if index in edges or index + 1 in edges]
    elsewhere = [index for index in range(len(change)) if index not in at_edges]
    return float(change[at_edges].mean() / max(change[elsewhere].mean(), 1e-6))


def world_long_clips(prompts: list[str], seeds: list[int], size: int) -> dict[str, float]:
    """The world's own 64-frame clips of `prompts` (a 16-frame clip of each seed, rendered on): their mean
    stretch motion and smoothness."""
    scores: dict[str, list[float]] = {"stretch motion": [], "smooth": []}
    for prompt in prompts:
        for seed in seeds:
            frames = render_clip(prompt_clip(prompt, seed, STRETCH), LONG, size=size)
            stretches = [score_video(frames[i : i + STRETCH], prompt)["motion"] for i in range(0, LONG, STRETCH)]
            scores["stretch motion"].append(float(np.mean([v for v in stretches if v is not None])))
            scores["smooth"].append(score_video(frames, prompt)["smooth"])
    return {metric: float(np.mean(values)) for metric, values in scores.items()}


def long_clip(pipeline, prompt: str, seed: int, steps: int) -> dict[str, float]:
    frames = pipeline(prompt, num_frames=LONG, seed=seed, steps=steps, progress=False, context=ContextSettings())
    stretches = [score_video(frames[i : i + STRETCH], prompt)["motion"] for i in range(0, LONG, STRETCH)]
    return {
        "stretch motion": float(np.mean(stretches)),
        "smooth": score_video(frames, prompt)["smooth"],
        "seam ratio": seam_ratio(frames),
    }


def travel_pairs(prompts: list[str], pool: list[str]) -> list[tuple[str, str]]:
    """Each of `prompts` with the next prompt of `pool` (the prompts' own list, or a longer one) that shows
    another colour."""
    pairs = []
    for first in prompts:
        start = pool.index(first) + 1 if first in pool else 0
        others = pool[start:] + pool[:start]
        pairs.append((first, next(p for p in others if parse_prompt(p).colour != parse_prompt(first).colour)))
    return pairs


def travel(pipeline, pair: tuple[str, str], seed: int, steps: int) -> dict[str, float]:
    first, second = pair
    prompt_map = tuple(zip(TRAVEL_KEYFRAMES, (first, first, second), strict=True))
    frames = pipeline(
        first,
        num_frames=TRAVEL,
        seed=seed,
        steps=steps,
        progress=False,
        context=ContextSettings(),
        prompt_map=prompt_map,
    )
    return {
        "first text": score_video(frames[:12], first)["text"],
        "last text": score_video(frames[-12:], second)["text"],
    }


def loop(pipeline, prompt: str, seed: int, steps: int) -> dict[str, float]:
    frames = pipeline(
        prompt, num_frames=LOOP, seed=seed, steps=steps, progress=False, context=ContextSettings(schedule="looped")
    )
    seam = smooth_score(np.stack([frames[-2], frames[-1], frames[0], frames[1]]))
    return {"seam smooth": seam, "clip smooth": smooth_score(frames)}


def measure(pipeline, name: str, cases: list, make, seeds: list[int], steps: int) -> TimeScores:
    """`make(pipeline, case, seed, steps)` for every case and seed, collected per metric and seed."""
    values: dict[str, list[list[float]]] = {}
    for s, seed in enumerate(seeds):
        for case in cases:
            for metric, value in make(pipeline, case, seed, steps).items():
                if value is not None:
                    values.setdefault(metric, [[] for _ in seeds])[s].append(value)
    return TimeScores(name, values)


def time_rows(pipeline, prompts: list[str], pool: list[str], seeds: list[int], steps: int = 25) -> list[TimeScores]:
    """The three rows on `prompts`; prompt travel pairs each with another colour's prompt of `pool`."""
    return [
        measure(pipeline, f"{LONG} frames, windows of 16 (overlap 4)", prompts, long_clip, seeds, steps),
        measure(pipeline, f"prompt travel, {TRAVEL} frames", travel_pairs(prompts, pool), travel, seeds, steps),
        measure(pipeline, f"loop, {LOOP} frames", prompts, loop, seeds, steps),
    ]


def format_time_rows(
    rows: list[TimeScores], short: dict[str, tuple[float, float]], world: dict[str, float] | None = None
) -> list[str]:
    """Markdown: one table per row, `short` the 16-frame default's (mean, spread) per metric for comparison,
    `world` the world's own long clips' means (`world_long_clips`)."""
    world = world or {}
    lines = [
        "| clips | metric | mean ± spread over seeds | 16-frame clips of the default | the world's own clips |",
        "|---|---|---|---|---|",
    ]
    compare = {"stretch motion": "motion", "smooth": "smooth"}
    for row in rows:
        for metric, per_seed in row.values.items():
            means = [np.mean(values) for values in per_seed if values]
            mean, spread = float(np.mean([v for values in per_seed for v in values])), float(np.std(means))
            reference = short.get(compare.get(metric, ""))
            cell = f"{reference[0]:.2f}" if reference else "–"
            own = f"{world[metric]:.2f}" if metric in world and row is rows[0] else "–"
            lines.append(f"| {row.name} | {metric} | {mean:.2f} ± {spread:.2f} | {cell} | {own} |")
    return lines


def write_time_media(pipeline, media: Path, steps: int = 25) -> list[tuple[str, str, str]]:
    """Three 64-frame GIFs (2× enlarged): a long clip, prompt travel, a loop; (caption, prompt, file name)."""
    first, second = "a red triangle moving right on a white background", "a blue circle growing on a gray background"
    travel_map = ((0, first), (21, first), (42, second))
    examples = [
        ("long clip", first, {"context": ContextSettings()}),
        ("prompt travel", f"{first} → {second}", {"context": ContextSettings(), "prompt_map": travel_map}),
        (
            "loop",
            "a green square spinning clockwise on a black background",
            {"context": ContextSettings(schedule="looped")},
        ),
    ]
    made = []
    for caption, prompt, settings in examples:
        text = prompt.split(" → ")[0]
        frames = pipeline(text, num_frames=LONG, seed=1, steps=steps, progress=False, **settings)
        name = f"{caption.replace(' ', '-')}-64.gif"
        write_video(frames.repeat(2, axis=1).repeat(2, axis=2), media / name, fps=8)
        made.append((caption, prompt, name))
    return made
