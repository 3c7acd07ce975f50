"""Video datasets for training: WebVid-style CSV + mp4 folder, or a folder with `captions.jsonl`.

Clips are decoded with PyAV, resized (shorter side) and centre-cropped to a square, and sampled with a
frame stride. Every random choice for a sample (clip start, dropped caption, noise, timestep) comes from
a seed of its own, derived from the run's seed and the sample's position in the run, so a resumed or
data-parallel run sees exactly what a single uninterrupted run sees.

A corrupt, unreadable or too-short video is skipped with a warning naming it, and the next video is
used instead; the skip travels with the sample so the trainer can report how many were skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from einops import rearrange
from PIL import Image

from animatediff.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoItem:
    path: Path
    caption: str


def webvid_items(csv_path: str | os.PathLike, video_folder: str | os.PathLike) -> list[VideoItem]:
    """Rows of a WebVid-style CSV (`videoid`, `name`, optional `page_dir`) → `<folder>[/<page_dir>]/<videoid>.mp4`."""
    csv_path, video_folder = Path(csv_path), Path(video_folder)
    try:
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise ConfigError(f"data.csv {csv_path}: cannot be read ({error.strerror}).") from error
    if rows and not {"videoid", "name"} <= set(rows[0]):
        raise ConfigError(f"data.csv {csv_path}: expected columns 'videoid' and 'name', found {sorted(rows[0])}.")
    items = []
    for row in rows:
        nested = video_folder / row.get("page_dir", "") / f"{row['videoid']}.mp4"
        path = nested if row.get("page_dir") and nested.exists() else video_folder / f"{row['videoid']}.mp4"
        items.append(VideoItem(path, row["name"]))
    return items


def jsonl_items(folder: str | os.PathLike) -> list[VideoItem]:
    """Lines `{"file": …, "caption": …}` of `<folder>/captions.jsonl`, files relative to the folder."""
    folder = Path(folder)
    listing = folder / "captions.jsonl"
    if not listing.is_file():
        raise ConfigError(f"data.path {folder}: expected a captions.jsonl in it.")
    items = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            items.append(VideoItem(folder / entry["file"], str(entry["caption"])))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConfigError(f'{listing}, line {number}: expected {{"file": …, "caption": …}} ({error}).') from error
    return items


def _resize_and_crop(frame: np.ndarray, size: int) -> np.ndarray:
    image = Image.fromarray(frame)
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def read_clip(path: Path, frames: int, stride: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """`frames` frames `stride` apart from a random start, as `f 3 size size` in [-1, 1].

    Raises `ValueError` for a video that is shorter than the clip, and PyAV's errors for unreadable ones.
    """
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    span = (frames - 1) * stride + 1
    if len(decoded) < span:
        raise ValueError(f"{len(decoded)} frames, fewer than the {span} a clip needs")
    start = int(torch.randint(0, len(decoded) - span + 1, (1,), generator=generator))
    clip = np.stack([_resize_and_crop(decoded[start + i * stride], size) for i in range(frames)])
    return rearrange(torch.from_numpy(clip), "f h w c -> f c h w").float() / 127.5 - 1


class VideoClips(torch.utils.data.Dataset):
    """Clips with captions; indexed by `(index, sample_seed)` pairs from `RunSampler`."""

    def __init__(self, items: list[VideoItem], frames: int, stride: int, size: int, empty_caption_rate: float):
        self.items, self.frames, self.stride, self.size = items, frames, stride, size
        self.empty_caption_rate = empty_caption_rate

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        generator = torch.Generator().manual_seed(seed)
        skipped = []
        for attempt in range(len(self.items)):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                pixels = read_clip(item.path, self.frames, self.stride, self.size, generator)
            except (av.error.FFmpegError, OSError, ValueError) as error:
                log.warning("skipping %s: %s", item.path, str(error).splitlines()[0] if str(error) else error)
                skipped.append(str(item.path))
                continue
            drop = float(torch.rand((), generator=generator)) < self.empty_caption_rate
            return {"pixels": pixels, "caption": "" if drop else item.caption, "seed": seed, "skipped": skipped}
        raise RuntimeError("no readable video in the dataset")


def collate(samples: list[dict]) -> dict:
    return {
        "pixels": torch.stack([s["pixels"] for s in samples]),  # b f c h w
        "captions": [s["caption"] for s in samples],
        "seeds": [s["seed"] for s in samples],
        "skipped": [path for s in samples for path in s["skipped"]],
    }


def join_batches(first: dict, second: dict) -> dict:
    """One batch (as `collate` makes them) holding `first`'s samples, then `second`'s."""
    return {
        key: torch.cat([value, second[key]]) if torch.is_tensor(value) else value + second[key]
        for key, value in first.items()
    }


class RunSampler(torch.utils.data.Sampler):
    """Batches of `(index, sample_seed)` for this process, from `start_step` on.

    Each epoch is a seeded permutation; step `s` takes global batch `s` of it, and process `rank` of
    `world` takes its contiguous share, so the union over processes equals a single process's batch.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, rank: int, world: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world
        self.global_batch = batch_size * world
        if size < self.global_batch:
            raise ConfigError(f"the dataset has {size} videos, fewer than one global batch of {self.global_batch}.")
        self.steps_per_epoch = size // self.global_batch

    def __iter__(self):
        step = self.start_step
        while True:
            epoch, position = divmod(step, self.steps_per_epoch)
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            first = position * self.global_batch + self.rank * self.batch_size
            yield [
                (order[first + i], _sample_seed(self.seed, step * self.global_batch + self.rank * self.batch_size + i))
                for i in range(self.batch_size)
            ]
            step += 1


def _sample_seed(seed: int, position: int) -> int:
    return (seed * 1_000_003 + position * 7_919 + 12_345) % (2**63 - 1)
