"""SparseCtrl keyframes: the clip's condition and mask (keyframes where they are, zeros elsewhere), RGB
keyframe images through the VAE, and condition images prepared as the official script prepares them. The
encoder itself, and its files, are `animatediff.sparsectrl`'s; here it is whatever takes (latents, timestep,
text states, condition, mask, scale, windows) and returns residuals."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from torch import nn

from animatediff.inflation import Residuals
from animatediff.motion_module import Windows


@dataclass(frozen=True)
class SparseCtrlInput:
    """A SparseCtrl encoder with its keyframes for a clip of `frames` frames: `keyframes` (n c h w: VAE
    latents for an RGB encoder, pixels in [0, 1] for a scribble one) at frames `indices` (negative: from the
    end, as the official `controlnet_image_indexs: [0, -1]`), and the residuals' `scale`. `encode`: the
    keyframes are RGB images (n 3 H W in [0, 1]) that the pipeline turns into latents with the clip's
    generator (`encoded`) before the first step."""

    model: nn.Module  # an `animatediff.sparsectrl.SparseCtrl`
    keyframes: torch.Tensor
    indices: tuple[int, ...]
    frames: int
    scale: float = 1.0
    encode: bool = False

    def __post_init__(self):
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        if len(self.keyframes) < len(self.indices):
            raise ValueError(f"{len(self.indices)} keyframe indices but {len(self.keyframes)} keyframes")
        for index in self.indices:
            if not -self.frames <= index < self.frames:
                raise ValueError(f"keyframe index {index} is outside the clip's {self.frames} frames")

    def encoded(self, vae, generator: torch.Generator) -> SparseCtrlInput:
        """The same input with RGB keyframe images replaced by their latents (`keyframe_latents`)."""
        if not self.encode:
            return self
        return replace(self, keyframes=keyframe_latents(vae, self.keyframes, generator), encode=False)

    def condition(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip's condition (c f h w) and mask (1 f h w): keyframes where they are, zeros elsewhere."""
        if self.encode:
            raise RuntimeError("RGB keyframe images must be encoded (SparseCtrlInput.encoded) before a step uses them")
        channels, height, width = self.keyframes.shape[1:]
        condition = torch.zeros(channels, self.frames, height, width)
        mask = torch.zeros(1, self.frames, height, width)
        index = list(self.indices)
        condition[:, index] = rearrange(self.keyframes[: len(index)].float().cpu(), "n c h w -> c n h w")
        mask[:, index] = 1
        return condition, mask

    def residuals(
        self,
        sample: torch.Tensor,
        timestep,
        text_states: torch.Tensor,
        frame_index: torch.Tensor | None,
        windows: Windows | None,
    ) -> Residuals:
        """The encoder's residuals for `sample`, the clip's frames `frame_index` (None: all of them): each
        window of frames gets the keyframes that fall inside it."""
        condition, mask = self.condition()
        if frame_index is not None:
            condition, mask = condition[:, frame_index.cpu()], mask[:, frame_index.cpu()]
        return self.model(sample, timestep, text_states, condition, mask, self.scale, windows)


def crop_like_official(image: Image.Image, width: int, height: int) -> np.ndarray:
    """`image` as the official script prepares condition images (torchvision's `RandomResizedCrop` with the
    whole area and the clip's aspect ratio): the largest centred crop of the clip's aspect ratio, resized
    bilinearly to width×height; H×W×3 uint8."""
    image = image.convert("RGB")
    ratio = width / height
    own_width, own_height = image.size
    crop_width = round((own_width * own_height * ratio) ** 0.5)
    crop_height = round((own_width * own_height / ratio) ** 0.5)
    if not (0 < crop_width <= own_width and 0 < crop_height <= own_height):
        if own_width / own_height < ratio:
            crop_width, crop_height = own_width, round(own_width / ratio)
        elif own_width / own_height > ratio:
            crop_width, crop_height = round(own_height * ratio), own_height
        else:
            crop_width, crop_height = own_width, own_height
    top, left = (own_height - crop_height) // 2, (own_width - crop_width) // 2
    cropped = image.crop((left, top, left + crop_width, top + crop_height))
    return np.array(cropped.resize((width, height), Image.Resampling.BILINEAR))


def normalize_condition(images: torch.Tensor) -> torch.Tensor:
    """The official `normalize_condition_images`: each image (3 H W) to grey, stretched to [0, 1]."""
    grey = images.mean(dim=1, keepdim=True).repeat(1, 3, 1, 1)
    low = grey.amin(dim=(1, 2, 3), keepdim=True)
    grey = grey - low
    return grey / grey.amax(dim=(1, 2, 3), keepdim=True)


@torch.no_grad()
def keyframe_latents(vae, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """RGB keyframes (n 3 H W in [0, 1]) as an RGB encoder takes them: VAE posterior samples, drawn in one
    batch from `generator`, times the VAE's scaling factor (n 4 h w)."""
    pixels = (images * 2 - 1).to(vae.device, vae.dtype)
    posterior = vae.encode(pixels).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32).to(posterior.mean.device)
    return (posterior.mean.float() + posterior.std.float() * noise) * vae.config.scaling_factor
