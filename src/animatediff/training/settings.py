"""The settings of a training run: plain values that `config` reads from a YAML file and checks, and that the
stages, the losses and the trainer read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from animatediff.families import DEFAULT
from animatediff.training.data import VideoItem

# the noise schedule the official modules were trained with (the release's DDIM, as a DDPM for training)
DEFAULT_NOISE_SCHEDULER = {
    "num_train_timesteps": 1000,
    **{key: DEFAULT.scheduler[key] for key in ("beta_start", "beta_end", "beta_schedule")},
}


@dataclass
class DataConfig:
    format: str = "webvid"  # or jsonl
    path: Path | None = None  # the video folder (jsonl: the folder holding captions.jsonl)
    csv: Path | None = None
    frames: int = 16
    stride: int = 4
    size: int = 256
    empty_caption_rate: float = 0.1


@dataclass
class TrainSettings:
    steps: int = 1000
    batch_size: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    mixed_precision: str = "no"  # fp16 | bf16
    gradient_checkpointing: bool = False
    seed: int = 42
    snr_gamma: float = 0.0  # > 0: min-SNR-γ loss weighting (Hang et al. 2023); 0: plain ε MSE
    loss: str = "epsilon"  # or v: the ε error measured as a v-prediction model's (÷ ᾱ: high noise counts more)
    prior_loss_weight: float = 1.0  # with prior_data: the weight of the prior images' loss (DreamBooth's λ)
    contrast_weight: float = 0.0  # vae stage: extra weight on pixels far from the image's median colour
    train_text_encoder: bool = True  # text_to_image stage: False keeps it frozen (as SD kept its CLIP encoder)
    decoder_only: bool = False  # vae stage: train the decoder alone, keeping the latent space the UNet knows
    teacher_guidance: float = 7.5  # distill stage: the teacher's classifier-free guidance
    solver_steps: int = 50  # distill stage: the teacher's DDIM grid (one solver step skips 1000 / this timesteps)
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    num_workers: int = 0


@dataclass
class ValidationSettings:
    every: int = 0  # 0: no validation clips
    prompts: list[str] = field(default_factory=list)
    negative_prompt: str = ""
    seeds: list[int] = field(default_factory=lambda: [42])
    steps: int = 25
    guidance_scale: float = 8.0
    frames: int | None = None  # default: the training clip length
    fps: float = 8.0


@dataclass
class TrainConfig:
    stage: str
    output_dir: Path
    base: Path
    data: DataConfig
    train: TrainSettings = field(default_factory=TrainSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    domain_adapter: Path | None = None
    motion_module: Path | None = None
    motion_module_version: str = DEFAULT.name
    motion_module_kind: str = "transformer"
    position_encoding: bool = True
    lora_rank: int | None = None
    noise_scheduler: dict = field(default_factory=lambda: dict(DEFAULT_NOISE_SCHEDULER))
    prior_data: DataConfig | None = None  # images of the class the personalized ones belong to, as the base draws it
    items: list[VideoItem] = field(default_factory=list, repr=False)  # the dataset's listing, read at validation
    prior_items: list[VideoItem] = field(default_factory=list, repr=False)
