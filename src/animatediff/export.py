"""Writing `F×H×W×3` uint8 frames as GIF, MP4, WebM, animated WebP or a folder of PNG frames.

The output path's extension picks the format; a path without one is a folder of lossless frames.
What each format keeps: PNG frames and WebP (lossless) keep every pixel; GIF quantises each frame to a
palette of 256 colours (pixels can move by tens of levels in smooth gradients) and stores frame times
in hundredths of a second; MP4 (H.264) and WebM (VP9) compress and halve the colour resolution. Frame
times are spread so that the clip lasts exactly `frames / fps` (8 fps in a GIF: 0.13, 0.12, 0.13, … s).
Every output is written to a temporary name and renamed into place, and gets a JSON sidecar with the
settings that made it.
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from animatediff.errors import ConfigError
from animatediff.files import atomic_path, holds_only

FORMATS = ("gif", "mp4", "webm", "webp", "png")
FRAME_FOLDER = holds_only("[0-9][0-9][0-9][0-9][0-9].png")  # a folder of frames this module wrote
# x264's macroblock tree made the same frames encode to different bytes from run to run (about one clip
# in three when two processes encoded side by side); without it the bytes repeat, so rendered datasets do
_VIDEO_CODECS = {
    "mp4": ("libx264", "yuv420p", {"crf": "18", "x264-params": "mbtree=0"}),
    "webm": ("libvpx-vp9", "yuv420p", {"crf": "30", "b": "0"}),
}
# Exact RGB frames in an MP4 (H.264 in RGB, quantizer 0), for training data: at 32×32 the usual 4:2:0
# chroma halves the colour resolution, and crf 18 blurred the shapes world's spins past recognition.
# Decoders built on FFmpeg (PyAV, the training reader) read it; many players do not.
_LOSSLESS_MP4 = ("libx264rgb", "rgb24", {"qp": "0", "x264-params": "mbtree=0"})


def file_stem(text: str, limit: int = 48) -> str:
    """A file name stem from free text (a prompt, a caption): lowercase words joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "video"


def output_format(path: str | os.PathLike) -> str:
    """The format a path asks for: its extension, or `png` (a frame folder) when it has none."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FORMATS or suffix == "png":
        raise ConfigError(
            f"{path}: unknown output format '.{suffix}'; use .gif, .mp4, .webm, .webp, or a path without "
            "an extension for a folder of PNG frames."
        )
    return suffix


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape F×H×W×3, got {frames.dtype} {frames.shape}")


GIF_MAX_FPS = 50  # browsers play a GIF frame shorter than 2/100 s for 1/10 s instead
_TICK_MS = {"gif": 10, "webp": 1}  # the unit each format stores frame times in
_LONGEST_MS = {"gif": 655_350, "webp": 16_777_215}  # the longest frame time each can store


def frame_durations(count: int, fps: float, tick_ms: int) -> list[int]:
    """Frame times in milliseconds, multiples of `tick_ms`, whose running sum stays within half a tick of
    the exact `i / fps`: the clip lasts `count / fps` however coarse the format's clock."""
    ends = [round((index + 1) * 1000 / fps / tick_ms) * tick_ms for index in range(count)]
    return [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def check_fps(fps: float, fmt: str) -> None:
    """Refuse a frame rate the format cannot store or players would not play as asked."""
    if not (fps > 0 and np.isfinite(fps)):
        raise ConfigError(f"fps must be a positive finite number; got {fps}.")
    if fmt == "gif" and fps > GIF_MAX_FPS:
        raise ConfigError(
            f"a GIF plays at most {GIF_MAX_FPS} fps (browsers slow shorter frames to 10 fps); got "
            f"{fps:g}: use .mp4, .webm or .webp for faster clips."
        )
    if fmt in _LONGEST_MS and 1000 / fps > _LONGEST_MS[fmt]:
        raise ConfigError(f"a {fmt} frame lasts at most {_LONGEST_MS[fmt] / 1000:g} s; fps {fps:g} asks for longer.")
    rate = Fraction(fps).limit_denominator(1001)
    if fmt in _VIDEO_CODECS and (rate == 0 or abs(rate - fps) > fps * 1e-3):
        raise ConfigError(
            f"fps {fps:g} cannot be stored in {fmt} (rates are fractions with a denominator up to "
            "1001, e.g. 30000/1001); use at least 0.001 fps."
        )


def _write_pillow(frames: np.ndarray, path: Path, fps: float, fmt: str) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    options = {"lossless": True} if fmt == "webp" else {"disposal": 2}
    durations = frame_durations(len(images), fps, _TICK_MS[fmt])
    images[0].save(
        path,
        format=fmt.upper(),
        save_all=True,
        append_images=images[1:],
        duration=durations if len(images) > 1 else durations[0],
        loop=0,
        **options,
    )


def _write_av(frames: np.ndarray, path: Path, fps: float, fmt: str, encoding: tuple[str, str, dict]) -> None:
    """`encoding`: (codec, pixel format, codec options), an entry of `_VIDEO_CODECS` or `_LOSSLESS_MP4`."""
    import av  # FFmpeg's bindings: only MP4 and WebM need them, not the default GIF

    codec, pixel_format, options = encoding
    height, width = frames.shape[1:3]
    if pixel_format == "yuv420p" and (height % 2 or width % 2):  # chroma at half the size each way
        raise ConfigError(f"{path}: {fmt} (yuv420p) needs an even width and height; got {width}×{height}.")
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.options = options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def _write_png_folder(frames: np.ndarray, folder: Path) -> None:
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")


def sidecar_path(path: str | os.PathLike) -> Path:
    """`out.gif` → `out.gif.json`; a frame folder `out` → `out.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_video(
    frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0, settings: dict | None = None, lossless: bool = False
) -> Path:
    """Write `frames` to `path` in the format its extension names, plus a sidecar of `settings` if given.

    `lossless` keeps an MP4's frames exact (H.264 in RGB at quantizer 0; about ten times the bytes);
    WebP and PNG folders are lossless already, GIF is palette-quantised, and WebM has no lossless mode here."""
    _check_frames(frames)
    path = Path(path)
    fmt = output_format(path)
    check_fps(fps, fmt)
    if lossless and fmt == "webm":
        raise ConfigError(f"{path}: lossless video is written as .mp4, .webp or a PNG folder, not .webm.")
    with atomic_path(path, directory=fmt == "png", replaceable=FRAME_FOLDER) as temporary:
        if fmt == "png":
            _write_png_folder(frames, temporary)
        elif fmt in _VIDEO_CODECS:
            _write_av(frames, temporary, fps, fmt, _LOSSLESS_MP4 if lossless else _VIDEO_CODECS[fmt])
        else:
            _write_pillow(frames, temporary, fps, fmt)
    if settings is not None:
        write_sidecar(path, {**settings, "fps": fps, "format": fmt})
    return path


def write_sidecar(path: str | os.PathLike, settings: dict) -> Path:
    """Write the resolved settings next to an output, so the run can be repeated exactly."""
    target = sidecar_path(path)
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return target


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode any output this module writes back to `F×H×W×3` uint8 frames."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "png":
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(path.glob("*.png"))])
    if fmt in _VIDEO_CODECS:
        import av

        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with Image.open(path) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB")))
        return np.stack(frames)
