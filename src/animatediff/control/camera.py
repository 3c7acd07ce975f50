"""Camera poses for CameraCtrl as its pose encoder takes them: a clip's camera path (`camera_poses`: pose
files, presets), one pose per frame, as Plücker embeddings.

The embedding follows the release (`ray_condition` and the relative-pose normalisation of its dataset and
inference script): each pose is made relative to the first frame's camera (frame 0 becomes the identity),
the intrinsics are scaled to pixels of the clip after fitting the poses' 16:9 video into the clip's aspect
ratio, and every pixel centre's ray becomes the six numbers (o × d, d): the camera centre o crossed with the
unit ray direction d in the first camera's frame, then d itself.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from einops import rearrange
from torch import nn

from animatediff.camera_poses import POSE_ASPECT, CameraPoses


def relative_poses(poses: CameraPoses) -> torch.Tensor:
    """Camera-to-world matrices relative to the first camera (the first becomes the identity), float32
    (f, 4, 4): each pose's camera-to-world matrix seen from the first camera, `w2c₀ · c2wᵢ`."""
    camera_to_world = torch.linalg.inv(poses.world_to_camera)
    relative = poses.world_to_camera[0] @ camera_to_world
    relative[0] = torch.eye(4, dtype=torch.float64)
    return relative.float()


def pixel_intrinsics(poses: CameraPoses, height: int, width: int, pose_aspect: float = POSE_ASPECT) -> torch.Tensor:
    """fx fy cx cy in pixels of a height×width clip (f, 4), float32: the poses' video (of `pose_aspect`)
    scaled to cover the clip and cropped, so the focal length along the cropped side grows."""
    fx, fy, cx, cy = poses.intrinsics.unbind(-1)
    if pose_aspect > width / height:  # the video is wider: its width is cropped
        fx = (height * pose_aspect) * fx / width
    else:
        fy = (width / pose_aspect) * fy / height
    return torch.stack([fx * width, fy * height, cx * width, cy * height], dim=-1).float()


def plucker_embedding(intrinsics: torch.Tensor, camera_to_world: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The Plücker embedding of every pixel's ray, (f, 6, height, width): (o × d, d) with d the unit ray
    through the pixel's centre and o the camera centre, both in world axes; `intrinsics` (f, 4) in pixels,
    `camera_to_world` (f, 4, 4)."""
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=torch.float32) + 0.5, torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij"
    )
    fx, fy, cx, cy = (rearrange(k, "f -> f 1 1") for k in intrinsics.unbind(-1))
    directions = torch.stack([(columns - cx) / fx, (rows - cy) / fy, torch.ones_like(columns - cx)], dim=-1)
    directions = directions / directions.norm(dim=-1, keepdim=True)  # f h w 3, camera axes
    rays = torch.einsum("fhwj,fij->fhwi", directions, camera_to_world[:, :3, :3])  # world axes
    origins = camera_to_world[:, None, None, :3, 3].expand_as(rays)
    plucker = torch.cat([torch.linalg.cross(origins, rays, dim=-1), rays], dim=-1)
    return rearrange(plucker, "f h w c -> f c h w")


def pose_embedding(poses: CameraPoses, height: int, width: int) -> torch.Tensor:
    """A clip's Plücker embedding as CameraCtrl's pose encoder takes it, (f, 6, height, width)."""
    return plucker_embedding(pixel_intrinsics(poses, height, width), relative_poses(poses), height, width)


@dataclass(frozen=True)
class CameraInput:
    """CameraCtrl with a clip's Plücker embedding (f 6 H W, the clip's frames and size); `features`: the pose
    encoder's output for it (`encoded`), computed once before the first step, as the release does."""

    model: nn.Module  # an `animatediff.cameractrl.CameraCtrl`
    embedding: torch.Tensor
    features: tuple[torch.Tensor, ...] | None = None

    @torch.no_grad()
    def encoded(self) -> CameraInput:
        return replace(self, features=tuple(self.model.encode(self.embedding)))

    def active(self):
        """A context in which the motion module's pose layers see this clip's pose features."""
        if self.features is None:
            raise RuntimeError("the camera poses must be encoded (CameraInput.encoded) before a step uses them")
        return self.model.conditioned(list(self.features))


def camera_context(camera: CameraInput | None):
    """`camera.active()`, or nothing to do without camera poses."""
    return nullcontext() if camera is None else camera.active()
