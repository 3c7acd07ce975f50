"""Masked video-to-video as diffusers' `StableDiffusionInpaintPipeline` computes it, one frame after another in
the clip's batch.

A mask is white (1) where the clip is redrawn and black (0) where the input is kept. It is binarized at 0.5
in pixels and taken to the latents' size by nearest-neighbour interpolation. With an image UNet of 4 input
channels, after every step the latents outside the mask are replaced by the input's own latents noised to
the next step's timestep with the clip's initial noise (the input's clean latents after the last step; an
extension leaves its overlap to the model in the last, least noisy steps instead, `KeptLatents.release`). An
inpainting UNet (9 input channels, SD1.5-inpainting) sees the mask and the masked input's latents beside
its latents at every step instead, and keeps the input itself.

In pixels the decoder spreads the redrawn area a little into the kept one, so the finished clip has the input's
own pixels pasted back outside the mask, as A1111 and diffusers' `apply_overlay` do: the binarized mask blurred
by a Gaussian of `mask_blur` pixels (PIL's, as diffusers' mask processor blurs it; by default 4 at 512², A1111's
default, in proportion to the clip's size) weighs the new frames, one minus it the input. An extended clip goes on
in the same spirit (`carried`): where its new frames still show what the last kept frame showed, they show it with
the input's own pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from einops import rearrange
from PIL import Image, ImageFilter

from animatediff.control.init_latents import encode_frames

INPAINT_CHANNELS = 9  # an inpainting UNet's input: 4 latents, the mask, 4 latents of the masked input
STILL = 8 / 255  # a new frame's pixel this far from the decoded last kept frame's no longer shows it (at 0: fully)


def binarized(mask: torch.Tensor) -> torch.Tensor:
    """A mask (f 1 H W, in [0, 1]) as diffusers' mask processor leaves it: 1 where it is at least 0.5, else 0."""
    return (mask >= 0.5).to(mask.dtype)


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """A pixel mask (f 1 H W) at the latents' size, as one clip (1 1 f h w): nearest-neighbour, as diffusers."""
    height, width = mask.shape[-2] // factor, mask.shape[-1] // factor
    small = F.interpolate(binarized(mask.float()), size=(height, width))
    return rearrange(small, "f 1 h w -> 1 1 f h w")


def masked_frames(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The input frames (f 3 H W in [0, 1]) with the redrawn area grey (0.5, which is 0 in the VAE's [-1, 1]),
    what diffusers encodes for an inpainting UNet."""
    return torch.where(binarized(mask) > 0, torch.full_like(frames, 0.5), frames)


def overlay_weight(mask: torch.Tensor, blur: float) -> torch.Tensor:
    """How much of each pixel comes from the new frames when the input is pasted back (f 1 H W in [0, 1]): the
    binarized mask in 8-bit levels, blurred by a Gaussian of standard deviation `blur` pixels (0: a hard edge)."""
    levels = (binarized(mask.float()) * 255).round().to(torch.uint8).cpu().numpy()
    if blur > 0:
        blurred = [np.asarray(Image.fromarray(frame[0]).filter(ImageFilter.GaussianBlur(blur))) for frame in levels]
        levels = np.stack(blurred)[:, None]
    return torch.from_numpy(levels.astype(np.float32) / 255)


def pasted(clip: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor, blur: float) -> torch.Tensor:
    """The new frames `clip` (f 3 H W in [0, 1]) with the input `frames` pasted back where `mask` keeps them."""
    weight = overlay_weight(mask, blur).to(clip)
    return weight * clip + (1 - weight) * frames.to(clip)


def carried(new: torch.Tensor, decoded_last: torch.Tensor, input_last: torch.Tensor) -> torch.Tensor:
    """An extension's new frames (f 3 H W in [0, 1]) with the input's own pixels where they still show what the
    last kept frame showed. The decoded last kept frame (3 H W) differs from the input's (`input_last`) by the
    VAE's round trip, which would otherwise jump at the join; that difference is added to each new frame in full
    where the frame's pixel is the decoded last kept frame's (its largest channel difference over its 3×3
    neighbourhood), falling linearly with that difference to nothing at `STILL`: a background or an object that has
    not moved goes on with the input's pixels, what moved is left as the model drew it."""
    changed = F.max_pool2d((new - decoded_last).abs().amax(dim=1, keepdim=True), 3, stride=1, padding=1)
    weight = (1 - changed / STILL).clamp(min=0)
    return (new + weight * (input_last - decoded_last)).clamp(0, 1)


@dataclass(frozen=True)
class KeptLatents:
    """What a masked clip keeps of its input at every step: the input's clean latents and the clip's initial
    noise (each b c f h w), the latent mask (1 1 f h w, 1 = redrawn), the weight of reconstruction guidance
    toward the kept area (0: none; `reconstructed`), and the timestep below which a step leaves the kept area as the
    model drew it (`release`; 0: every step's result is replaced, so the clip ends on the input's own latents)."""

    original: torch.Tensor
    noise: torch.Tensor
    mask: torch.Tensor
    guidance: float = 0.0
    release: int = 0

    def reconstructed(
        self, eps: torch.Tensor, model_input: torch.Tensor, alpha_bar: torch.Tensor, predict, join=lambda x: x
    ) -> torch.Tensor:
        """`eps` (a step's noise prediction, b c f h w) with reconstruction guidance (Ho et al. 2022, "Video
        Diffusion Models", 3.1): replacing the kept area after each step does not tell the redrawn area what the
        kept one is, so the redrawn area's prediction also moves down the gradient of how far the model's own
        estimate of the clean kept area is from the input's, with the weight `guidance` on the squared distance
        averaged over the kept frames (summed over the kept area, divided by its size in frames). `model_input`
        (1 c f h w) is the step's scaled latents and `predict(x)` the conditional noise prediction for `x`, through
        which the gradient is taken; `alpha_bar` is the step's ᾱ; `join` sums the gradient over the processes that
        share the windows."""
        if not self.guidance:
            return eps
        kept = 1 - self.mask
        with torch.enable_grad():
            latents = model_input.detach().float().requires_grad_(True)
            estimate = (latents - (1 - alpha_bar).sqrt() * predict(latents).float()) / alpha_bar.sqrt()
            frames = kept.sum() / (kept.shape[-1] * kept.shape[-2])
            distance = (kept * (estimate - self.original)).square().sum() / frames
            (gradient,) = torch.autograd.grad(distance, latents)
        gradient = join(gradient)
        step = self.guidance * alpha_bar / (2 * (1 - alpha_bar).sqrt())
        return eps + (step * gradient * self.mask).to(eps.dtype)

    def blend(
        self,
        latents: torch.Tensor,
        scheduler: SchedulerMixin,
        timestep: torch.Tensor,
        next_timestep: torch.Tensor | None,
    ) -> torch.Tensor:
        """`latents` after the step from `timestep`, outside the mask replaced by the input noised to `next_timestep`
        (None: the last step was run, the input itself), unless the step started below `release`: the steps that
        do finish the kept area with the rest of the clip."""
        if timestep < self.release:
            return latents
        kept = self.original
        if next_timestep is not None:
            kept = scheduler.add_noise(self.original, self.noise, next_timestep.reshape(1))
        mask = self.mask.to(latents.dtype)
        return (1 - mask) * kept.to(latents.dtype) + mask * latents


@dataclass(frozen=True)
class InpaintInput:
    """An inpainting UNet's extra input channels for the clip: the latent mask (1 1 f h w) and the masked input's
    latents (1 4 f h w)."""

    mask: torch.Tensor
    masked_latents: torch.Tensor

    @classmethod
    def encode(
        cls, vae: AutoencoderKL, frames: torch.Tensor, mask: torch.Tensor, factor: int, generator: torch.Generator
    ) -> InpaintInput:
        """The masked frames through the VAE (a posterior sample from `generator`, drawn after the clip's noise
        as diffusers draws it)."""
        latents = encode_frames(vae, masked_frames(frames, mask), generator).float()
        return cls(latent_mask(mask, factor).to(latents.device), rearrange(latents, "f c h w -> 1 c f h w"))

    def beside(self, model_input: torch.Tensor, frame_index: torch.Tensor | None = None) -> torch.Tensor:
        """`model_input` (b 4 f h w, the guidance batch; the clip's frames `frame_index`, None: all) with the
        mask and the masked latents of those frames appended: b 9 f h w."""
        extra = torch.cat([self.mask, self.masked_latents], dim=1).to(model_input)
        if frame_index is not None:
            extra = extra[:, :, frame_index.to(extra.device)]
        return torch.cat([model_input, extra.expand(model_input.shape[0], -1, -1, -1, -1)], dim=1)
