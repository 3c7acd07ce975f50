"""`animatediff eval`: score a folder of generated videos, each with its JSON sidecar holding the prompt.

The scores come from a function of the frames and the prompt (the shapes world's metrics, for the
embedded models) and, with a CLIP model, the paper's CLIP metric. Lossy formats change the scores:
GIF quantises each frame to 256 colours, MP4 and WebM subsample the colour and compress; PNG frame
folders and WebP are lossless, and are what the published numbers were measured on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from animatediff.errors import AnimateDiffError, ConfigError, InputError, first_line
from animatediff.export import read_video

VIDEO_SUFFIXES = (".gif", ".mp4", ".webm", ".webp")
LOSSLESS = ("", ".webp")  # PNG frame folders (no suffix) and WebP
Scorer = Callable[[np.ndarray, str], dict]  # frames (F×H×W×3 uint8), prompt → {metric: value or None}


def find_videos(folder: Path) -> list[tuple[Path, str]]:
    """Every output in `folder` that has a sidecar with a prompt: (video path, prompt)."""
    found = []
    for sidecar in sorted(folder.glob("*.json")):
        video = sidecar.with_name(sidecar.name.removesuffix(".json"))
        if not video.exists() or not (video.is_dir() or video.suffix in VIDEO_SUFFIXES):
            continue
        try:
            prompt = json.loads(sidecar.read_text()).get("prompt")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
            raise ConfigError(f"{sidecar}: not a readable sidecar (a JSON object with a prompt): {error}") from error
        if isinstance(prompt, str):
            found.append((video, prompt))
    return found


def _frames(video: Path) -> np.ndarray:
    try:
        return read_video(video)
    except AnimateDiffError:
        raise
    except Exception as error:  # PyAV's and Pillow's errors for a damaged file
        raise InputError(f"{video}: not a readable video ({first_line(error)}).") from error


def evaluate_folder(
    folder: str | os.PathLike, score: Scorer, clip_model: str | None = None, reference_images: str | None = None
) -> list[dict]:
    """One row of scores per video (metrics that do not apply to a prompt are None), with its format."""
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
    for video, prompt in tqdm(videos, desc="scoring", disable=len(videos) < 2):
        frames = _frames(video)
        row = {"video": video.name, "prompt": prompt, "lossless": video.suffix in LOSSLESS, **score(frames, prompt)}
        if scorer is not None:
            row.update(scorer.score(frames, prompt, reference))
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table with one line per video and the mean of each metric at the bottom."""
    metrics = [key for key in rows[0] if key not in ("video", "prompt", "lossless")]
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


def lossy_note(rows: list[dict]) -> str | None:
    """A warning when some videos were scored from a format whose compression changes the scores."""
    lossy = sum(not row["lossless"] for row in rows)
    if not lossy:
        return None
    return (
        f"{lossy} of {len(rows)} videos are GIF, MP4 or WebM, whose compression changes the scores; for "
        "numbers to compare, generate PNG frame folders (-o NAME, no extension) or .webp."
    )
