"""Upscaling the embedded model's clips ×2 (32×32 → 64×64), scored at 64×64 by the shapes-world metrics.

    python bench/upscale_quality.py --out upscale.jsonl            # held-out prompts 1, 5, 7; seeds 1-3
    python bench/upscale_quality.py --out more.jsonl --prompts 2 4 9   # other held-out prompts (1-12)
    python bench/upscale_quality.py --summary upscale.jsonl        # the table of docs/results.md, "Upscaling"
    python bench/upscale_quality.py --summary upscale.jsonl --per-prompt   # text/motion/smooth per prompt
    python bench/upscale_quality.py --out seed3.jsonl --seeds 3    # one seed (processes side by side)

Each clip (16 frames, 25 DDIM steps, float32) is made at 32×32, the size the embedded model was trained at,
then upscaled ×2 by each arm: Lanczos alone; the latents resized bicubically + the second pass at 0.2, 0.35, 0.5;
Lanczos + the second pass at 0.2, 0.35, 0.5 (the second pass: the package's hires fix, `generation.upscaled`,
the same prompt, models and seed); and, for contrast, the clip made at 64×64 directly. Scores: `text`,
`motion`, `smooth` (`shapes.metrics.score_video`) and flicker, the mean absolute difference between each frame
and the mean of its neighbours in 8-bit levels (what `smooth` turns into a score). One JSON line per clip and
arm, written as it is made, prompt by prompt (each prompt's seeds before the next prompt, so a run stopped early
leaves whole prompts); the summary gives the mean over every clip ± the spread (standard deviation) of the
per-seed means, as lab/report.py reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from animatediff.embedded import MODELS
from animatediff.export import write_video
from animatediff.generation import upscaled
from animatediff.loading import build_pipeline
from animatediff.pipeline import to_uint8
from animatediff.planner import with_family
from animatediff.settings import ModelSpec, UpscaleSpec
from animatediff.shapes.metrics import score_video

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, for lab/
from lab.report import held_out_prompts  # noqa: E402

PROMPTS = (1, 5, 7)  # held-out prompts, numbered from 1: a translation, a growth, a rotation
SEEDS = (1, 2, 3)
ARMS = (
    ("Lanczos alone", "lanczos", 0.0),
    *((f"latent + second pass {t:g}", "latent", t) for t in (0.2, 0.35, 0.5)),
    *((f"Lanczos + second pass {t:g}", "lanczos", t) for t in (0.2, 0.35, 0.5)),
)
DIRECT = "made at 64×64 directly"
FIRST = "the first pass at 32×32 (for scale)"
METRICS = ("text", "motion", "smooth", "flicker")


def flicker(frames: np.ndarray) -> float:
    """Mean |frame − mean of its neighbours| in 8-bit levels."""
    video = frames.astype(np.float32)
    return float(np.abs(video[1:-1] - (video[:-2] + video[2:]) / 2).mean())


def scores(frames: np.ndarray, prompt: str) -> dict:
    found = score_video(frames, prompt)
    return {"text": found["text"], "motion": found["motion"], "smooth": found["smooth"], "flicker": flicker(frames)}


def measure(out: Path, steps: int, media: Path | None, seeds: list[int], numbers: list[int]) -> None:
    torch.set_num_threads(1)
    pipeline = build_pipeline(with_family(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)))
    prompts = [held_out_prompts()[number - 1] for number in numbers]
    with out.open("a") as log:
        for prompt in prompts:
            for seed in seeds:
                sample = pipeline.sample(prompt, num_frames=16, height=32, width=32, steps=steps, seed=seed)
                started = time.perf_counter()
                latents = pipeline.generate_latents(sample, progress=False)
                first = to_uint8(pipeline.decode(latents))
                made = {FIRST: (first, time.perf_counter() - started)}
                for label, upscaler, strength in ARMS:
                    started = time.perf_counter()
                    frames = upscaled(UpscaleSpec(2, upscaler, None, strength), sample, latents, pipeline, None, False)
                    made[label] = (frames, time.perf_counter() - started)
                started = time.perf_counter()
                direct = pipeline(prompt, num_frames=16, height=64, width=64, steps=steps, seed=seed, progress=False)
                made[DIRECT] = (direct, time.perf_counter() - started)
                for label, (frames, seconds) in made.items():
                    record = {"arm": label, "seed": seed, "prompt": prompt, "seconds": seconds}
                    log.write(json.dumps({**record, **scores(frames, prompt)}) + "\n")
                log.flush()
                if media is not None and seed == 1 and prompt == prompts[0]:
                    write_video(first, media / "upscale-input.gif")
                    write_video(made["Lanczos + second pass 0.35"][0], media / "upscale-hires.gif")
                print(f"seed {seed}: {prompt} done", flush=True)


def summary(paths: list[Path]) -> str:
    records = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    arms = list(dict.fromkeys(record["arm"] for record in records))
    lines = ["| arm | text | motion | smooth | flicker (levels) | s per clip |", "|---|---|---|---|---|---|"]
    for arm in arms:
        mine = [record for record in records if record["arm"] == arm]
        cells = [_cell(mine, metric) for metric in METRICS]
        lines.append(f"| {arm} | {' | '.join(cells)} | {np.mean([r['seconds'] for r in mine]):.0f} |")
    seeds = sorted({record["seed"] for record in records})
    prompts = list(dict.fromkeys(record["prompt"] for record in records))
    return f"{len(prompts)} prompts × seeds {seeds}\n\n" + "\n".join(lines)


PER_PROMPT = (FIRST, "Lanczos alone", "latent + second pass 0.35", "Lanczos + second pass 0.35", DIRECT)


def per_prompt(paths: list[Path]) -> str:
    """text / motion / smooth of a few arms, each prompt's mean over its seeds."""
    records = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    lines = ["| prompt | " + " | ".join(PER_PROMPT) + " |", "|---" * (len(PER_PROMPT) + 1) + "|"]
    for prompt in dict.fromkeys(record["prompt"] for record in records):
        cells = []
        for arm in PER_PROMPT:
            mine = [r for r in records if r["prompt"] == prompt and r["arm"] == arm]
            means = [
                np.mean([r[m] for r in mine if r[m] is not None] or [np.nan]) for m in ("text", "motion", "smooth")
            ]
            cells.append(" / ".join("–" if np.isnan(value) else f"{value:.2f}" for value in means))
        lines.append(f"| {prompt} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _cell(records: list[dict], metric: str) -> str:
    values = [(r["seed"], r[metric]) for r in records if r[metric] is not None]
    if not values:
        return "–"
    per_seed = [np.mean([v for s, v in values if s == seed]) for seed in sorted({s for s, _ in values})]
    digits = 1 if metric == "flicker" else 2
    return f"{np.mean([v for _, v in values]):.{digits}f} ± {np.std(per_seed):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="append one JSON line per clip and arm here")
    parser.add_argument("--summary", type=Path, nargs="+", help="print the table of finished --out files")
    parser.add_argument("--per-prompt", action="store_true", help="with --summary: a few arms, prompt by prompt")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="default: 1 2 3")
    parser.add_argument(
        "--prompts", type=int, nargs="+", default=list(PROMPTS), help="held-out prompt numbers (1-12); default: 1 5 7"
    )
    parser.add_argument("--media", type=Path, help="write the first clip and its hires fix (0.35) here as GIFs")
    args = parser.parse_args()
    if args.summary is not None:
        print(per_prompt(args.summary) if args.per_prompt else summary(args.summary))
        return
    measure(args.out, args.steps, args.media, args.seeds, args.prompts)


if __name__ == "__main__":
    main()
