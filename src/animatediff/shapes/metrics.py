"""Scores for shapes-world videos: pure functions of the frames and the prompt, each in [0, 1].

The prompt is parsed into the world's vocabulary; the prompted object is found by its colour in every
frame and tracked (centroid, area, orientation from the radial profile of its silhouette); the camera's
motion is estimated as a global similarity transform between consecutive frames.

Direction scores share one rule: `consistency × magnitude`. Consistency counts the frame-to-frame steps
that clearly go the prompted way (R) and the other way (W): (R − W) / (R + W), clamped at 0; magnitude
is the total change over the clip relative to a clear minimum, capped at 1. A clip reversed in time
scores 0, a shuffled one near 0, a frozen one 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from animatediff.shapes.render import WATERMARK_ALPHA, stripe_colour, watermark_template
from animatediff.shapes.world import (
    BACKGROUNDS,
    CAMERA_MOTIONS,
    COLOURS,
    MOTIONS,
    SYMMETRY,
    PromptAttributes,
    parse_prompt,
)

COLOUR_TOLERANCE = 45.0  # RGB distance for a pixel to count as a colour
MIN_AREA = 4  # pixels, for an object to count as present
ANGLES = 180  # rays of the radial profile

# per-step noise floors and clip-total minimums, by quantity (frame widths, log area, degrees)
FLOOR = {"x": 0.002, "y": 0.002, "scale": 0.01, "rotation": 0.5}
REQUIRED = {"x": 0.15, "y": 0.15, "scale": 0.4, "rotation": 30.0}
CAMERA_REQUIRED = {"x": 0.15, "y": 0.15, "scale": 0.2, "rotation": 20.0}
STILL_FLOOR = {"x": 0.004, "y": 0.004, "scale": 0.03, "rotation": 1.5}


# ---------------------------------------------------------------------------------------------------
# Finding and tracking the object


def _near(frame: np.ndarray, rgb, tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    return np.linalg.norm(frame.astype(np.float32) - np.array(rgb, np.float32), axis=-1) < tolerance


def colour_mask(frame: np.ndarray, colour: str, stripe=None) -> np.ndarray:
    """The silhouette of the named colour: closed over gaps, holes filled, largest part only.

    With `stripe` (an RGB colour), stripe-coloured pixels next to the colour count as the body too.
    """
    mask = _near(frame, COLOURS[colour])
    if stripe is not None:
        mask |= _near(frame, stripe, 70) & ndimage.binary_dilation(mask, iterations=3)
    mask = ndimage.binary_closing(mask, iterations=2, border_value=0)
    mask = ndimage.binary_fill_holes(mask)  # outlined and striped bodies count whole
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def radial_profile(mask: np.ndarray, cy: float, cx: float) -> np.ndarray:
    """The silhouette's extent along `ANGLES` rays from the centroid (screen angles, y down)."""
    size = max(mask.shape)
    theta = np.linspace(0, 2 * np.pi, ANGLES, endpoint=False)
    radii = np.arange(0, size / 2, 0.25)
    ys = cy + np.sin(theta)[:, None] * radii[None]
    xs = cx + np.cos(theta)[:, None] * radii[None]
    inside = ndimage.map_coordinates(mask.astype(np.float32), [ys, xs], order=1, mode="constant") > 0.5
    last = np.where(inside.any(axis=1), inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    return radii[last]


def classify_shape(profile: np.ndarray) -> str:
    """The dominant rotational order (3, 4, 5) of the extent profile; a circle has none.

    Only the low harmonics are looked at, so jagged edges (stripes, outlines) do not matter.
    """
    if profile.mean() <= 0:
        return "circle"
    amplitude = 2 * np.abs(np.fft.rfft(profile)) / len(profile) / profile.mean()
    order = max((3, 4, 5), key=lambda k: amplitude[k])
    if amplitude[order] < 0.04:
        return "circle"
    return {3: "triangle", 4: "square", 5: "star"}[order]


@dataclass
class Track:
    """The prompted object over a clip (NaN where it was not found)."""

    found: np.ndarray
    x: np.ndarray  # centroid, frame widths
    y: np.ndarray
    log_area: np.ndarray
    rotation: np.ndarray  # clockwise degrees from each frame to the next (len F-1)
    shapes: list[str]  # per-frame silhouette class ("" where absent or cut by the frame edge)


def track(frames: np.ndarray, colour: str, shape: str | None, stripe=None) -> Track:
    size = frames.shape[2]
    found, xs, ys, areas, phases, shapes = [], [], [], [], [], []
    order = SYMMETRY.get(shape or "", 0)
    for frame in frames:
        mask = colour_mask(frame, colour, stripe)
        area = int(mask.sum())
        if area < MIN_AREA:
            found.append(False)
            xs.append(np.nan), ys.append(np.nan), areas.append(np.nan), phases.append(np.nan), shapes.append("")
            continue
        cy, cx = ndimage.center_of_mass(mask)
        profile = radial_profile(mask, cy, cx)
        found.append(True)
        xs.append(cx / size), ys.append(cy / size), areas.append(np.log(area))
        shapes.append("" if _touches_border(mask) else classify_shape(profile))
        phases.append(np.angle(np.fft.rfft(profile)[order]) if order else np.nan)
    phases = np.array(phases)
    # a clockwise turn by δ shifts the profile by +δ, turning harmonic k's phase by -kδ
    step = -np.angle(np.exp(1j * np.diff(phases))) / order if order else np.full(len(frames) - 1, np.nan)
    return Track(np.array(found), np.array(xs), np.array(ys), np.array(areas), np.degrees(step), shapes)


# ---------------------------------------------------------------------------------------------------
# Scores


def directional_score(steps: np.ndarray, sign: int, floor: float, required: float) -> float:
    """consistency × magnitude for per-step changes that should have the given sign."""
    steps = steps[np.isfinite(steps)]
    if len(steps) == 0:
        return 0.0
    right = np.sum(sign * steps > floor)
    wrong = np.sum(sign * steps < -floor)
    consistency = max(0.0, (right - wrong) / max(right + wrong, 1))
    magnitude = float(np.clip(sign * steps.sum() / required, 0, 1))
    return max(0.0, float(consistency * magnitude))


def _steps(track_: Track, kind: str) -> np.ndarray:
    series = {"x": track_.x, "y": track_.y, "scale": track_.log_area}
    return track_.rotation if kind == "rotation" else np.diff(series[kind])


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def prompted_track(frames: np.ndarray, attributes: PromptAttributes) -> Track:
    """The track of the object the prompt names (its colour and shape; stripes count as its body)."""
    return track(frames, attributes.colour, attributes.shape, _stripe(frames, attributes))


def motion_score(frames: np.ndarray, attributes: PromptAttributes, path: Track | None = None) -> float | None:
    """Does the prompted object move as the prompt says (direction, growth, spin, or stillness)?

    `path` is the prompted object's track over `frames`, if already computed."""
    if attributes.motion is None or attributes.colour is None:
        return None
    kind, sign = MOTIONS[attributes.motion]
    if kind == "rotation" and attributes.shape == "circle":
        return None  # a spinning circle looks still
    path = path or prompted_track(frames, attributes)
    if path.found.mean() < 0.5:
        return 0.0
    if kind == "still":
        quantities = ["x", "y", "scale"] + (["rotation"] if attributes.shape in SYMMETRY else [])
        still = np.ones(len(frames) - 1, dtype=bool)
        for quantity in quantities:
            still &= ~(np.abs(_steps(path, quantity)) > STILL_FLOOR[quantity])
        return float(still.mean())
    return directional_score(_steps(path, kind), sign, FLOOR[kind], REQUIRED[kind])


def _background_name(frames: np.ndarray, colour: str | None) -> str:
    border = np.concatenate(
        [
            frames[:, :3].reshape(-1, 3),
            frames[:, -3:].reshape(-1, 3),
            frames[:, :, :3].reshape(-1, 3),
            frames[:, :, -3:].reshape(-1, 3),
        ]
    )
    if colour is not None:
        distance = np.linalg.norm(border.astype(np.float32) - np.array(COLOURS[colour], np.float32), axis=-1)
        border = border[distance >= COLOUR_TOLERANCE] if (distance >= COLOUR_TOLERANCE).any() else border
    median = np.median(border.astype(np.float32), axis=0)
    return min(BACKGROUNDS, key=lambda name: np.linalg.norm(median - np.array(BACKGROUNDS[name])))


def _stripe(frames: np.ndarray, attributes: PromptAttributes):
    """The stripe colour a striped prompt implies (it depends on the background), else None."""
    if attributes.style != "striped" or attributes.colour is None:
        return None
    return stripe_colour(attributes.background or _background_name(frames, attributes.colour))


def shape_part(path: Track, shape: str) -> float:
    """The share of frames (where the whole object is in view) whose silhouette is `shape`; 0 if none is."""
    votes = [found for found in path.shapes if found]
    return float(np.mean([found == shape for found in votes])) if votes else 0.0


def text_score(frames: np.ndarray, attributes: PromptAttributes, path: Track | None = None) -> float | None:
    """Mean of: the prompted colour is there, its silhouette is the prompted shape (in frames where the
    whole object is in view), the background is right. For a camera prompt, the first frame is judged.

    `path` is the prompted object's track over `frames`, if already computed (not used for camera prompts)."""
    if attributes.camera is not None:
        frames, path = frames[:1], None  # the scene as described; the camera then moves things out of view
    parts = []
    if attributes.colour is not None:
        path = path or prompted_track(frames, attributes)
        parts.append(float(path.found.mean()))
        if attributes.shape is not None:
            parts.append(shape_part(path, attributes.shape))
    if attributes.background is not None:
        parts.append(float(_background_name(frames, attributes.colour) == attributes.background))
    return float(np.mean(parts)) if parts else None


def _gray(frame: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(frame.astype(np.float32).mean(axis=-1) / 255, 1.0)


def similarity_motion(previous: np.ndarray, following: np.ndarray, iterations: int = 8) -> np.ndarray:
    """Content motion between two frames as (shift x, shift y in frame widths, log scale, clockwise degrees).

    Gauss-Newton on brightness constancy with the small-motion similarity model
    d(x) = t + s·x + r·(-y, x) about the frame centre.
    """
    a, b = _gray(previous), _gray(following)
    size = a.shape[0]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    params = np.zeros(4)  # tx, ty (pixels), s, r
    gy, gx = np.gradient(a)
    jacobian = np.stack([gx, gy, gx * xs + gy * ys, -gx * ys + gy * xs], axis=-1).reshape(-1, 4)
    inner = (slice(4, -4), slice(4, -4))
    weights = np.zeros_like(a)
    weights[inner] = 1
    jacobian_w = jacobian * weights.reshape(-1, 1)
    for _ in range(iterations):
        tx, ty, s, r = params
        # sample the following frame where each point of the previous one has moved to
        rows = ys + ty + s * ys + r * xs + (size - 1) / 2
        cols = xs + tx + s * xs - r * ys + (size - 1) / 2
        warped = ndimage.map_coordinates(b, [rows, cols], order=1, mode="nearest")
        residual = (warped - a).reshape(-1)
        delta = np.linalg.lstsq(jacobian_w, -residual * weights.reshape(-1), rcond=None)[0]
        params += delta
        if np.abs(delta).max() < 1e-4:
            break
    tx, ty, s, r = params
    return np.array([tx / size, ty / size, np.log1p(s), np.degrees(r)])


def camera_score(frames: np.ndarray, attributes: PromptAttributes) -> float | None:
    """Does the whole picture move as the prompted camera motion makes it move?"""
    if attributes.camera is None:
        return None
    kind, sign = CAMERA_MOTIONS[attributes.camera]
    index = {"x": 0, "y": 1, "scale": 2, "rotation": 3}[kind]
    steps = np.array([similarity_motion(a, b)[index] for a, b in zip(frames[:-1], frames[1:], strict=True)])
    floor = {"x": 0.002, "y": 0.002, "scale": 0.004, "rotation": 0.3}[kind]
    return directional_score(steps, sign, floor, CAMERA_REQUIRED[kind])


def smooth_score(frames: np.ndarray, tolerance: float = 0.02) -> float:
    """Frame-to-frame consistency: how far each frame is from the mean of its neighbours (no flicker, no jumps)."""
    video = frames.astype(np.float32) / 255
    if len(video) < 3:
        return 1.0
    jumps = np.abs(video[1:-1] - (video[:-2] + video[2:]) / 2).mean(axis=(1, 2, 3))
    return float(np.exp(-jumps.mean() / tolerance))


def edge_f1(edges: np.ndarray, reference: np.ndarray, reach: int = 1) -> float:
    """How well the edge maps `edges` follow `reference` (both F×H×W[×3], nonzero on an edge): the F1 of
    edge pixels within `reach` pixels of an edge of the other map (precision: `edges` near `reference`)."""
    found, wanted = (np.asarray(e)[..., 0] if np.ndim(e) == 4 else np.asarray(e) for e in (edges, reference))
    found, wanted = found > 0, wanted > 0
    structure = ndimage.generate_binary_structure(3, 1)
    structure[0] = structure[2] = False  # grow within each frame, not across frames
    near_found = ndimage.binary_dilation(found, structure, iterations=reach)
    near_wanted = ndimage.binary_dilation(wanted, structure, iterations=reach)
    precision = (found & near_wanted).sum() / max(found.sum(), 1)
    recall = (wanted & near_found).sum() / max(wanted.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-9))


def watermark_score(frames: np.ndarray) -> float:
    """How clearly the video-only watermark shows: ≈ 1 with it, ≈ 0 without."""
    template = watermark_template(frames.shape[1])
    light, dark = template > 0.5, template < -0.5
    luminance = frames.astype(np.float32).mean(axis=-1).mean(axis=0)
    contrast = (luminance[light].mean() - luminance[dark].mean()) / (255 * WATERMARK_ALPHA)
    return float(np.clip(contrast, 0, 1))


def style_score(frames: np.ndarray, attributes: PromptAttributes, background: str | None = None) -> float | None:
    """Adherence to the prompted style: a hollow outline, or stripes across the object's body."""
    if attributes.style is None or attributes.colour is None:
        return None
    background = background or attributes.background or _background_name(frames, attributes.colour)
    if attributes.camera is not None:
        frames = frames[:1]  # as for text: the scene as described, before the camera moves
    stripe = stripe_colour(background) if attributes.style == "striped" else None
    scores = []
    for frame in frames:
        mask = colour_mask(frame, attributes.colour, stripe)
        if mask.sum() < MIN_AREA or _touches_border(mask):
            continue  # absent, or cut by the frame edge
        cy, cx = ndimage.center_of_mass(mask)
        profile = radial_profile(mask, cy, cx)
        yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
        angle = np.mod(np.arctan2(yy - cy, xx - cx), 2 * np.pi)
        extent = profile[(angle / (2 * np.pi) * ANGLES).astype(int) % ANGLES]
        core = np.hypot(yy - cy, xx - cx) < 0.45 * extent
        if core.sum() == 0:
            continue
        pixels = frame[core].astype(np.float32)
        is_colour = np.linalg.norm(pixels - np.array(COLOURS[attributes.colour]), axis=-1) < COLOUR_TOLERANCE
        if attributes.style == "outlined":
            scores.append(float(np.clip((0.8 - is_colour.mean()) / 0.5, 0, 1)))
        else:
            is_stripe = np.linalg.norm(pixels - np.array(stripe_colour(background)), axis=-1) < 70
            scores.append(float(np.clip(is_stripe.mean() / 0.3, 0, 1)))
    return float(np.mean(scores)) if scores else 0.0


def score_video(frames: np.ndarray, prompt: str, with_shape: bool = False) -> dict[str, float | None]:
    """Every metric that applies to this prompt (None for those that do not). With `with_shape`, also
    `shape`: the shape part of `text` (`shape_part`), for a prompt that names one object and its shape."""
    attributes = parse_prompt(prompt)
    object_prompt = attributes.colour is not None and attributes.camera is None
    path = prompted_track(frames, attributes) if object_prompt else None  # shared by text, motion and shape
    scores = {
        "text": text_score(frames, attributes, path),
        "motion": motion_score(frames, attributes, path),
        "camera": camera_score(frames, attributes),
        "smooth": smooth_score(frames),
        "watermark": watermark_score(frames),
        "style": style_score(frames, attributes),
    }
    if with_shape:
        scores["shape"] = shape_part(path, attributes.shape) if path is not None and attributes.shape else None
    return scores
