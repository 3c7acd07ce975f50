"""Video-to-video as diffusers' `AnimateDiffVideoToVideoPipeline` computes it: the input frames through
the VAE (a posterior sample drawn from the clip's generator), scaled, noised with the scheduler's
`add_noise` to the first timestep that `strength` leaves, and denoised from there. An init image takes
the same road from latents that blend it (and a last image) into random ones frame by frame."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from einops import rearrange

ENCODE_CHUNK = 16  # frames through the VAE encoder at once (diffusers' default decode_chunk_size)


def first_step(steps: int, strength: float) -> int:
    """The index of the first of `steps` timesteps that a clip at `strength` is denoised from."""
    kept = min(int(steps * strength), steps)
    return max(steps - kept, 0)


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Frames (f 3 H W in [0, 1]) to scaled latents (f c h w): a sample of each frame's posterior, drawn
    from `generator` a chunk of frames at a time."""
    pixels = frames.to(device=vae.device, dtype=vae.dtype) * 2 - 1
    latents = [vae.encode(part).latent_dist.sample(generator) for part in pixels.split(ENCODE_CHUNK)]
    return torch.cat(latents) * vae.config.scaling_factor


@torch.no_grad()
def image_latents(vae: AutoencoderKL, init, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Scaled frame latents (f c h w) for an `InitImage`: each frame the weighted first (and last) image's
    latents (posterior samples from `generator`) plus random latents for the rest of the weight."""
    images = torch.stack([init.first] + ([init.last] if init.last is not None else []))
    encoded = encode_frames(vae, images, generator).float()
    noise = torch.randn((frames, *encoded.shape[1:]), generator=generator, dtype=torch.float32).to(encoded.device)
    first, last = (w.to(encoded.device)[:, None, None, None] for w in init.weights(frames))
    blend = first * encoded[0] + (last * encoded[1] if init.last is not None else 0)
    return blend + (1 - first - last) * noise


def noised_latents(
    latents: torch.Tensor, scheduler: SchedulerMixin, timestep: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled frame latents (f c h w) noised to `timestep` with noise drawn from `generator` in frame-major
    order, as one clip (1 c f h w), and that noise in the same layout (masked clips noise their input with it
    again at every step)."""
    noise = torch.randn((1, *latents.shape), generator=generator, dtype=torch.float32).to(latents.device)
    noised = scheduler.add_noise(latents[None].float(), noise, timestep.reshape(1))
    clip = "b f c h w -> b c f h w"
    return rearrange(noised, clip).to(latents.dtype), rearrange(noise, clip)
