"""Reading the videos and images a clip is conditioned on: any container PyAV reads, a folder of
per-frame images, or one image; frames taken every `stride`-th from the start, resized to cover the
clip's size and centre-cropped to it. Errors name the file and what was expected."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from animatediff.errors import ConfigError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def fit(image: Image.Image, width: int, height: int) -> np.ndarray:
    """`image` scaled to cover width×height and centre-cropped to it, as H×W×3 uint8."""
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def read_image(
    path: str | os.PathLike,
    what: str,
    size: tuple[int, int] | None = None,
    fitting: Callable[[Image.Image, int, int], np.ndarray] = fit,
) -> np.ndarray:
    """One image as H×W×3 uint8 (fitted to `size` = (width, height) by `fitting` if given)."""
    try:
        with Image.open(path) as image:
            image.load()
            return fitting(image, *size) if size else np.asarray(image.convert("RGB"))
    except FileNotFoundError as error:
        raise ConfigError(f"{what} {path}: no such file.") from error
    except (UnidentifiedImageError, OSError) as error:
        raise ConfigError(f"{what} {path}: not an image PIL can read ({one_line(error)}).") from error


def _folder_frames(path: Path, what: str) -> Iterator[Image.Image]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{what} {path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    for file in files:
        with Image.open(file) as image:
            image.load()
            yield image


def _video_frames(path: Path) -> Iterator[Image.Image]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ConfigError(f"{path}: holds no video stream.")
        for frame in container.decode(video=0):
            yield frame.to_image()


def video_fps(path: str | os.PathLike) -> float | None:
    """The frame rate a video file declares (None for a folder of frames, or when it declares none)."""
    path = Path(path)
    if path.is_dir():
        return None
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
            return float(rate) if rate else None
    except (av.FFmpegError, OSError):
        return None


def read_frames(
    path: str | os.PathLike, what: str, frames: int | None, size: tuple[int, int] | None = None, stride: int = 1
) -> np.ndarray:
    """`frames` frames (None: all) of a video file or a folder of images, every `stride`-th from the first,
    fitted to `size` = (width, height) (None: the first frame's own size): F×H×W×3 uint8."""
    with _reading(path, what):
        images = list(islice(_images(path, what), 0, None if frames is None else frames * stride, stride))
        size = size or (images[0].size if images else None)
        taken = [fit(image, *size) for image in images]
    if not taken:
        raise ConfigError(f"{what} {path}: holds no frames.")
    if frames is not None and len(taken) < frames:
        every = f" taking every {stride}th" if stride > 1 else ""
        raise ConfigError(f"{what} {path} gives {len(taken)} frames{every}; the clip needs {frames}.")
    return np.stack(taken)


def video_shape(path: str | os.PathLike, what: str, limit: int | None = None) -> tuple[int, int, int]:
    """(frames, width, height) of a video file or a folder of images, counting at most `limit` frames, without
    keeping them (the planner's check of an input's length and size)."""
    count, size = 0, None
    with _reading(path, what):
        for image in islice(_images(path, what), limit):
            count, size = count + 1, size or image.size
    if not count:
        raise ConfigError(f"{what} {path}: holds no frames.")
    return count, *size


def _images(path: str | os.PathLike, what: str) -> Iterator[Image.Image]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path}: no such file or folder.")
    return _folder_frames(path, what) if path.is_dir() else _video_frames(path)


@contextmanager
def _reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Any failure to decode a video or its frames as one sentence naming the file."""
    import av

    try:
        yield
    except (av.FFmpegError, UnidentifiedImageError, OSError, ValueError) as error:
        raise ConfigError(f"{what} {path}: cannot be read as a video or frames ({one_line(error)}).") from error
