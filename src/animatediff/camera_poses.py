"""Camera paths for CameraCtrl: pose files in RealEstate10K's text layout, and presets for any frame count.

A pose file has the layout CameraCtrl trained on: an optional first line (the source video's URL in
RealEstate10K), then one line per frame of 19 numbers,

    timestamp fx fy cx cy k1 k2  r11 r12 r13 t1  r21 r22 r23 t2  r31 r32 r33 t3

with the intrinsics as fractions of the frame's width (fx, cx) and height (fy, cy), two unused distortion
terms, and the 3×4 world-to-camera matrix row by row (OpenCV axes: x right, y down, z forward).

Presets make a path for any frame count: pans (sideways and up/down moves), zooms (moves along the view
axis), tilts and rolls (rotations), orbits (a circle around a point ahead, looking at it), and static.
`control.camera` turns a path into the Plücker embedding CameraCtrl's encoder takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from animatediff.errors import ConfigError, first_line

NUMBERS_PER_LINE = 19  # timestamp, fx fy cx cy, two distortion terms, the 3×4 world-to-camera matrix
POSE_ASPECT = 16 / 9  # the aspect ratio of the videos the poses were taken from (RealEstate10K: 1280×720)


@dataclass(frozen=True)
class CameraPoses:
    """A camera path: `intrinsics` (f, 4) fx fy cx cy as fractions of the frame's width and height, and
    `world_to_camera` (f, 4, 4) matrices; float64."""

    intrinsics: torch.Tensor
    world_to_camera: torch.Tensor

    def __len__(self) -> int:
        return len(self.intrinsics)


def parse_poses(text: str, source: str) -> CameraPoses:
    """The poses of a RealEstate10K-layout text (`source` names it in errors): a first line that is not a
    pose (the URL) is skipped; every other non-empty line must be a pose."""
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if lines and not _is_pose(lines[0][1]):
        lines = lines[1:]
    if not lines:
        raise ConfigError(
            f"camera poses {source}: holds no poses; expected one line of {NUMBERS_PER_LINE} numbers "
            "per frame (timestamp fx fy cx cy 0 0 and a 3×4 world-to-camera matrix)."
        )
    rows = [_pose_numbers(numbers, source, number) for number, numbers in lines]
    values = torch.tensor(rows, dtype=torch.float64)
    world_to_camera = torch.eye(4, dtype=torch.float64).repeat(len(rows), 1, 1)
    world_to_camera[:, :3] = rearrange(values[:, 7:], "f (r c) -> f r c", r=3)
    for (number, _), matrix in zip(lines, world_to_camera, strict=True):
        if abs(torch.linalg.det(matrix)) < 1e-12:
            raise ConfigError(
                f"camera poses {source}, line {number}: the world-to-camera matrix is singular "
                "(its 3×3 part has no inverse); expected a rotation and a translation."
            )
    return CameraPoses(values[:, 1:5], world_to_camera)


def _is_pose(numbers: list[str]) -> bool:
    try:
        return len([float(n) for n in numbers]) == NUMBERS_PER_LINE
    except ValueError:
        return False


def _pose_numbers(numbers: list[str], source: str, line: int) -> list[float]:
    expected = f"expected {NUMBERS_PER_LINE} numbers: timestamp fx fy cx cy 0 0 and a 3×4 world-to-camera matrix"
    if len(numbers) != NUMBERS_PER_LINE:
        raise ConfigError(f"camera poses {source}, line {line}: has {len(numbers)} values; {expected}.")
    try:
        values = [float(n) for n in numbers]
    except ValueError as error:
        raise ConfigError(f"camera poses {source}, line {line}: {error}; {expected}.") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"camera poses {source}, line {line}: holds NaN or infinite values; {expected}.")
    if values[1] <= 0 or values[2] <= 0:
        raise ConfigError(
            f"camera poses {source}, line {line}: the focal lengths fx, fy must be positive; got "
            f"{values[1]:g} and {values[2]:g}."
        )
    return values


def check_frame_count(poses: CameraPoses, frames: int, source: str) -> None:
    """Poses must be one per frame of the clip."""
    if len(poses) != frames:
        raise ConfigError(
            f"camera poses {source}: {len(poses)} poses for a clip of {frames} frames; give one pose "
            "per frame (or a preset, which fits any frame count)."
        )


# --- presets ----------------------------------------------------------------------------------------------

PRESET_INTRINSICS = (0.5, 0.5 * POSE_ASPECT, 0.5, 0.5)  # a 90° horizontal field of view on a 16:9 video
MOVE = 1.0  # how far pans and zooms move the camera over the clip (RealEstate10K's units: about metres)
TURN = math.radians(30)  # how far tilts and orbits turn it
ROLL = math.radians(45)
ORBIT_RADIUS = 2.0  # how far ahead an orbit's centre lies

# name → (translation per unit of progress in the camera's axes, rotation axis, total angle)
_MOVES = {
    "static": ((0, 0, 0), None, 0.0),
    "pan-left": ((-MOVE, 0, 0), None, 0.0),
    "pan-right": ((MOVE, 0, 0), None, 0.0),
    "pan-up": ((0, -MOVE, 0), None, 0.0),
    "pan-down": ((0, MOVE, 0), None, 0.0),
    "zoom-in": ((0, 0, MOVE), None, 0.0),
    "zoom-out": ((0, 0, -MOVE), None, 0.0),
    "tilt-up": ((0, 0, 0), "x", TURN),
    "tilt-down": ((0, 0, 0), "x", -TURN),
    "roll-clockwise": ((0, 0, 0), "z", ROLL),
    "roll-anticlockwise": ((0, 0, 0), "z", -ROLL),
}
PRESETS = (*_MOVES, "orbit-left", "orbit-right")


def preset_poses(name: str, frames: int) -> CameraPoses:
    """The camera path called `name` (one of `PRESETS`) over `frames` frames, evenly paced."""
    if name not in PRESETS:
        raise ConfigError(f"camera poses {name!r}: neither a pose file nor a preset; presets: {', '.join(PRESETS)}.")
    progress = torch.linspace(0, 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1, dtype=torch.float64)
    camera_to_world = torch.stack([_preset_pose(name, float(t)) for t in progress])
    intrinsics = torch.tensor(PRESET_INTRINSICS, dtype=torch.float64).repeat(frames, 1)
    return CameraPoses(intrinsics, torch.linalg.inv(camera_to_world))


def _preset_pose(name: str, t: float) -> torch.Tensor:
    """The camera-to-world matrix at progress `t` in [0, 1] (the first camera's axes are the world's)."""
    pose = torch.eye(4, dtype=torch.float64)
    if name.startswith("orbit"):
        # the camera circles a point ORBIT_RADIUS ahead, turning about the y axis to keep looking at it
        angle = TURN * t * (1 if name == "orbit-left" else -1)
        pose[:3, :3] = _rotation("y", angle)
        pose[:3, 3] = torch.tensor([-math.sin(angle), 0.0, 1 - math.cos(angle)], dtype=torch.float64) * ORBIT_RADIUS
        return pose
    move, axis, angle = _MOVES[name]
    pose[:3, 3] = torch.tensor(move, dtype=torch.float64) * t
    if axis is not None:
        pose[:3, :3] = _rotation(axis, angle * t)
    return pose


def _rotation(axis: str, angle: float) -> torch.Tensor:
    """A rotation by `angle` (radians) about the x, y or z axis."""
    c, s = math.cos(angle), math.sin(angle)
    matrices = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }
    return torch.tensor(matrices[axis], dtype=torch.float64)


def read_camera_poses(path: str | Path) -> CameraPoses:
    """The camera poses of a RealEstate10K-layout text file (`parse_poses`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"camera poses {path}: not a readable text file ({first_line(error)}).") from error
    return parse_poses(text, str(path))
