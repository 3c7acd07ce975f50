"""The training config (`animatediff train CONFIG.yaml`), validated completely before any model loads.

    stage: motion_module          # any name of `stages.STAGES`: vae | text_to_image | image_finetune
                                  # | image_lora | domain_adapter | motion_module | motion_lora
                                  # | controlnet | distill
    output_dir: runs/motion
    base: models/stable-diffusion-v1-5          # diffusers folder
    domain_adapter: v3_sd15_adapter.ckpt        # stages 2-3: merged at scale 1 and frozen (optional)
    motion_module: mm.safetensors               # stage 3: the module to adapt; stage 2: optional start;
                                                # distill: the teacher's module (the student starts from it)
    motion_module_version: v3                   # stage 2, fresh module: a trainable release of `families`
    motion_module_kind: transformer             # stage 2: or convolution (the paper's ablation)
    position_encoding: true                     # stage 2, fresh module: false drops the sinusoidal table
    lora_rank: 64                               # stages 1 and 3
    data: {format: webvid, csv: results.csv, path: videos/, frames: 16, stride: 4, size: 256}
    prior_data: {format: jsonl, path: class_images/}   # image_finetune, image_lora: DreamBooth's prior
                                                       # preservation (frames, stride, size as in data)
    train: {steps: 1000, batch_size: 1, learning_rate: 1.0e-4, checkpoint_every: 100, ...}
    validation: {every: 100, prompts: [...], seeds: [42], steps: 25, guidance_scale: 8.0}

Relative paths resolve against the config file's folder. Errors name the field.
`mixed_precision: no` may be written unquoted (YAML reads it as false).
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path

import yaml

from animatediff.errors import ConfigError, one_line
from animatediff.families import DEFAULT, FAMILIES
from animatediff.training.data import VideoItem, jsonl_items, webvid_items
from animatediff.training.settings import (
    DEFAULT_NOISE_SCHEDULER,
    DataConfig,
    TrainConfig,
    TrainSettings,
    ValidationSettings,
)
from animatediff.training.stages import STAGES

MIXED_PRECISION = ("no", "fp16", "bf16")


def _build(cls, values, name: str):
    """A settings dataclass from a mapping, rejecting unknown fields and wrong types by name."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"'{name}': expected a mapping of settings, got {values!r}.")
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"'{name}': unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"'{name}.{key}': expected true or false, got {value!r}.")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"'{name}.{key}': expected a number, got {value!r}.")
    return cls(**values)


def _path(value, folder: Path, name: str, required: bool = False) -> Path | None:
    if value in (None, ""):
        if required:
            raise ConfigError(f"'{name}' is required.")
        return None
    path = Path(value) if Path(value).is_absolute() else folder / value
    if not path.exists():
        raise ConfigError(f"'{name}': {path} does not exist.")
    return path


def _check_positive(settings, names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        if getattr(settings, name) < 1:
            raise ConfigError(f"'{prefix}.{name}' must be at least 1; got {getattr(settings, name)}.")


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"training config {path}: cannot be read as text ({one_line(error)}).") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"training config {path}: not valid YAML ({one_line(error)}).") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"training config {path}: expected a mapping of settings.")
    top = {f.name for f in fields(TrainConfig)} - {"items", "prior_items"}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(
            f"training config {path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(top))}."
        )
    if raw.get("stage") not in STAGES:
        raise ConfigError(f"'stage': expected one of {', '.join(STAGES)}; got {raw.get('stage')!r}.")
    return raw


def _train_settings(raw: dict, steps: int | None) -> TrainSettings:
    values = raw.get("train") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"'train': expected a mapping of settings, got {values!r}.")
    values = {"learning_rate": STAGES[raw["stage"]].default_learning_rate, **values}
    if values.get("mixed_precision") is False:  # YAML 1.1 reads an unquoted `no` as false
        values["mixed_precision"] = "no"
    if steps is not None:
        values["steps"] = steps
    return _build(TrainSettings, values, "train")


def _data_configs(raw: dict) -> tuple[DataConfig, DataConfig | None]:
    stage = STAGES[raw["stage"]]
    data_values = raw.get("data") or {}
    if not isinstance(data_values, dict):
        raise ConfigError(f"'data': expected a mapping of settings, got {data_values!r}.")
    data = _build(DataConfig, {"frames": 16 if stage.clips else 1, **data_values}, "data")
    if raw.get("prior_data") is None:
        return data, None
    if not stage.takes_prior:
        takers = " and ".join(name for name, kind in STAGES.items() if kind.takes_prior)
        raise ConfigError(f"'prior_data': only the {takers} stages take it; this is {stage.name}.")
    shared = {name: getattr(data, name) for name in ("frames", "stride", "size")}
    return data, _build(DataConfig, {**shared, **(raw["prior_data"] or {})}, "prior_data")


def load_train_config(path: str | os.PathLike, steps: int | None = None) -> TrainConfig:
    """Read and check a training config: every path, the dataset listing, sizes and choices. `steps`
    replaces the config's `train.steps` (a shorter run of the same config)."""
    path = Path(path)
    raw = _read_yaml(path)
    folder = path.parent
    data, prior_data = _data_configs(raw)
    output_dir = Path(raw.get("output_dir") or f"runs/{raw['stage']}")
    config = TrainConfig(
        stage=raw["stage"],
        output_dir=output_dir if output_dir.is_absolute() else folder / output_dir,
        base=_path(raw.get("base"), folder, "base", required=True),
        data=data,
        train=_train_settings(raw, steps),
        validation=_build(ValidationSettings, raw.get("validation"), "validation"),
        domain_adapter=_path(raw.get("domain_adapter"), folder, "domain_adapter"),
        motion_module=_path(raw.get("motion_module"), folder, "motion_module"),
        motion_module_version=raw.get("motion_module_version", DEFAULT.name),
        motion_module_kind=raw.get("motion_module_kind", "transformer"),
        position_encoding=raw.get("position_encoding", True),
        lora_rank=raw.get("lora_rank"),
        noise_scheduler={**DEFAULT_NOISE_SCHEDULER, **(raw.get("noise_scheduler") or {})},
        prior_data=prior_data,
    )
    _check(config)
    STAGES[config.stage].check(config)
    config.items = _dataset_items(config.data, folder)
    if config.prior_data is not None:
        config.prior_items = _dataset_items(config.prior_data, folder, "prior_data")
    return config


def _check_model(config: TrainConfig) -> None:
    trainable = [name for name, release in FAMILIES.items() if release.trainable]
    if config.motion_module_version not in trainable:
        raise ConfigError(
            f"'motion_module_version': expected one of {', '.join(trainable)}; got {config.motion_module_version!r}."
        )
    if config.motion_module_kind not in ("transformer", "convolution"):
        raise ConfigError(
            f"'motion_module_kind': expected transformer or convolution; got {config.motion_module_kind!r}."
        )
    if not isinstance(config.position_encoding, bool):
        raise ConfigError(f"'position_encoding': expected true or false; got {config.position_encoding!r}.")
    if config.lora_rank is not None and (not isinstance(config.lora_rank, int) or config.lora_rank < 1):
        raise ConfigError(f"'lora_rank': expected a whole number ≥ 1; got {config.lora_rank!r}.")


def _check_training(settings: TrainSettings) -> None:
    if settings.loss not in ("epsilon", "v"):
        raise ConfigError(f"'train.loss': expected epsilon or v; got {settings.loss!r}.")
    if settings.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"'train.mixed_precision': expected no, fp16 or bf16; got {settings.mixed_precision!r}.")
    if settings.mixed_precision == "fp16" and not _cuda_available():
        raise ConfigError(
            "'train.mixed_precision': fp16 needs a CUDA GPU and there is none here; use bf16 (fast on "
            "CPUs with AMX or AVX-512 BF16) or no."
        )
    _check_positive(settings, ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "solver_steps"), "train")
    if settings.prior_loss_weight < 0:
        raise ConfigError(f"'train.prior_loss_weight' must be at least 0; got {settings.prior_loss_weight}.")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _check(config: TrainConfig) -> None:
    _check_model(config)
    _check_training(config.train)
    _check_positive(config.data, ("frames", "stride", "size"), "data")
    if config.data.size % 8:
        raise ConfigError(f"'data.size' must be a multiple of 8; got {config.data.size}.")


def _dataset_items(data: DataConfig, folder: Path, name: str = "data") -> list[VideoItem]:
    if data.format == "webvid":
        csv_path = _path(data.csv, folder, f"{name}.csv", required=True)
        videos = _path(data.path, folder, f"{name}.path", required=True)
        items = webvid_items(csv_path, videos)
    elif data.format == "jsonl":
        items = jsonl_items(_path(data.path, folder, f"{name}.path", required=True))
    else:
        raise ConfigError(f"'{name}.format': expected webvid or jsonl; got {data.format!r}.")
    if not any(item.path.is_file() for item in items):
        raise ConfigError(
            f"'{name}': none of the {len(items)} listed videos exists (e.g. {items[0].path if items else '-'})."
        )
    return items
