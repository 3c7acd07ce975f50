"""The training loop shared by all stages (each stage's own model, loss and result: `stages`), with `accelerate`.

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
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file
from tqdm.auto import tqdm

from animatediff.errors import ConfigError
from animatediff.export import write_video
from animatediff.files import atomic_path, holds_only
from animatediff.formats import save_state_dict
from animatediff.pipeline import AnimateDiffPipeline, to_uint8
from animatediff.training.data import RunSampler, VideoClips, collate, join_batches
from animatediff.training.settings import TrainConfig, TrainSettings
from animatediff.training.stages import TrainingStage, build_stage

log = logging.getLogger(__name__)
CHECKPOINT = holds_only("trainable.safetensors", "state.pt")  # a checkpoint folder as `save_checkpoint` writes it


# ---------------------------------------------------------------------------------------------------
# Checkpoints


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders start with a dot and are not listed)."""
    folder = output_dir / "checkpoints"
    return sorted(folder.glob("step-*")) if folder.is_dir() else []


def save_checkpoint(output_dir: Path, step: int, stage: TrainingStage, optimizer, lr_scheduler, keep: int) -> Path:
    target = output_dir / "checkpoints" / f"step-{step:07d}"
    with atomic_path(target, directory=True, replaceable=CHECKPOINT) as temporary:
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


def load_checkpoint(folder: Path, stage: TrainingStage, optimizer, lr_scheduler) -> int:
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
# Validation clips


@torch.no_grad()
def write_validation(config: TrainConfig, stage: TrainingStage, video_unet, step: int) -> None:
    settings = config.validation
    pipeline = AnimateDiffPipeline(
        video_unet, stage.components.vae, stage.components.text_encoder, stage.components.tokenizer
    )
    frames = settings.frames or config.data.frames
    for index, prompt in enumerate(settings.prompts):
        for seed in settings.seeds:
            video = pipeline.generate(
                prompt,
                negative_prompt=settings.negative_prompt,
                num_frames=frames,
                height=config.data.size,
                width=config.data.size,
                steps=settings.steps,
                guidance_scale=settings.guidance_scale,
                seed=seed,
                progress=False,
            )
            path = config.output_dir / "validation" / f"step-{step:07d}-{index:02d}-{seed}.gif"
            write_video(
                to_uint8(video), path, fps=settings.fps, settings={"prompt": prompt, "seed": seed, "step": step}
            )


# ---------------------------------------------------------------------------------------------------
# The run


def _check_ranks_agree(accelerator: Accelerator, stage: TrainingStage) -> None:
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
    result: Path  # the saved adapter, motion module, MotionLoRA, UNet or model folder
    stage: TrainingStage  # the models as trained
    steps: int  # steps run in this call (after any resume)
    seconds: float
    skipped: list[str]  # videos skipped as unreadable or too short


class StepBatches:
    """This process's batch for each step from `start + 1` on: the data's samples, then (for a stage that
    keeps the base's prior) as many class images, drawn by a sampler of their own."""

    def __init__(self, config: TrainConfig, start: int, accelerator: Accelerator):
        settings = config.train
        self.data = _batches(config.items, config.data, settings, settings.seed, start, accelerator)
        self.prior = None
        if config.prior_items:  # its own permutation and noise draws, advanced step by step like the data's
            self.prior = _batches(
                config.prior_items, config.prior_data, settings, settings.seed + 1, start, accelerator
            )
        self.skipped: set[str] = set()

    def __next__(self) -> dict:
        batch = next(self.data)
        instances = len(batch["seeds"])
        if self.prior is not None:
            batch = join_batches(batch, next(self.prior))
        self.skipped.update(batch["skipped"])
        return {**batch, "instances": instances}


def _batches(items, data, settings, seed: int, start: int, accelerator: Accelerator):
    """This process's batches of `items` read as `data` says, from step `start + 1` on."""
    clips = VideoClips(items, data.frames, data.stride, data.size, data.empty_caption_rate)
    sampler = RunSampler(
        len(clips), settings.batch_size, seed, start, accelerator.process_index, accelerator.num_processes
    )
    return iter(
        torch.utils.data.DataLoader(clips, batch_sampler=sampler, collate_fn=collate, num_workers=settings.num_workers)
    )


def _accelerator(settings: TrainSettings) -> Accelerator:
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; let successive single-process runs differ
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(mixed_precision=settings.mixed_precision, cpu=not torch.cuda.is_available())


def _optimizer(stage: TrainingStage, settings: TrainSettings):
    trainable = [p for p in stage.model.trainable.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError(f"stage {stage.name}: nothing to train (no layers matched).")
    optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    lr_scheduler = get_scheduler(
        settings.lr_scheduler, optimizer, num_warmup_steps=settings.lr_warmup_steps, num_training_steps=settings.steps
    )
    return trainable, optimizer, lr_scheduler


def _resume(output_dir: Path, stage: TrainingStage, optimizer, lr_scheduler) -> int:
    """Restore the newest checkpoint, if any; the number of steps already done."""
    if not checkpoint_folders(output_dir):
        return 0
    _clear_temporaries(output_dir)
    start = load_checkpoint(checkpoint_folders(output_dir)[-1], stage, optimizer, lr_scheduler)
    log.info("resuming after step %d", start)
    return start


def _cast_frozen(stage: TrainingStage, mixed_precision: str, device) -> None:
    """Move the frozen VAE and text encoder to the device, in the mixed-precision dtype if one is set."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    for frozen in (stage.components.vae, stage.components.text_encoder):
        frozen.to(device)
        if dtype != torch.float32 and not any(p.requires_grad for p in frozen.parameters()):
            frozen.to(dtype=dtype)


def _report(progress, loss: torch.Tensor, lr_scheduler) -> None:
    progress.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}", refresh=False)
    progress.update(1)  # redraws at most ten times a second (the postfix alone would redraw every step)


def _after_step(step: int, config: TrainConfig, stage: TrainingStage, accelerator: Accelerator, state) -> None:
    """Checkpoint and write validation clips when their step comes (`state`: the model, optimizer and LR
    schedule, as prepared)."""
    model, optimizer, lr_scheduler = state
    if accelerator.is_main_process and step % config.train.checkpoint_every == 0:
        save_checkpoint(config.output_dir, step, stage, optimizer, lr_scheduler, config.train.keep_checkpoints)
    video_unet = stage.video_unet(accelerator.unwrap_model(model))
    every = config.validation.every
    if accelerator.is_main_process and video_unet is not None and every and step % every == 0:
        with accelerator.autocast():
            write_validation(config, stage, video_unet, step)
    accelerator.wait_for_everyone()


def train(config: TrainConfig, resume: bool = False) -> RunResult:
    """Run (or continue) a training stage and save its result in the official layout."""
    settings = config.train
    accelerator = _accelerator(settings)
    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    stage = build_stage(config)
    if settings.gradient_checkpointing:
        stage.checkpointed().enable_gradient_checkpointing()
    trainable, optimizer, lr_scheduler = _optimizer(stage, settings)
    start = _resume(config.output_dir, stage, optimizer, lr_scheduler) if resume else 0
    _cast_frozen(stage, settings.mixed_precision, accelerator.device)
    model, optimizer = accelerator.prepare(stage.model, optimizer)
    batches = StepBatches(config, start, accelerator)
    progress = tqdm(total=settings.steps, initial=start, desc=config.stage, disable=not accelerator.is_main_process)
    model.train()
    started = time.perf_counter()
    for step in range(start + 1, settings.steps + 1):
        loss = stage.loss(model, next(batches), accelerator.device)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        _report(progress, loss, lr_scheduler)
        _after_step(step, config, stage, accelerator, (model, optimizer, lr_scheduler))
    progress.close()
    result = _finish(config, stage, accelerator, sorted(batches.skipped))
    return RunResult(result, stage, settings.steps - start, time.perf_counter() - started, sorted(batches.skipped))


def _finish(config: TrainConfig, stage: TrainingStage, accelerator: Accelerator, skipped: list[str]) -> Path:
    """Check the processes agree, then save the result (main process) and report skipped videos."""
    _check_ranks_agree(accelerator, stage)
    result = config.output_dir / stage.result_name
    if accelerator.is_main_process:
        stage.save(result)
        if skipped:
            log.warning("skipped %d unreadable or too-short videos: %s", len(skipped), ", ".join(skipped))
        log.info("saved %s", result)
    accelerator.wait_for_everyone()
    return result
