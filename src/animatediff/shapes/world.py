"""The shapes world: its vocabulary, the ground truth of a clip, captions, and reading prompts back.

A clip shows either one object doing one motion on a plain background ("a red circle moving left on a
blue background"), or a scene of several objects on a textured background under one camera motion
("… on a gray background, camera zooming in"). Two optional styles, absent from the base data, carry
trigger words for personalization. Directions are as seen on screen, y pointing down; a camera motion
names what the camera does (panning left makes the content slide right).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

KINDS = ("images", "clips", "camera")  # what a dataset of the world holds: stills, object clips, camera clips
IMAGE_SIZE = 32  # the frame size of the embedded models (the world itself renders at any size)
SHAPES = ("circle", "square", "triangle", "star")
SYMMETRY = {"square": 4, "triangle": 3, "star": 5}  # rotational order, for orientation tracking

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 215, 40),
    "purple": (150, 55, 200),
    "orange": (250, 140, 20),
}
BACKGROUNDS = {
    "white": (235, 235, 235),
    "gray": (125, 125, 125),
    "black": (25, 25, 25),
    "brown": (105, 70, 45),
    "blue": (85, 145, 205),  # a sky blue, apart from the blue objects (which never stand on it)
}

# object motions: (what changes, sign); translation in x/y, area, or rotation (clockwise positive)
MOTIONS = {
    "moving left": ("x", -1),
    "moving right": ("x", 1),
    "moving up": ("y", -1),
    "moving down": ("y", 1),
    "growing": ("scale", 1),
    "shrinking": ("scale", -1),
    "spinning clockwise": ("rotation", 1),
    "spinning anticlockwise": ("rotation", -1),
    "staying still": ("still", 0),
}
# camera motions, by the content motion they cause on screen: (parameter, sign)
CAMERA_MOTIONS = {
    "zooming in": ("scale", 1),
    "zooming out": ("scale", -1),
    "panning left": ("x", 1),
    "panning right": ("x", -1),
    "tilting up": ("y", 1),
    "tilting down": ("y", -1),
    "rolling clockwise": ("rotation", -1),
    "rolling anticlockwise": ("rotation", 1),
}
STYLES = {"outlined": "outlinestyle", "striped": "stripestyle"}  # style → trigger word
# what a moving object's trail copies are drawn in: the object's colour and style, or the background's shadow
# colour, which the autoencoder and the base do not join to the object's silhouette (docs/shapes-model.md)
TRAIL_COLOURS = ("object", "shadow")

# (colour, shape, motion) combinations no training set shows: the evaluation prompts use them, so the
# scores measure composition, not recall. Every colour, shape and motion occurs here and in training.
HELD_OUT = (
    ("red", "triangle", "moving right"),
    ("green", "star", "moving left"),
    ("blue", "square", "moving up"),
    ("yellow", "circle", "moving down"),
    ("purple", "square", "growing"),
    ("orange", "triangle", "shrinking"),
    ("red", "star", "spinning clockwise"),
    ("blue", "triangle", "spinning anticlockwise"),
    ("green", "circle", "staying still"),
    ("yellow", "star", "moving right"),
    ("purple", "circle", "moving left"),
    ("orange", "square", "moving down"),
)


@dataclass
class SceneObject:
    shape: str
    colour: str
    x: float  # centre, in units of the frame width (0..1)
    y: float
    radius: float  # circumradius, in units of the frame width
    angle: float = 0.0  # degrees, clockwise on screen


@dataclass
class ClipSpec:
    """Everything that determines a clip: the exact ground truth a metric can be checked against."""

    objects: list[SceneObject]
    background: str
    motion: str | None = None  # object motion of objects[0]
    speed: float = 0.0  # per frame: frame widths (x/y), log-scale (growth), degrees (rotation)
    camera: str | None = None
    camera_speed: float = 0.0  # per frame: frame widths, log-scale or degrees
    style: str | None = None
    watermark: bool = False
    seed: int = 0
    textured: bool = False
    trail: bool = False  # the moving object leaves a fading trail (render.TRAIL); the recipe's datasets have it
    trail_colour: str = "object"  # one of TRAIL_COLOURS
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(spec: ClipSpec, still: bool = False) -> str:
    """The template caption; `still=True` leaves out the motion (for the image domain)."""
    if spec.camera is not None:
        names = [f"{_article(o.colour)} {o.colour} {o.shape}" for o in spec.objects]
        scene = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        text = f"{scene} on a {spec.background} background"
        text += "" if still else f", camera {spec.camera}"
    else:
        first = spec.objects[0]
        motion = "" if still or spec.motion is None else f" {spec.motion}"
        text = f"{_article(first.colour)} {first.colour} {first.shape}{motion} on a {spec.background} background"
    return text + (f", {STYLES[spec.style]}" if spec.style else "")


@dataclass
class PromptAttributes:
    colour: str | None
    shape: str | None
    background: str | None
    motion: str | None
    camera: str | None
    style: str | None


def parse_prompt(prompt: str) -> PromptAttributes:
    """What a prompt asks for, in the world's vocabulary (None where it does not say)."""
    text = prompt.lower()
    pair = re.search(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b", text)
    background = re.search(rf"\bon an? ({'|'.join(BACKGROUNDS)}) background\b", text)
    motion = next((m for m in MOTIONS if m in text and f"camera {m}" not in text), None)
    camera = next((c for c in CAMERA_MOTIONS if f"camera {c}" in text), None)
    style = next((s for s, trigger in STYLES.items() if trigger in text), None)
    return PromptAttributes(
        colour=pair.group(1) if pair else None,
        shape=pair.group(2) if pair else None,
        background=background.group(1) if background else None,
        motion=motion,
        camera=camera,
        style=style,
    )


def is_held_out(spec: ClipSpec) -> bool:
    first = spec.objects[0]
    return spec.camera is None and (first.colour, first.shape, spec.motion) in HELD_OUT


def sample_object_clip(rng: np.random.Generator, frames: int, style: str | None = None, **fixed) -> ClipSpec:
    """A random single-object clip; `fixed` pins any of shape, colour, background, motion."""
    motion = fixed.get("motion") or rng.choice(list(MOTIONS))
    shapes = [s for s in SHAPES if not (s == "circle" and MOTIONS[motion][0] == "rotation")]
    shape = fixed.get("shape") or rng.choice(shapes)
    colour = fixed.get("colour") or rng.choice(list(COLOURS))
    background = fixed.get("background") or rng.choice([b for b in BACKGROUNDS if b != colour])
    kind, sign = MOTIONS[motion]
    speed = {
        "x": rng.uniform(0.018, 0.03),
        "y": rng.uniform(0.018, 0.03),
        "scale": rng.uniform(0.03, 0.045),
        "rotation": rng.uniform(12.0, 18.0),
        "still": 0.0,
    }[kind]
    radius = rng.uniform(0.12, 0.16) if kind != "scale" else (0.09 if sign > 0 else 0.2)
    travel = speed * (frames - 1)
    x, y = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    if kind in ("x", "y"):  # start so that the whole path stays inside the frame
        start = 0.5 - sign * travel / 2 + rng.uniform(-0.05, 0.05)
        x, y = (start, y) if kind == "x" else (x, start)
    obj = SceneObject(str(shape), str(colour), float(x), float(y), float(radius), float(rng.uniform(0, 360)))
    return ClipSpec(
        [obj], str(background), motion=str(motion), speed=float(speed), style=style, seed=int(rng.integers(2**31))
    )


def prompt_clip(prompt: str, seed: int, frames: int = 16) -> ClipSpec:
    """The clip of a single-object `prompt` (its colour, shape, motion and background) as the world places
    and paces a `frames`-frame clip drawn with `seed`."""
    wanted = parse_prompt(prompt)
    return sample_object_clip(
        np.random.default_rng(seed),
        frames,
        shape=wanted.shape,
        colour=wanted.colour,
        motion=wanted.motion,
        background=wanted.background,
    )


def sample_camera_clip(rng: np.random.Generator, camera: str | None = None, style: str | None = None) -> ClipSpec:
    """A random scene of three objects on a textured background under one camera motion."""
    camera = camera or rng.choice(list(CAMERA_MOTIONS))
    background = str(rng.choice(list(BACKGROUNDS)))
    colours = rng.choice([c for c in COLOURS if c != background], size=3, replace=False)
    positions = [(0.28, 0.3), (0.72, 0.35), (0.45, 0.74)]
    objects = [
        SceneObject(
            str(rng.choice(SHAPES)),
            str(c),
            px + rng.uniform(-0.05, 0.05),
            py + rng.uniform(-0.05, 0.05),
            float(rng.uniform(0.11, 0.14)),
            float(rng.uniform(0, 360)),
        )
        for c, (px, py) in zip(colours, positions, strict=True)
    ]
    kind = CAMERA_MOTIONS[camera][0]
    speed = {
        "x": rng.uniform(0.018, 0.028),
        "y": rng.uniform(0.018, 0.028),
        "scale": rng.uniform(0.025, 0.035),
        "rotation": rng.uniform(2.5, 4.0),
    }[kind]
    return ClipSpec(
        objects,
        background,
        camera=str(camera),
        camera_speed=float(speed),
        style=style,
        seed=int(rng.integers(2**31)),
        textured=True,
    )
