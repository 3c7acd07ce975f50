"""The training losses: ε-prediction MSE on video latents (optionally min-SNR-γ or v weighted),
DreamBooth's prior preservation, latent consistency distillation, and the autoencoder's reconstruction
loss."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler
from einops import rearrange
from torch import nn

from animatediff.image_models import Components
from animatediff.pipeline import encode_text
from animatediff.training.settings import TrainSettings

SIGMA_DATA, TIMESTEP_SCALING = 0.5, 10.0  # LCM's consistency boundary conditions (diffusers' LCMScheduler's too)
KL_WEIGHT = 1e-5  # the weight of the autoencoder's KL term (per latent element): light, so reconstruction leads


def sample_noise(seeds: list[int], shapes: tuple[tuple[int, ...], ...], timesteps: int):
    """Per-sample draws from each sample's own seed: VAE posterior noise, diffusion noise, timestep."""
    draws = [[], [], []]
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        draws[0].append(torch.randn(shapes[0], generator=generator))
        draws[1].append(torch.randn(shapes[1], generator=generator))
        draws[2].append(torch.randint(0, timesteps, (), generator=generator))
    return torch.stack(draws[0]), torch.stack(draws[1]), torch.stack(draws[2])


@torch.no_grad()
def _video_latents(components: Components, noise_scheduler: DDPMScheduler, batch: dict, device):
    """Video latents of the batch's clips (`pixels`: b f 3 H W in [-1, 1]), with each sample's own noise
    and timestep: (latents, noise, timesteps)."""
    vae = components.vae
    pixels = batch["pixels"].to(device)
    frames = pixels.shape[1]
    posterior = vae.encode(rearrange(pixels, "b f c h w -> (b f) c h w").to(vae.dtype)).latent_dist
    latent_shape = posterior.mean.shape[1:]
    posterior_noise, noise, timesteps = sample_noise(
        batch["seeds"],
        ((frames, *latent_shape), (latent_shape[0], frames, *latent_shape[1:])),
        noise_scheduler.config.num_train_timesteps,
    )
    sampled = posterior.mean + posterior.std * rearrange(posterior_noise.to(device), "b f c h w -> (b f) c h w")
    latents = rearrange(sampled.float(), "(b f) c h w -> b c f h w", f=frames) * vae.config.scaling_factor
    return latents, noise.to(device), timesteps.to(device)


def _noisy_latents(components: Components, noise_scheduler: DDPMScheduler, batch: dict, device):
    """The batch's video latents noised to each sample's own timestep: (noisy latents, noise, timesteps)."""
    latents, noise, timesteps = _video_latents(components, noise_scheduler, batch, device)
    return noise_scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def sample_losses(
    model: nn.Module,
    components: Components,
    noise_scheduler: DDPMScheduler,
    batch: dict,
    device,
    settings: TrainSettings,
) -> torch.Tensor:
    """Each sample's ε-prediction MSE for a batch of clips, min-SNR-γ weighted if `settings.snr_gamma` > 0.

    `settings.loss == "v"` measures each sample's error as a v-prediction model's: the model still
    predicts ε (the base's parameterization), and the v error it implies is the ε error / √ᾱ, so its
    square counts 1 / ᾱ times: the high-noise steps, where a clip's layout and motion are decided and the
    ε error is small, weigh about as much as the rest. (min-SNR-γ is the same weighting in either space.)"""
    noisy, noise, timesteps = _noisy_latents(components, noise_scheduler, batch, device)
    text_encoder = components.text_encoder
    trains_text = any(p.requires_grad for p in text_encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and trains_text):
        text = encode_text(components.tokenizer, text_encoder, batch["captions"])
    prediction = model(noisy, timesteps, text)
    errors = (prediction.float() - noise.float()).pow(2).mean(dim=(1, 2, 3, 4))
    alphas = noise_scheduler.alphas_cumprod.to(device)[timesteps]
    if settings.snr_gamma > 0:
        snr = alphas / (1 - alphas)
        errors = errors * torch.clamp(snr, max=settings.snr_gamma) / snr
    elif settings.loss == "v":
        errors = errors / alphas
    return errors


def boundary_scalings(timesteps: torch.Tensor):
    """A consistency model's skip and output weights at `timesteps` (Song et al. 2023, as LCM scales them and
    diffusers' `LCMScheduler` samples with them): the model is the identity at t = 0."""
    scaled = timesteps.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip.view(-1, 1, 1, 1, 1), c_out.view(-1, 1, 1, 1, 1)


def consistency_losses(
    model: nn.Module,
    components: Components,
    noise_scheduler: DDPMScheduler,
    batch: dict,
    device,
    settings: TrainSettings,
) -> torch.Tensor:
    """Latent consistency distillation (Luo et al. 2023; AnimateLCM for video): each sample's pseudo-Huber
    distance between the student's consistency function at a noised clip and at the point one DDIM step
    of the guided teacher (`settings.teacher_guidance`) takes it to, on a grid of `settings.solver_steps`
    timesteps. The target is the student itself without gradients (no EMA copy: θ⁻ = θ).

    `model(sample, timestep, text, teacher=False)` runs the student, `teacher=True` the frozen teacher."""
    latents, noise, drawn = _video_latents(components, noise_scheduler, batch, device)
    ratio = noise_scheduler.config.num_train_timesteps // settings.solver_steps
    start = (drawn // ratio + 1) * ratio - 1  # the grid: ratio - 1, 2·ratio - 1, …, T - 1
    end = (start - ratio).clamp(min=0)
    noisy = noise_scheduler.add_noise(latents, noise, start)
    alphas = noise_scheduler.alphas_cumprod.to(device)

    def clean(sample, eps, t):
        alpha = alphas[t].view(-1, 1, 1, 1, 1)
        return (sample - (1 - alpha).sqrt() * eps) / alpha.sqrt()

    def consistency(sample, t, text):
        c_skip, c_out = boundary_scalings(t)
        return c_skip * sample + c_out * clean(sample, model(sample, t, text).float(), t)

    with torch.no_grad():
        text = encode_text(components.tokenizer, components.text_encoder, batch["captions"])
        empty = encode_text(components.tokenizer, components.text_encoder, [""] * len(batch["captions"]))
        both = model(torch.cat([noisy, noisy]), torch.cat([start, start]), torch.cat([empty, text]), teacher=True)
        unconditional, conditional = both.float().chunk(2)
        guided = unconditional + settings.teacher_guidance * (conditional - unconditional)
        alpha_end = alphas[end].view(-1, 1, 1, 1, 1)
        previous = alpha_end.sqrt() * clean(noisy, guided, start) + (1 - alpha_end).sqrt() * guided
        target = consistency(previous, end, text)
    prediction = consistency(noisy, start, text)
    huber = 1e-3  # LCM's pseudo-Huber c: L2 for small errors, L1 for large ones
    return (((prediction - target) ** 2 + huber**2).sqrt() - huber).mean(dim=(1, 2, 3, 4))


def prior_preservation_loss(losses: torch.Tensor, instances: int, prior_weight: float) -> torch.Tensor:
    """DreamBooth's loss (Ruiz et al. 2023) for a batch of `instances` personalization samples followed by
    as many prior (class) samples: the mean over the first plus `prior_weight` × the mean over the rest."""
    return losses[:instances].mean() + prior_weight * losses[instances:].mean()


def autoencoder_loss(model: nn.Module, batch: dict, device, contrast_weight: float) -> torch.Tensor:
    """The `vae` stage: L1 reconstruction of single frames plus a light KL term (per latent element).

    With `contrast_weight` c > 0 each pixel's error counts 1 + c·d times, d being its largest channel
    distance (in [-1, 1] units) from the image's median colour: small objects on a plain background
    otherwise carry a few percent of the loss and are learned last (see docs/shapes-model.md)."""
    pixels = rearrange(batch["pixels"].to(device), "b f c h w -> (b f) c h w")
    reconstruction, posterior = model(pixels, batch["seeds"])
    weights = torch.ones_like(pixels[:, :1])
    if contrast_weight > 0:
        median = pixels.flatten(2).median(dim=2).values[:, :, None, None]
        weights = 1 + contrast_weight * (pixels - median).abs().amax(dim=1, keepdim=True)
    error = ((reconstruction - pixels).abs() * weights).mean() / weights.mean()
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    return error + KL_WEIGHT * kl
