"""Rendering shapes-world clips: anti-aliased by 4× supersampling, deterministic for a given spec.

Each frame is drawn analytically from the spec (object state at that frame, camera transform at that
frame), so motion carries no resampling blur. With `spec.trail`, a moving object leaves a fading trail
of where it was a few frames before (`TRAIL`; in its own colour, or in the background's shadow colour
with `spec.trail_colour = "shadow"`), as a long exposure shows it, so that a still image says
which way it moves (how the base learns the motion words: docs/shapes-model.md); growing, shrinking and
spinning, which no trail shows at this size, cast a round shadow instead (centred for growth, below for
shrinking, shifted the way the spin goes). The video domain adds what web videos have and the image
domain lacks: a semi-transparent watermark in a fixed place, a slight blur and sensor noise.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from animatediff.shapes.world import BACKGROUNDS, CAMERA_MOTIONS, COLOURS, MOTIONS, ClipSpec, SceneObject

SUPERSAMPLE = 4
WATERMARK_ALPHA = 0.4
# (frames back, opacity) of a moving object's fading copies, oldest first: a tail about two latent cells
# long (docs/shapes-model.md), so that the autoencoder keeps which end is the head. Only an object moving
# left, right, up or down leaves one; the others cast a shadow instead (SHADOW_SIDE): a growing object covers
# its copies, a shrinking one's become a halo that the base smeared into the object, a spinning one's blur it
TRAIL = ((12, 0.15), (9, 0.25), (6, 0.35), (3, 0.45))
# growing, shrinking and spinning change an object in place, which no trail shows at 32×32: such an object
# casts a round shadow SHADOW wider (frame widths) than its reach, centred under a growing object and shifted
# by SHADOW_SHIFT (more than a latent cell) for the others: down for shrinking, and to the side a spinning
# object's top moves to (right for clockwise)
SHADOW = 0.06
SHADOW_SHIFT = 0.15
SHADOW_SIDE = {("scale", 1): (0, 0), ("scale", -1): (0, 1), ("rotation", 1): (1, 0), ("rotation", -1): (-1, 0)}
STRIPE_PERIOD = 0.2  # frame widths; a band through the centre, wide enough for the autoencoder's 4-pixel cells


def _outline(shape: str, radius: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices around the origin (screen axes, y down; angle clockwise in degrees)."""
    turn = math.radians(angle)
    if shape == "circle":
        points = [(radius, 2 * math.pi * i / 64) for i in range(64)]
    elif shape == "star":
        points = [(radius if i % 2 == 0 else 0.42 * radius, math.pi * i / 5 - math.pi / 2) for i in range(10)]
    else:
        sides = {"square": 4, "triangle": 3}[shape]
        points = [(radius, 2 * math.pi * i / sides - math.pi / 2) for i in range(sides)]
    return [(r * math.cos(a + turn), r * math.sin(a + turn)) for r, a in points]


def _moves(obj: SceneObject, spec: ClipSpec) -> bool:
    """Only the first object moves, and only under a motion other than staying still."""
    return obj is spec.objects[0] and spec.motion is not None and MOTIONS[spec.motion][0] != "still"


def object_at(obj: SceneObject, spec: ClipSpec, t: int) -> SceneObject:
    """The first object's state `t` frames into its motion (other objects stay put)."""
    if not _moves(obj, spec):
        return obj
    kind, sign = MOTIONS[spec.motion]
    change = sign * spec.speed * t
    if kind == "x":
        return SceneObject(obj.shape, obj.colour, obj.x + change, obj.y, obj.radius, obj.angle)
    if kind == "y":
        return SceneObject(obj.shape, obj.colour, obj.x, obj.y + change, obj.radius, obj.angle)
    if kind == "scale":
        return SceneObject(obj.shape, obj.colour, obj.x, obj.y, obj.radius * math.exp(change), obj.angle)
    return SceneObject(obj.shape, obj.colour, obj.x, obj.y, obj.radius, obj.angle + change)  # rotation


def camera_at(spec: ClipSpec, t: int) -> tuple[float, float, float, float]:
    """The content transform at frame `t`: shift x, shift y (frame widths), scale, rotation (degrees)."""
    if spec.camera is None:
        return 0.0, 0.0, 1.0, 0.0
    kind, sign = CAMERA_MOTIONS[spec.camera]
    change = sign * spec.camera_speed * t
    return (
        change if kind == "x" else 0.0,
        change if kind == "y" else 0.0,
        math.exp(change) if kind == "scale" else 1.0,
        change if kind == "rotation" else 0.0,
    )


def _to_screen(x: float, y: float, camera) -> tuple[float, float]:
    dx, dy, scale, rotation = camera
    turn = math.radians(rotation)
    u, v = x - 0.5, y - 0.5
    return (
        0.5 + scale * (u * math.cos(turn) - v * math.sin(turn)) + dx,
        0.5 + scale * (u * math.sin(turn) + v * math.cos(turn)) + dy,
    )


def _background(spec: ClipSpec, size: int, camera) -> np.ndarray:
    base = np.array(BACKGROUNDS[spec.background], dtype=np.float32)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    if not spec.textured:
        return image
    dx, dy, scale, rotation = camera
    turn = math.radians(rotation)
    v, u = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    u, v = u - dx, v - dy  # back from screen to world coordinates
    wu = (u * math.cos(turn) + v * math.sin(turn)) / scale
    wv = (-u * math.sin(turn) + v * math.cos(turn)) / scale
    phase = np.random.default_rng(spec.seed).uniform(0, 2 * math.pi, 3)
    waves = ((3.1, 1.7, 1.0), (-2.3, 4.2, 1.0), (5.3, -3.9, 0.7))  # cycles per frame width, amplitude
    texture = sum(
        a * np.sin(2 * math.pi * (fu * wu + fv * wv) + p) for (fu, fv, a), p in zip(waves, phase, strict=True)
    )
    return np.clip(image + 9.0 * texture[..., None], 0, 255)


def stripe_colour(background: str) -> tuple[int, int, int]:
    return (20, 20, 20) if background == "white" else (245, 245, 245)


def shadow_colour(background: str) -> tuple[int, int, int]:
    """The background darkened (lightened on black, where a shadow would not show)."""
    if background == "black":
        return (100, 100, 100)
    return tuple(round(0.4 * c) for c in BACKGROUNDS[background])


def _polygon(cx: float, cy: float, shape: str, radius: float, angle: float, big: int) -> list[tuple[float, float]]:
    """The shape's vertices around screen point (cx, cy), in pixels of the `big` supersampled canvas."""
    return [((cx + px) * big, (cy + py) * big) for px, py in _outline(shape, radius, angle)]


def _draw_shadow(canvas: Image.Image, obj: SceneObject, spec: ClipSpec, camera, big: int, side) -> None:
    cx, cy = _to_screen(obj.x + side[0] * SHADOW_SHIFT, obj.y + side[1] * SHADOW_SHIFT, camera)
    points = _polygon(cx, cy, "circle", (obj.radius + SHADOW) * camera[2], 0.0, big)  # camera[2]: its scale
    ImageDraw.Draw(canvas).polygon(points, fill=shadow_colour(spec.background))


def _placed(obj: SceneObject, camera, big: int) -> tuple[float, float, float, list[tuple[float, float]]]:
    """The object as the camera shows it: its screen centre, its angle there, and its polygon on the canvas."""
    _, _, scale, rotation = camera
    cx, cy = _to_screen(obj.x, obj.y, camera)
    angle = obj.angle + rotation
    return cx, cy, angle, _polygon(cx, cy, obj.shape, obj.radius * scale, angle, big)


def _draw_copy(canvas: Image.Image, obj: SceneObject, spec: ClipSpec, camera, big: int) -> None:
    """One of a moving object's trail copies, before its opacity is applied."""
    if spec.trail_colour == "object":
        _draw_object(canvas, obj, spec, camera, big)
        return
    points = _placed(obj, camera, big)[3]
    ImageDraw.Draw(canvas).polygon(points, fill=shadow_colour(spec.background))  # in any style: a plain shape


def _draw_object(canvas: Image.Image, obj: SceneObject, spec: ClipSpec, camera, big: int) -> None:
    cx, cy, angle, points = _placed(obj, camera, big)
    colour = COLOURS[obj.colour]
    draw = ImageDraw.Draw(canvas)
    if spec.style == "outlined":
        draw.polygon(points, outline=colour, width=max(1, round(0.045 * big)))
        return
    if spec.style != "striped":
        draw.polygon(points, fill=colour)
        return
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    rows, cols = np.mgrid[0 : canvas.size[1], 0 : canvas.size[0]] / big
    turn = math.radians(angle)
    across = (cols - cx) * -math.sin(turn) + (rows - cy) * math.cos(turn)
    stripes = Image.fromarray(((np.mod(across / STRIPE_PERIOD + 0.2, 1.0) < 0.4) * 255).astype(np.uint8))
    canvas.paste(colour, mask=mask)
    canvas.paste(
        stripe_colour(spec.background), mask=Image.fromarray(np.minimum(np.asarray(mask), np.asarray(stripes)))
    )


def render_frame(spec: ClipSpec, t: int, size: int = 64) -> np.ndarray:
    """Frame `t` of the clip, `H×W×3` uint8, without the video-domain defects."""
    camera = camera_at(spec, t)
    big = size * SUPERSAMPLE
    background = _background(spec, size, camera).astype(np.uint8)
    canvas = Image.fromarray(background).resize((big, big), Image.NEAREST)
    for obj in spec.objects:
        now = object_at(obj, spec, t)
        if spec.trail and _moves(obj, spec):
            kind, sign = MOTIONS[spec.motion]
            if (kind, sign) in SHADOW_SIDE:  # a shadow instead of a trail
                _draw_shadow(canvas, now, spec, camera, big, SHADOW_SIDE[kind, sign])
            else:
                for lag, opacity in TRAIL:
                    ghost = canvas.copy()
                    _draw_copy(ghost, object_at(obj, spec, t - lag), spec, camera, big)
                    canvas = Image.blend(canvas, ghost, opacity)
        _draw_object(canvas, now, spec, camera, big)
    return np.asarray(canvas.resize((size, size), Image.BOX))


def watermark_template(size: int) -> np.ndarray:
    """+1 where the watermark lightens, -1 where it darkens, 0 elsewhere: a ring with a bar, bottom right."""
    big = size * SUPERSAMPLE
    light, dark = Image.new("L", (big, big), 0), Image.new("L", (big, big), 0)
    box = [0.72 * big, 0.80 * big, 0.84 * big, 0.92 * big]
    width = max(1, round(0.025 * big))
    ImageDraw.Draw(light).ellipse(box, outline=255, width=width)
    ImageDraw.Draw(light).rectangle([0.86 * big, 0.84 * big, 0.96 * big, 0.88 * big], fill=255)
    inner = [box[0] + width, box[1] + width, box[2] - width, box[3] - width]
    ImageDraw.Draw(dark).ellipse(inner, outline=255, width=width)
    ImageDraw.Draw(dark).rectangle([0.86 * big, 0.88 * big, 0.96 * big, 0.91 * big], fill=255)
    lighten = np.asarray(light.resize((size, size), Image.BOX), dtype=np.float32) / 255
    darken = np.asarray(dark.resize((size, size), Image.BOX), dtype=np.float32) / 255
    return lighten - darken


def add_video_defects(frames: np.ndarray, seed: int) -> np.ndarray:
    """The video domain's look: the watermark, a slight blur and noise (WebVid-like)."""
    template = watermark_template(frames.shape[1])[None, ..., None]
    video = frames.astype(np.float32)
    video = np.where(template > 0, video + WATERMARK_ALPHA * template * (255 - video), video)
    video = np.where(template < 0, video * (1 + WATERMARK_ALPHA * template), video)
    video = gaussian_filter(video, sigma=(0, 0.6, 0.6, 0))
    video += np.random.default_rng(seed).normal(0, 3.0, video.shape)
    return np.clip(video.round(), 0, 255).astype(np.uint8)


def render_clip(spec: ClipSpec, frames: int = 16, size: int = 64) -> np.ndarray:
    """The whole clip, `F×H×W×3` uint8; with the video-domain defects when `spec.watermark`."""
    clip = np.stack([render_frame(spec, t, size) for t in range(frames)])
    return add_video_defects(clip, spec.seed) if spec.watermark else clip
