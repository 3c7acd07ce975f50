"""The training loop shared by all stages: ε-prediction MSE on video latents, with `accelerate`.

One process or many (`accelerate launch`): each process takes its share of every global batch and
gradients are averaged, so N processes train exactly like one process with the whole global batch.
Checkpoints (trained weights, optimizer, LR schedule, RNG states, step) are written to a temporary
folder and renamed into place, so a run killed at any moment leaves only loadable checkpoints;
`resume` continues from the newest one.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from einops import rearrange
from safetensors.torch import load_file
from tqdm.auto import tqdm

from animatediff.errors import ConfigError
from animatediff.export import write_video
from animatediff.files import atomic_path
from animatediff.formats import save_state_dict
from animatediff.pipeline import AnimateDiffPipeline, encode_text, to_uint8
from animatediff.training.config import TrainConfig
from animatediff.training.data import RunSampler, VideoClips, collate, join_batches
from animatediff.training.stages import RESULT_NAMES, Stage, build_stage

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders start with a dot and are not listed)."""
    folder = output_dir / "checkpoints"
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def save_checkpoint(output_dir: Path, step: int, stage: Stage, optimizer, lr_scheduler, keep: int) -> Path:
    target = output_dir / "checkpoints" / f"step-{step:07d}"
    with atomic_path(target, directory=True) as temporary:
        save_state_dict(stage.model.trainable.state_dict(), temporary / "trainable.safetensors")
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }
        torch.save(state, temporary / "state.pt")
    for old in checkpoint_folders(output_dir)[:-keep]:
        shutil.rmtree(old)
    return target


def load_checkpoint(folder: Path, stage: Stage, optimizer, lr_scheduler) -> int:
    """Restore everything a checkpoint holds; returns the number of steps already done."""
    stage.model.trainable.load_state_dict(load_file(folder / "trainable.safetensors"))
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(_as_tuples(state["python_rng"]))
    return int(state["step"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _clear_temporaries(output_dir: Path) -> None:
    folder = output_dir / "checkpoints"
    for leftover in folder.glob(".step-*") if folder.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# One step


def _sample_noise(seeds: list[int], shapes: tuple[tuple[int, ...], ...], timesteps: int):
    """Per-sample draws from each sample's own seed: VAE posterior noise, diffusion noise, timestep."""
    draws = [[], [], []]
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        draws[0].append(torch.randn(shapes[0], generator=generator))
        draws[1].append(torch.randn(shapes[1], generator=generator))
        draws[2].append(torch.randint(0, timesteps, (), generator=generator))
    return torch.stack(draws[0]), torch.stack(draws[1]), torch.stack(draws[2])


def training_loss(model, stage: Stage, noise_scheduler: DDPMScheduler, batch: dict, device,
                  snr_gamma: float = 0.0, loss: str = "epsilon") -> torch.Tensor:  # fmt: skip
    """The mean of `sample_losses` over the batch."""
    return sample_losses(model, stage, noise_scheduler, batch, device, snr_gamma, loss).mean()


def prior_preservation_loss(losses: torch.Tensor, instances: int, prior_weight: float) -> torch.Tensor:
    """DreamBooth's loss (Ruiz et al. 2023) for a batch of `instances` personalization samples followed by
    as many prior (class) samples: the mean over the first plus `prior_weight` × the mean over the rest."""
    return losses[:instances].mean() + prior_weight * losses[instances:].mean()


def sample_losses(model, stage: Stage, noise_scheduler: DDPMScheduler, batch: dict, device,
                  snr_gamma: float = 0.0, loss: str = "epsilon") -> torch.Tensor:  # fmt: skip
    """Each sample's ε-prediction MSE for a batch of clips (`pixels`: b f 3 H W in [-1, 1]), min-SNR-γ
    weighted if γ > 0.

    `loss="v"` measures each sample's error as a v-prediction model's: the model still predicts ε (the
    base's parameterization), and the v error it implies is the ε error / √ᾱ, so its square counts
    1 / ᾱ times: the high-noise steps, where a clip's layout and motion are decided and the ε error is
    small, weigh about as much as the rest. (min-SNR-γ is the same weighting in either space.)"""
    vae, text_encoder, tokenizer = stage.components.vae, stage.components.text_encoder, stage.components.tokenizer
    pixels = batch["pixels"].to(device)
    frames = pixels.shape[1]
    with torch.no_grad():
        posterior = vae.encode(rearrange(pixels, "b f c h w -> (b f) c h w").to(vae.dtype)).latent_dist
        latent_shape = posterior.mean.shape[1:]
        posterior_noise, noise, timesteps = _sample_noise(
            batch["seeds"], ((frames, *latent_shape), (latent_shape[0], frames, *latent_shape[1:])),
            noise_scheduler.config.num_train_timesteps,
        )  # fmt: skip
        sampled = posterior.mean + posterior.std * rearrange(posterior_noise.to(device), "b f c h w -> (b f) c h w")
        latents = rearrange(sampled.float(), "(b f) c h w -> b c f h w", f=frames) * vae.config.scaling_factor
        noise, timesteps = noise.to(device), timesteps.to(device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    trains_text = any(p.requires_grad for p in text_encoder.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and trains_text):
        text = encode_text(tokenizer, text_encoder, batch["captions"])
    prediction = model(noisy, timesteps, text)
    errors = (prediction.float() - noise.float()).pow(2).mean(dim=(1, 2, 3, 4))
    alphas = noise_scheduler.alphas_cumprod.to(device)[timesteps]
    if snr_gamma > 0:
        snr = alphas / (1 - alphas)
        errors = errors * torch.clamp(snr, max=snr_gamma) / snr
    elif loss == "v":
        errors = errors / alphas
    return errors


def autoencoder_loss(model, batch: dict, device, contrast_weight: float = 0.0, kl_weight: float = 1e-5):
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
    return error + kl_weight * kl


# ---------------------------------------------------------------------------------------------------
# Validation clips


@torch.no_grad()
def write_validation(config: TrainConfig, stage: Stage, video_unet, step: int) -> None:
    settings = config.validation
    pipeline = AnimateDiffPipeline(video_unet, stage.components.vae, stage.components.text_encoder,
                                   stage.components.tokenizer)  # fmt: skip
    frames = settings.frames or config.data.frames
    for index, prompt in enumerate(settings.prompts):
        for seed in settings.seeds:
            video = pipeline.generate(prompt, negative_prompt=settings.negative_prompt, num_frames=frames,
                                      height=config.data.size, width=config.data.size, steps=settings.steps,
                                      guidance_scale=settings.guidance_scale, seed=seed, progress=False)  # fmt: skip
            path = config.output_dir / "validation" / f"step-{step:07d}-{index:02d}-{seed}.gif"
            write_video(
                to_uint8(video), path, fps=settings.fps, settings={"prompt": prompt, "seed": seed, "step": step}
            )


# ---------------------------------------------------------------------------------------------------
# The run


def _check_ranks_agree(accelerator: Accelerator, stage: Stage) -> None:
    """With several processes, the trained weights must be identical everywhere; say so, or fail."""
    if accelerator.num_processes == 1:
        return
    flat = torch.cat([p.detach().double().flatten() for p in stage.model.trainable.parameters()])
    fingerprint = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, dtype=flat.dtype)).sum()])
    gathered = accelerator.gather(fingerprint.to(accelerator.device)[None]).cpu()
    if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
        raise RuntimeError(f"trained weights differ between processes: {gathered.tolist()}")
    if accelerator.is_main_process:
        log.info("trained weights identical on all %d processes", accelerator.num_processes)


@dataclass
class RunResult:
    result: Path  # the saved adapter, motion module, MotionLoRA or UNet
    stage: Stage  # the models as trained
    steps: int  # steps run in this call (after any resume)
    seconds: float
    skipped: list[str]  # videos skipped as unreadable or too short


def _batches(items, data, settings, seed: int, start: int, accelerator: Accelerator):
    """This process's batches of `items` read as `data` says, from step `start + 1` on."""
    clips = VideoClips(items, data.frames, data.stride, data.size, data.empty_caption_rate)
    sampler = RunSampler(len(clips), settings.batch_size, seed, start, accelerator.process_index,
                         accelerator.num_processes)  # fmt: skip
    return iter(torch.utils.data.DataLoader(clips, batch_sampler=sampler, collate_fn=collate,
                                            num_workers=settings.num_workers))  # fmt: skip


def train(config: TrainConfig, resume: bool = False) -> RunResult:
    """Run (or continue) a training stage and save its result in the official layout."""
    settings = config.train
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; let successive single-process runs differ
        AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, cpu=not torch.cuda.is_available())
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    stage = build_stage(config)
    autoencoder = config.stage == "vae"
    if settings.gradient_checkpointing:
        (stage.model.trainable if autoencoder else stage.model.video_unet.unet).enable_gradient_checkpointing()
    trainable = [p for p in stage.model.trainable.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError(f"stage {config.stage}: nothing to train (no layers matched).")
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    lr_scheduler = get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=settings.lr_warmup_steps,
                                 num_training_steps=settings.steps)  # fmt: skip
    start = 0
    if resume and checkpoint_folders(config.output_dir):
        _clear_temporaries(config.output_dir)
        start = load_checkpoint(checkpoint_folders(config.output_dir)[-1], stage, optimizer, lr_scheduler)
        log.info("resuming after step %d", start)
    frozen_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(settings.mixed_precision, torch.float32)
    for frozen in (stage.components.vae, stage.components.text_encoder):
        frozen.to(accelerator.device)
        if frozen_dtype != torch.float32 and not any(p.requires_grad for p in frozen.parameters()):
            frozen.to(dtype=frozen_dtype)
    model, optimizer = accelerator.prepare(stage.model, optimizer)
    batches = _batches(config.items, config.data, settings, settings.seed, start, accelerator)
    prior_batches = None
    if config.prior_items:  # its own permutation and noise draws, advanced step by step like the data's
        prior_batches = _batches(config.prior_items, config.prior_data, settings, settings.seed + 1, start, accelerator)
    noise_scheduler = DDPMScheduler(**config.noise_scheduler)
    skipped: set[str] = set()
    progress = tqdm(total=settings.steps, initial=start, desc=config.stage, disable=not accelerator.is_main_process)
    model.train()
    started = time.perf_counter()
    for step in range(start + 1, settings.steps + 1):
        batch = next(batches)
        skipped.update(batch["skipped"])
        if autoencoder:
            loss = autoencoder_loss(model, batch, accelerator.device, settings.contrast_weight)
        elif prior_batches is not None:
            prior_batch = next(prior_batches)
            skipped.update(prior_batch["skipped"])
            losses = sample_losses(model, stage, noise_scheduler, join_batches(batch, prior_batch),
                                   accelerator.device, settings.snr_gamma, settings.loss)  # fmt: skip
            loss = prior_preservation_loss(losses, len(batch["seeds"]), settings.prior_loss_weight)
        else:
            loss = training_loss(
                model, stage, noise_scheduler, batch, accelerator.device, settings.snr_gamma, settings.loss
            )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}", refresh=False)
        progress.update(1)  # redraws at most ten times a second (the postfix alone would redraw every step)
        if step % settings.checkpoint_every == 0 and accelerator.is_main_process:
            save_checkpoint(config.output_dir, step, stage, optimizer, lr_scheduler, settings.keep_checkpoints)
        validate = config.validation.every and step % config.validation.every == 0 and not autoencoder
        if validate and accelerator.is_main_process:
            with accelerator.autocast():
                write_validation(config, stage, accelerator.unwrap_model(model).video_unet, step)
        accelerator.wait_for_everyone()
    progress.close()
    _check_ranks_agree(accelerator, stage)
    result = config.output_dir / RESULT_NAMES[config.stage]
    if accelerator.is_main_process:
        stage.save(result)
        if skipped:
            log.warning("skipped %d unreadable or too-short videos: %s", len(skipped), ", ".join(sorted(skipped)))
        log.info("saved %s", result)
    accelerator.wait_for_everyone()
    return RunResult(result, stage, settings.steps - start, time.perf_counter() - started, sorted(skipped))
