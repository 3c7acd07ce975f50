"""Frame interpolation: K−1 new frames between each pair of a clip's frames.

The built-in method needs no weights: OpenCV's DIS optical flow is measured both ways between the two
frames; each frame's flow is carried to where its pixels are at the in-between time `t` (where no pixel
lands, the flow at `t` is approximated from the two as in Super SloMo, Jiang et al. 2018); both frames are
warped to `t` along it and blended, each weighted by how near it is in time, by how well its pixel's flow is
confirmed by the reverse flow (a pixel whose forward and backward flows do not cancel is being covered or
uncovered, and the other frame is trusted there), and by how well that pixel's own flow matches the flow it
was fetched along (else it belongs to something that has moved on).
A learned interpolator (RIFE, `animatediff.finishing.rife`) plugs in through the same `Between` signature.

Frames are `F×H×W×3` uint8 (or floats in [0, 1]) throughout; the result is uint8.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from einops import rearrange
from tqdm.auto import tqdm

from animatediff.errors import ConfigError
from animatediff.request import MAX_FACTOR, MIN_FACTOR

FLOW_SIZE = 128  # frames smaller than this are measured upscaled: DIS needs a few 8-pixel patches per object
CONSISTENCY = 1.0  # pixels: a forward/backward flow mismatch this large halves a pixel's weight

SHARP = True  # frames are warped with a Lanczos kernel (`warp`)

# the in-between frames of one pair: (first, second, times in (0, 1)) → len(times)×H×W×3 float32 in [0, 1]
Between = Callable[[np.ndarray, np.ndarray, Sequence[float]], np.ndarray]


def check_factor(factor: int) -> None:
    """Refuse a factor outside 2..16, naming it."""
    if isinstance(factor, bool) or not isinstance(factor, int) or not MIN_FACTOR <= factor <= MAX_FACTOR:
        raise ConfigError(
            f"the interpolation factor must be a whole number from {MIN_FACTOR} to {MAX_FACTOR} (output frames per "
            f"input frame); got {factor!r}."
        )


BUILT_IN = "optical flow (OpenCV DIS, both ways), warped and blended with occlusion-aware weights"


def interpolator(path: str | os.PathLike | None) -> tuple[Between, dict]:
    """The method for `path` (None: the built-in optical flow; a file: a learned interpolator's weights) and
    what the sidecar records of it."""
    if path is None:
        return flow_between, {"interpolator": None, "interpolation_method": BUILT_IN}
    from animatediff.finishing.rife import load_rife

    model = load_rife(path)
    return model.between, {"interpolator": str(Path(path).resolve()), "interpolation_method": model.description}


def interpolate(
    frames: np.ndarray, factor: int, loop: bool = False, between: Between | None = None, progress: bool = True
) -> np.ndarray:
    """`frames` with `factor − 1` new frames between each pair: (F − 1)·K + 1 frames, or F·K with `loop`
    (the pair last → first is interpolated too, so the clip still flows back into its start). The given
    frames are kept exactly. `between`: the method (default: `flow_between`)."""
    check_factor(factor)
    video = as_float(frames)
    between = between or flow_between
    times = [step / factor for step in range(1, factor)]
    pairs = list(zip(video[:-1], video[1:], strict=True)) + ([(video[-1], video[0])] if loop else [])
    made = [to_uint8(frames[:1])]
    for index, (first, second) in enumerate(tqdm(pairs, desc="interpolating", unit="pair", disable=not progress)):
        made.append(to_uint8(between(first, second, times)))
        if index + 1 < len(video):
            made.append(to_uint8(frames[index + 1 : index + 2]))
    return np.concatenate(made)


def as_float(frames: np.ndarray) -> np.ndarray:
    """uint8 or float frames → float32 in [0, 1]."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255
    return np.clip(frames.astype(np.float32), 0, 1)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] → uint8 by rounding (as the pipeline's decoded frames); uint8 passes through."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Baselines: what a user would otherwise do


def duplicate_between(first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """The nearer frame repeated (a frame-rate change without interpolation)."""
    return np.stack([first if t < 0.5 else second for t in times])


def blend_between(first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """A cross-fade: (1 − t)·first + t·second."""
    return np.stack([(1 - t) * first + t * second for t in times])


# ---------------------------------------------------------------------------------------------------
# The built-in method: bidirectional optical flow, warped and blended with occlusion-aware weights


def _gray(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor((frame * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC) if size != gray.shape[::-1] else gray


def optical_flow(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """H×W×2 flow (x, y in pixels) taking each pixel of `first` to where it is in `second` (OpenCV's DIS, on
    the frames' luminance; small frames are measured at `FLOW_SIZE` and the flow scaled back)."""
    import cv2

    height, width = first.shape[:2]
    zoom = max(1.0, FLOW_SIZE / min(height, width))
    size = (round(width * zoom), round(height * zoom))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)  # refine down to full resolution (the preset stops a level above: spins lose 4 dB)
    flow = dis.calc(_gray(first, size), _gray(second, size), None)
    if zoom > 1:
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / zoom
    return flow.astype(np.float32)


def _grid(height: int, width: int) -> np.ndarray:
    """H×W×2 pixel coordinates (x, y)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return rearrange([xs, ys], "xy h w -> h w xy")


def warp(image: np.ndarray, flow: np.ndarray, sharp: bool = False) -> np.ndarray:
    """`image` sampled at each pixel + `flow` (backward warping, edges repeated): bilinear, or with `sharp`
    Lanczos (8×8; frames: an anti-aliased edge moved by a fraction of a pixel keeps its profile, +3 dB over
    bilinear on the shapes world's moving edges)."""
    import cv2

    where = _grid(*flow.shape[:2]) + flow
    method = cv2.INTER_LANCZOS4 if sharp else cv2.INTER_LINEAR
    return cv2.remap(image, where[..., 0], where[..., 1], method, borderMode=cv2.BORDER_REPLICATE)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """H×W weight in (0, 1] of each pixel of the first frame: 1 where its flow to the second frame and the
    second frame's flow back cancel, falling where they do not (the pixel is covered in the second frame)."""
    mismatch = forward + warp(backward, forward)
    return 1 / (1 + (mismatch**2).sum(-1) / CONSISTENCY**2)


def project(flow: np.ndarray, trust: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's flow carried to where it is at time `t` (its position + t·flow, nearest pixel), the most
    trusted pixel winning where several land: H×W×2 flow at time t and an H×W mask of the pixels reached."""
    height, width = flow.shape[:2]
    where = np.rint(_grid(height, width) + t * flow).astype(np.int64)
    inside = (where[..., 0] >= 0) & (where[..., 0] < width) & (where[..., 1] >= 0) & (where[..., 1] < height)
    order = np.argsort(trust[inside], kind="stable")  # the last write wins: the most trusted pixel
    xs, ys = where[inside][order, 0], where[inside][order, 1]
    projected, reached = np.zeros_like(flow), np.zeros((height, width), bool)
    projected[ys, xs], reached[ys, xs] = flow[inside][order], True
    return projected, reached


def flow_at(forward: np.ndarray, backward: np.ndarray, trust: tuple[np.ndarray, np.ndarray], t: float) -> np.ndarray:
    """H×W×2 flow from the first frame to the second as seen at time t: both frames' flows projected to t
    (`project`), the first frame's where it reached (and is trusted more), Super SloMo's approximation
    (t·forward blended with −backward) where neither did."""
    from_first, first_reached = project(forward, trust[0], t)
    from_second, second_reached = project(-backward, trust[1], t - 1)
    approximate = (1 - t) * forward - t * backward
    flow = np.where(second_reached[..., None], from_second, approximate)
    return np.where(first_reached[..., None], from_first, flow)


def agreement(flow: np.ndarray, own: np.ndarray) -> np.ndarray:
    """H×W weight in (0, 1]: 1 where the flow a pixel was fetched along is the fetched pixel's own flow, falling
    where they differ (the fetched pixel belongs to something else, which covers this place at time t)."""
    return 1 / (1 + ((flow - own) ** 2).sum(-1) / CONSISTENCY**2)


def flow_between(first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """The in-between frames at `times` by bidirectional optical flow (see the module's docstring)."""
    forward, backward = optical_flow(first, second), optical_flow(second, first)
    trust = consistency(forward, backward), consistency(backward, forward)
    made = []
    for t in times:
        flow = flow_at(forward, backward, trust, t)
        to_first, to_second = -t * flow, (1 - t) * flow
        seen_first = warp(trust[0], to_first) * agreement(flow, warp(forward, to_first))
        seen_second = warp(trust[1], to_second) * agreement(flow, -warp(backward, to_second))
        weight_first = (1 - t) * seen_first[..., None] + 1e-3
        weight_second = t * seen_second[..., None] + 1e-3
        blended = weight_first * warp(first, to_first, SHARP) + weight_second * warp(second, to_second, SHARP)
        made.append(blended / (weight_first + weight_second))
    return np.stack(made)
