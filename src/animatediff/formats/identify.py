"""Telling what a checkpoint file or folder is: a motion module, a MotionLoRA, an image LoRA, a whole
Stable Diffusion checkpoint, a SparseCtrl encoder… and in which key layout, from its keys alone.

This is what lets every loader refuse a file of the wrong kind with a sentence saying what it is instead,
and what `animatediff inspect` and the app's model lists show.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import torch

from animatediff.cameractrl import MERGE, encoder_config
from animatediff.errors import CheckpointError
from animatediff.files import read_json
from animatediff.formats.headers import checked_config, motion_module_family
from animatediff.formats.layouts import Layout, diffusers_to_official
from animatediff.formats.safe import checkpoint_keys, is_safetensors, mapped_state_dict, read_state_dict


class Kind(StrEnum):
    """What a checkpoint file or folder holds."""

    MOTION_MODULE = "motion_module"
    MOTION_LORA = "motion_lora"
    DOMAIN_ADAPTER = "domain_adapter"
    SD_CHECKPOINT = "sd_checkpoint"
    IMAGE_LORA = "image_lora"
    IMAGE_MODEL = "image_model"
    IMAGE_UNET = "image_unet"
    SPARSECTRL = "sparsectrl"
    CONTROLNET = "controlnet"
    CAMERACTRL = "cameractrl"
    UNKNOWN = "unknown"


KIND_NAMES = {
    Kind.MOTION_MODULE: "a motion module",
    Kind.MOTION_LORA: "a MotionLoRA",
    Kind.DOMAIN_ADAPTER: "a domain adapter",
    Kind.SD_CHECKPOINT: "a single-file Stable Diffusion checkpoint",
    Kind.IMAGE_LORA: "an image LoRA",
    Kind.IMAGE_MODEL: "a diffusers image model folder",
    Kind.IMAGE_UNET: "an image UNet (a personalized model's or a base's)",
    Kind.SPARSECTRL: "a SparseCtrl encoder",
    Kind.CONTROLNET: "a ControlNet",
    Kind.CAMERACTRL: "a CameraCtrl pose encoder with its motion-module pose layers",
    Kind.UNKNOWN: "not a checkpoint kind this package knows",
}

# a diffusers model folder's config.json `_class_name` → what the folder is
_FOLDER_CLASSES = {
    "MotionAdapter": Kind.MOTION_MODULE,
    "SparseControlNetModel": Kind.SPARSECTRL,
    "ControlNetModel": Kind.CONTROLNET,
    "UNet2DConditionModel": Kind.IMAGE_UNET,
}


@dataclass
class CheckpointInfo:
    """What a checkpoint is, for `inspect` and for plain-language errors."""

    kind: Kind
    layout: Layout
    details: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        name = KIND_NAMES[self.kind]
        return f"{name} ({self.layout} layout)" if self.kind != Kind.UNKNOWN else name


_UNET_KEYS = ("conv_in.weight", "time_embedding.linear_1.weight")


def classify_keys(keys: list[str]) -> CheckpointInfo:
    """Name the kind and layout of a state dict from its keys alone."""
    joined = "\n".join(keys)
    is_lora = "_lora.down." in joined or ".lora_down." in joined or ".lora_A." in joined or ".lora.down." in joined
    if "controlnet_cond_embedding." in joined or "control_model.input_hint_block." in joined:
        official = "motion_modules." not in joined or "temporal_transformer." in joined
        kind = Kind.SPARSECTRL if "motion_modules." in joined else Kind.CONTROLNET
        return CheckpointInfo(kind, Layout.OFFICIAL if official else Layout.DIFFUSERS)
    if "pose_encoder.encoder_conv_in." in joined or ".processor.qkv_merge." in joined:
        return CheckpointInfo(Kind.CAMERACTRL, Layout.OFFICIAL)
    if "motion_modules." in joined:
        official = "temporal_transformer." in joined or "temporal_convolution." in joined
        layout = Layout.OFFICIAL if official else Layout.DIFFUSERS
        return CheckpointInfo(Kind.MOTION_LORA if is_lora else Kind.MOTION_MODULE, layout)
    if is_lora and any(key.startswith(("unet.", "text_encoder.")) for key in keys):
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.DIFFUSERS)
    if "processor.to_q_lora." in joined or "processor.to_out_lora." in joined:
        return CheckpointInfo(Kind.DOMAIN_ADAPTER, Layout.OFFICIAL)
    if "lora_unet_" in joined or "lora_te_" in joined:
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.KOHYA)
    if is_lora:
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.DIFFUSERS)
    if "model.diffusion_model." in joined:
        family = (
            "sdxl" if "conditioner.embedders." in joined else "sd2" if "cond_stage_model.model." in joined else "sd1"
        )
        return CheckpointInfo(Kind.SD_CHECKPOINT, Layout.LDM, {"family": family})
    if all(key in keys for key in _UNET_KEYS):
        return CheckpointInfo(Kind.IMAGE_UNET, Layout.DIFFUSERS)
    return CheckpointInfo(Kind.UNKNOWN, Layout.UNKNOWN)


def identify_folder(path: Path) -> CheckpointInfo:
    """What a diffusers model folder is, from its `config.json` (or, for a whole image model, its parts)."""
    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json(config_file, "model folder's config")
        kind = _FOLDER_CLASSES.get(str(config.get("_class_name")))
        if kind == Kind.IMAGE_UNET:
            widths = config.get("block_out_channels")
            return CheckpointInfo(kind, Layout.DIFFUSERS, {"folder": True, "block_out_channels": widths})
        if kind is not None:
            return CheckpointInfo(kind, Layout.DIFFUSERS, {"folder": True})
    if (path / "unet").is_dir() or (path / "model_index.json").is_file():
        return CheckpointInfo(Kind.IMAGE_MODEL, Layout.DIFFUSERS, {"folder": True})
    return CheckpointInfo(Kind.UNKNOWN, Layout.UNKNOWN)


def kind_of(path: str | os.PathLike) -> Kind:
    """What a file or folder holds, read cheaply: a folder's config, a safetensors header, a memory-mapped
    `.ckpt`; for listing many files (the app's model lists) without loading any."""
    path = Path(path)
    if path.is_dir():
        return identify_folder(path).kind
    keys = checkpoint_keys(path) if is_safetensors(path) else list(mapped_state_dict(path))
    return classify_keys(keys).kind


def identify(path: str | os.PathLike) -> CheckpointInfo:
    """What a file or folder holds, with the details `animatediff inspect` shows."""
    path = Path(path)
    if path.is_dir():
        return identify_folder(path)
    state_dict = read_state_dict(path)
    info = classify_keys(list(state_dict))
    info.details.update(_tensor_summary(state_dict))
    if info.kind == Kind.MOTION_MODULE:
        official = state_dict if info.layout == Layout.OFFICIAL else diffusers_to_official(state_dict)
        config = checked_config(path, official)
        release, rule = motion_module_family(path)
        info.details.update(version=release.name, detected_by=rule, sampling=release.sampling(), **config.to_dict())
    elif info.kind == Kind.CAMERACTRL:
        info.details.update(_cameractrl_summary(path, state_dict))
    elif info.kind in (Kind.MOTION_LORA, Kind.DOMAIN_ADAPTER):
        info.details.update(_lora_summary(state_dict))
    return info


def require_kind(path: str | os.PathLike, keys: list[str], kind: Kind, hint: str = "") -> CheckpointInfo:
    """The file's kind and layout from its keys, or an error saying what it is instead of `kind`."""
    info = classify_keys(keys)
    if info.kind != kind:
        raise CheckpointError(f"{path}: this file is {info.description}, not {KIND_NAMES[kind]}.{hint}")
    return info


def read_checkpoint(path: str | os.PathLike, kind: Kind, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a file that must be of `kind`; motion modules and MotionLoRAs in the official layout."""
    state_dict = read_state_dict(path)
    info = require_kind(path, list(state_dict), kind, hint)
    if info.layout == Layout.DIFFUSERS and kind in (Kind.MOTION_MODULE, Kind.MOTION_LORA):
        return diffusers_to_official(state_dict)
    return state_dict


def _tensor_summary(state_dict: dict[str, torch.Tensor]) -> dict:
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state_dict.values()})
    return {
        "tensors": len(state_dict),
        "parameters": sum(t.numel() for t in state_dict.values()),
        "bytes": sum(t.numel() * t.element_size() for t in state_dict.values()),
        "dtype": ", ".join(dtypes),
    }


def _lora_summary(state_dict: dict[str, torch.Tensor]) -> dict:
    downs = {key: value for key, value in state_dict.items() if ".down." in key}
    ranks = sorted({value.shape[0] for value in downs.values()})
    projections = sorted({re.search(r"to_(q|k|v|out)_lora", key).group(0) for key in downs})
    return {"rank": ", ".join(map(str, ranks)), "targets": len(downs), "projections": ", ".join(projections)}


def _cameractrl_summary(path: Path, state_dict: dict[str, torch.Tensor]) -> dict:
    """What `inspect` tells of a CameraCtrl file: its encoder's shape and its pose layers."""
    config = encoder_config(state_dict, path)
    merges = sum(1 for key in state_dict if MERGE.match(key) and key.endswith(".weight"))
    return {
        "version": "cameractrl",
        "block_out_channels": config.channels,
        "downscale": config.downscale,
        "max_frames": config.max_frames,
        "pose_layers": merges,
    }
