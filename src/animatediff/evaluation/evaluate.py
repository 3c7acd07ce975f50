"""`animatediff eval`: score a folder of generated videos, each with its JSON sidecar holding the prompt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from animatediff.errors import ConfigError
from animatediff.evaluation.metrics import score_video
from animatediff.export import read_video

VIDEO_SUFFIXES = (".gif", ".mp4", ".webm", ".webp")


def find_videos(folder: Path) -> list[tuple[Path, str]]:
    """Every output in `folder` that has a sidecar with a prompt: (video path, prompt)."""
    found = []
    for sidecar in sorted(folder.glob("*.json")):
        video = sidecar.with_name(sidecar.name.removesuffix(".json"))
        if not video.exists() or not (video.is_dir() or video.suffix in VIDEO_SUFFIXES):
            continue
        prompt = json.loads(sidecar.read_text()).get("prompt")
        if isinstance(prompt, str):
            found.append((video, prompt))
    return found


def evaluate_folder(folder: str | os.PathLike, clip_model: str | None = None,
                    reference_images: str | None = None) -> list[dict]:  # fmt: skip
    """One row of scores per video (metrics that do not apply to a prompt are None)."""
    folder = Path(folder)
    videos = find_videos(folder) if folder.is_dir() else []
    if not videos:
        raise ConfigError(f"{folder}: no videos with a sidecar prompt (<video>.json) found.")
    scorer = reference = None
    if clip_model is not None:
        from animatediff.evaluation.clip_metric import ClipScorer

        scorer = ClipScorer(clip_model)
        reference = scorer.reference_embedding(reference_images) if reference_images else None
    rows = []
    for video, prompt in videos:
        frames = read_video(video)
        row = {"video": video.name, "prompt": prompt, **score_video(frames, prompt)}
        if scorer is not None:
            row.update(scorer.score(frames, prompt, reference))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table with one line per video and the mean of each metric at the bottom."""
    metrics = [key for key in rows[0] if key not in ("video", "prompt")]
    width = max(len(row["video"]) for row in rows + [{"video": "mean"}])
    lines = [f"{'video':<{width}}  " + "  ".join(f"{m:>11}" for m in metrics)]
    for row in rows:
        cells = ("-" if row[m] is None else f"{row[m]:.3f}" for m in metrics)
        lines.append(f"{row['video']:<{width}}  " + "  ".join(f"{c:>11}" for c in cells))
    means = []
    for metric in metrics:
        values = [row[metric] for row in rows if row[metric] is not None]
        means.append(f"{np.mean(values):.3f}" if values else "-")
    lines.append(f"{'mean':<{width}}  " + "  ".join(f"{c:>11}" for c in means))
    return "\n".join(lines)
