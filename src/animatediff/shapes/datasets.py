"""Writing shapes-world datasets in the layouts the training reads, with ground truth beside them.

- `images`: clean still frames (the text-to-image domain) as PNG files with a `captions.jsonl`: a random
  frame of a random clip, captioned with the clip's motion for every second image (as photo captions
  often name an action) and without it otherwise, or always where the frame shows it (`trail`); every
  fifth image is a still of a camera scene;
- `clips`: single-object motion clips in the video domain (watermark, blur, noise) as mp4;
- `camera`: scenes under camera motions (for MotionLoRAs), one motion or all.

Every kind renders plain objects, or all in one style (`style`), or each item in a style drawn at
random from plain and every style (`style="any"`: the broad image set an autoencoder learns from).

Training sets leave out the held-out (colour, shape, motion) combinations of `world.HELD_OUT` unless
`held_out=True`. Clips are listed in `captions.jsonl` or, with `layout="webvid"`, in a WebVid-style
`results.csv` with the videos under `videos/`. `ground_truth.jsonl` holds every clip's full spec
(objects, colours, motion, speed, style, watermark), keyed by file.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from animatediff.errors import ConfigError
from animatediff.export import write_video
from animatediff.files import atomic_path
from animatediff.shapes.render import render_clip, render_frame
from animatediff.shapes.world import (
    CAMERA_MOTIONS,
    KINDS,
    STYLES,
    TRAIL_COLOURS,
    caption,
    is_held_out,
    sample_camera_clip,
    sample_object_clip,
)


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a dataset holds; `render_dataset` draws the same items for the same spec, every time.

    `trail` draws each moving object with a fading trail behind it, or the shadow that shows growth,
    shrinking or spin (images and clips alike: `render.render_frame`); an image then always names its
    motion in the caption, as the picture shows it. `trail_colour` is what the trail's copies are drawn
    in: the object's colour, or the background's shadow colour (`world.TRAIL_COLOURS`). `watermark`
    None: the video domain's defects on clips and camera clips, none on images."""

    kind: str
    count: int
    seed: int = 0
    size: int = 64
    frames: int = 16
    layout: str = "jsonl"
    style: str | None = None
    camera: str | None = None
    watermark: bool | None = None
    held_out: bool = False
    trail: bool = False
    trail_colour: str = "object"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}.")
        if self.style is not None and self.style not in (*STYLES, "any"):
            raise ConfigError(f"style must be one of {', '.join(STYLES)} or any; got {self.style!r}.")
        if self.camera is not None and self.camera not in CAMERA_MOTIONS:
            raise ConfigError(f"camera must be one of {', '.join(CAMERA_MOTIONS)}; got {self.camera!r}.")
        if self.trail_colour not in TRAIL_COLOURS:
            raise ConfigError(f"trail_colour must be one of {', '.join(TRAIL_COLOURS)}; got {self.trail_colour!r}.")
        if self.layout not in ("jsonl", "webvid") or (self.kind == "images" and self.layout == "webvid"):
            raise ConfigError(f"layout must be jsonl (or webvid, for clips); got {self.layout!r} for {self.kind}.")
        if self.count < 1 or self.frames < 1 or self.size < 8:
            raise ConfigError(
                f"count and frames must be at least 1 and size at least 8; got {self.count}, "
                f"{self.frames}, {self.size}."
            )


def _specs(dataset: DatasetSpec):
    rng = np.random.default_rng(dataset.seed)
    styles = [None, *STYLES]
    watermark = dataset.kind != "images" if dataset.watermark is None else dataset.watermark
    for index in range(dataset.count):
        drawn = styles[rng.integers(len(styles))] if dataset.style == "any" else dataset.style
        if dataset.kind == "camera" or (dataset.kind == "images" and index % 5 == 4):
            spec = sample_camera_clip(rng, camera=dataset.camera, style=drawn)
        else:
            spec = sample_object_clip(rng, dataset.frames, style=drawn)
            while not dataset.held_out and is_held_out(spec):
                spec = sample_object_clip(rng, dataset.frames, style=drawn)
        spec.watermark, spec.trail, spec.trail_colour = watermark, dataset.trail, dataset.trail_colour
        yield spec


def render_dataset(folder: str | os.PathLike, dataset: DatasetSpec, progress: bool = False) -> Path:
    """Render `dataset` into `folder` (deterministic for a given spec), with a progress bar if asked."""
    folder = Path(folder)
    media = folder / "videos" if dataset.layout == "webvid" else folder
    media.mkdir(parents=True, exist_ok=True)
    rows, truths = [], []
    specs = tqdm(_specs(dataset), total=dataset.count, desc=f"rendering {dataset.kind}", disable=not progress)
    for index, spec in enumerate(specs):
        if dataset.kind == "images":
            moment = int(np.random.default_rng(spec.seed).integers(dataset.frames))
            name, text = f"{index:06d}.png", caption(spec, still=index % 2 == 0 and not dataset.trail)
            spec.extra["frame"] = moment
            with atomic_path(media / name) as temporary:
                Image.fromarray(render_frame(spec, moment, dataset.size)).save(temporary, format="PNG")
        else:
            name, text = f"{index:06d}.mp4", caption(spec)
            write_video(render_clip(spec, dataset.frames, dataset.size), media / name, fps=8, lossless=True)
        rows.append({"file": name, "caption": text})
        truths.append({"file": name, "caption": text, **spec.to_dict()})
    if dataset.layout == "webvid":
        with atomic_path(folder / "results.csv") as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["videoid", "name", "page_dir"])
            writer.writerows([[row["file"].removesuffix(".mp4"), row["caption"], ""] for row in rows])
    else:
        _write_lines(folder / "captions.jsonl", rows)
    _write_lines(folder / "ground_truth.jsonl", truths)
    return folder


def _write_lines(path: Path, entries: list[dict]) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
