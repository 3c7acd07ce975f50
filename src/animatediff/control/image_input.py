"""Image to video through weights trained for it: the image conditions every denoising step.

Two releases store such weights beside their motion modules (`families.IMAGE_INPUTS`):

- PIA (Personalized Image Animator): the UNet's `conv_in` takes 9 channels, the noisy latents (4), a mask
  channel holding each frame's affinity to the image (`families.pia_affinity`, the motion-strength presets)
  and the image's latents repeated on every frame (4). As diffusers' `PIAPipeline` and PIA's release build
  it, the first 4 input channels and the bias stay the image model's own; PIA's file gives the other 5.
- AnimateLCM-I2V: an image encoder (a T2I-Adapter-like stack of resnet blocks, `ImageEncoder`) turns the
  image's latents, with a sinusoidal frame position added, into one feature map per UNet level; each is
  added to its down block's output after the block's second layer (before that layer's motion module), as
  the release's `UNet3DConditionModel` does.

The image's latents are a posterior sample of the VAE drawn from the clip's generator right after its
initial noise (diffusers' `PIAPipeline` draws them so; AnimateLCM-I2V's release draws them from torch's global
generator before the noise, which no seed reproduces).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from einops import rearrange, repeat
from torch import nn

from animatediff.motion_module import sinusoidal_table

I2V_POSITION_SCALE = 0.8  # the weight of the frame position added to the image features (the release's default)


@dataclass(frozen=True)
class ImageInput:
    """The image of a PIA or AnimateLCM-I2V clip: `image` (3 H W in [0, 1], the clip's size), for PIA each
    frame's `affinity` to it; `latents` (1 4 h w, scaled) once encoded."""

    kind: str  # "pia" or "i2v"
    image: torch.Tensor
    affinity: tuple[float, ...] = ()
    latents: torch.Tensor | None = None

    def encoded(self, vae: AutoencoderKL, generator: torch.Generator) -> ImageInput:
        """With the image's latents: a posterior sample drawn from `generator`, scaled."""
        pixels = self.image[None].to(device=vae.device, dtype=vae.dtype) * 2 - 1
        latents = vae.encode(pixels).latent_dist.sample(generator) * vae.config.scaling_factor
        return replace(self, latents=latents)

    def pia_channels(self, model_input: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """PIA's UNet input: `model_input` (b 4 f h w, the clip's `frames`) with the mask and image channels
        after it (b 9 f h w)."""
        batch, _, _, height, width = model_input.shape
        affinity = torch.tensor([self.affinity[frame] for frame in frames], dtype=model_input.dtype)
        mask = repeat(affinity.to(model_input.device), "f -> b 1 f h w", b=batch, h=height, w=width)
        latents = repeat(self.latents.to(model_input), "1 c h w -> b c f h w", b=batch, f=len(frames))
        return torch.cat([model_input, mask, latents], dim=1)

    def clip_latents(self, batch: int, frames: int) -> torch.Tensor:
        """AnimateLCM-I2V's encoder input: the image's latents on every frame of each clip (b 4 f h w)."""
        return repeat(self.latents, "1 c h w -> b c f h w", b=batch, f=frames)


def pia_conv_in(image_conv: nn.Conv2d, pia: dict[str, torch.Tensor]) -> nn.Conv2d:
    """PIA's 9-channel input layer for an image UNet whose `conv_in` is `image_conv`: its weights for the 4
    latent channels and its bias, PIA's for the mask and image channels."""
    weight = pia["weight"]
    if image_conv.in_channels != 4:
        raise ValueError(f"PIA fits an image UNet of 4 input channels; this one takes {image_conv.in_channels}")
    if weight.ndim != 4 or weight.shape[1] != 9 or weight.shape[0] != image_conv.out_channels:
        raise ValueError(
            f"PIA's conv_in weight is {tuple(weight.shape)}; the image UNet needs ({image_conv.out_channels}, 9, 3, 3)"
        )
    layer = nn.Conv2d(9, image_conv.out_channels, image_conv.kernel_size, padding=image_conv.padding)
    layer.to(device=image_conv.weight.device, dtype=image_conv.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.cat([image_conv.weight, weight[:, 4:].to(image_conv.weight)], dim=1))
        layer.bias.copy_(image_conv.bias)
    return layer


class EncoderBlock(nn.Module):
    """One resnet block of AnimateLCM-I2V's image encoder: average-pooled by 2 when it starts a level (the
    input padded to even sizes by repeating its edge), a 1×1 projection when the width changes, then
    3×3 conv → ReLU → 1×1 conv added to its input."""

    def __init__(self, in_width: int, width: int, down: bool):
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(in_width, width, 1) if in_width != width else None
        self.block1 = nn.Conv2d(width, width, 3, padding=1)
        self.block2 = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2), mode="replicate"), 2)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class ImageEncoder(nn.Module):
    """AnimateLCM-I2V's image encoder (the release's `Adapter`, keys `img_encoder.…`): image latents on every
    frame (b 4 f h w) → one feature map per UNet level ((b f) width h' w', the level's size)."""

    def __init__(self, widths: tuple[int, ...], blocks_per_level: int = 2, latent_channels: int = 4):
        super().__init__()
        self.widths, self.blocks_per_level = tuple(widths), blocks_per_level
        self.conv_in = nn.Conv2d(latent_channels, widths[0], 3, padding=1)
        self.body = nn.ModuleList(
            EncoderBlock(widths[max(level - (block == 0), 0)], width, down=level > 0 and block == 0)
            for level, width in enumerate(widths)
            for block in range(blocks_per_level)
        )
        self.position_scale = I2V_POSITION_SCALE

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], levels: int) -> ImageEncoder:
        """The encoder a file's `img_encoder.…` tensors (prefix removed) make, for a UNet of `levels` levels."""
        widths = [
            state_dict[f"body.{i}.block1.weight"].shape[0]
            for i in range(len(state_dict))
            if f"body.{i}.block1.weight" in state_dict
        ]
        if not widths or len(widths) % levels:
            raise ValueError(f"{len(widths)} encoder blocks do not divide into the UNet's {levels} levels")
        per_level = len(widths) // levels
        encoder = cls(tuple(widths[::per_level]), per_level, state_dict["conv_in.weight"].shape[1])
        encoder.load_state_dict(state_dict)
        return encoder

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        frames = latents.shape[2]
        x = self.conv_in(rearrange(latents, "b c f h w -> (b f) c h w"))
        position = sinusoidal_table(frames, self.widths[0])[0].to(x)  # f d
        x = x + self.position_scale * repeat(position, "f d -> (b f) d 1 1", b=latents.shape[0])
        features = []
        for level in range(len(self.widths)):
            for block in self.body[level * self.blocks_per_level : (level + 1) * self.blocks_per_level]:
                x = block(x)
            features.append(x)
        return features
