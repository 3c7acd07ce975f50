"""Checkpoint files: reading them safely, telling what they are, and converting between layouts.

A `.ckpt` is a pickle and may carry code; it is only ever read with `torch.load(weights_only=True)`,
which refuses anything but tensors and plain containers. `.safetensors` is preferred everywhere.

Motion modules and MotionLoRAs exist in two key layouts: the official release's
(`down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q`)
and diffusers' (`…motion_modules.0.transformer_blocks.0.attn1.to_q`, MotionLoRAs prefixed `unet.`).
Everything in this package works in the official layout; diffusers files are renamed on the way in.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from animatediff.errors import CheckpointError
from animatediff.files import atomic_path
from animatediff.motion_module import MotionModule, MotionModuleConfig, sinusoidal_table

MOTION_MODULE_FORMAT = "animatediff-motion-module"
_MODULE_KEY = re.compile(r"^(down_blocks\.(\d+)|up_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or `.ckpt`/`.pt`/`.pth` file, never running pickled code.

    A checkpoint nested under `state_dict` is unwrapped; non-tensor entries (such as an
    `animatediff_config`) are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected a .safetensors or .ckpt checkpoint.")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error}).") from error
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load. This pickle holds more than tensors (it would run code or build "
            f"arbitrary objects when loaded), which is unsafe; convert it to .safetensors with a tool you "
            f"trust. Detail: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint, maybe truncated ({error}).") from error
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, found {type(content).__name__}.")
    return {key: value for key, value in content.items() if isinstance(value, torch.Tensor)}


# ---------------------------------------------------------------------------------------------------
# Official ↔ diffusers key layouts (diffusers' own conversion rules, kept reversible)

_TO_DIFFUSERS = (
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
)
_TEMPORAL = re.compile(r"(motion_modules\.\d+\.)temporal_transformer\.")
_UNTEMPORAL = re.compile(r"(motion_modules\.\d+\.)(?!temporal_transformer\.)")


def official_to_diffusers(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename official motion-module (or MotionLoRA) keys to diffusers' layout.

    The position table, which diffusers keeps once per transformer block, is taken from the first
    attention. MotionLoRAs use `prefix="unet."` as diffusers' LoRA loader expects.
    """
    converted = {}
    for key, value in state_dict.items():
        if key.endswith("attention_blocks.1.pos_encoder.pe"):
            continue
        key = _TEMPORAL.sub(r"\1", key).replace(".attention_blocks.0.pos_encoder.pe", ".pos_embed.pe")
        for old, new in _TO_DIFFUSERS:
            key = key.replace(old, new)
        converted[prefix + key] = value
    return converted


def diffusers_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `official_to_diffusers` (a leading `unet.` is dropped)."""
    converted = {}
    for key, value in state_dict.items():
        key = _UNTEMPORAL.sub(r"\1temporal_transformer.", key.removeprefix("unet."))
        for old, new in _TO_DIFFUSERS:
            key = key.replace(new, old)
        if key.endswith(".pos_embed.pe"):
            block = key.removesuffix("pos_embed.pe")
            converted[block + "attention_blocks.0.pos_encoder.pe"] = value
            converted[block + "attention_blocks.1.pos_encoder.pe"] = value.clone()
        else:
            converted[key] = value
    return converted


# ---------------------------------------------------------------------------------------------------
# Telling what a file is


KIND_NAMES = {
    "motion_module": "a motion module",
    "motion_lora": "a MotionLoRA",
    "domain_adapter": "a domain adapter",
    "sd_checkpoint": "a single-file Stable Diffusion checkpoint",
    "image_lora": "an image LoRA",
    "image_model": "a diffusers image model folder",
    "unknown": "not a checkpoint kind this package knows",
}


@dataclass
class CheckpointInfo:
    """What a checkpoint is, for `inspect` and for plain-language errors."""

    kind: str  # motion_module, motion_lora, domain_adapter, sd_checkpoint, image_lora, image_model, unknown
    layout: str  # official, diffusers, kohya, ldm, …
    details: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        name = KIND_NAMES[self.kind]
        return f"{name} ({self.layout} layout)" if self.kind != "unknown" else name


def classify_keys(keys: list[str]) -> CheckpointInfo:
    """Name the kind and layout of a state dict from its keys alone."""
    joined = "\n".join(keys)
    is_lora = "_lora.down." in joined or ".lora_down." in joined or ".lora_A." in joined or ".lora.down." in joined
    if "motion_modules." in joined:
        official = "temporal_transformer." in joined or "temporal_convolution." in joined
        layout = "official" if official else "diffusers"
        return CheckpointInfo("motion_lora" if is_lora else "motion_module", layout)
    if is_lora and any(key.startswith(("unet.", "text_encoder.")) for key in keys):
        return CheckpointInfo("image_lora", "diffusers")
    if "processor.to_q_lora." in joined or "processor.to_out_lora." in joined:
        return CheckpointInfo("domain_adapter", "official")
    if "lora_unet_" in joined or "lora_te_" in joined:
        return CheckpointInfo("image_lora", "kohya")
    if is_lora:
        return CheckpointInfo("image_lora", "diffusers")
    if "model.diffusion_model." in joined:
        family = (
            "sdxl" if "conditioner.embedders." in joined else "sd2" if "cond_stage_model.model." in joined else "sd1"
        )
        return CheckpointInfo("sd_checkpoint", "ldm", {"family": family})
    return CheckpointInfo("unknown", "unknown")


def checkpoint_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a checkpoint file; a `.safetensors` file is not read beyond its header."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return list(read_state_dict(path))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected a .safetensors or .ckpt checkpoint.")
    try:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error}).") from error


def require_kind(path: str | os.PathLike, keys: list[str], kind: str, hint: str = "") -> CheckpointInfo:
    """The file's kind and layout from its keys, or an error saying what it is instead of `kind`."""
    info = classify_keys(keys)
    if info.kind != kind:
        raise CheckpointError(f"{path}: this file is {info.description}, not {KIND_NAMES[kind]}.{hint}")
    return info


def read_checkpoint(path: str | os.PathLike, kind: str, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a file that must be of `kind`; motion modules and MotionLoRAs in the official layout."""
    state_dict = read_state_dict(path)
    info = require_kind(path, list(state_dict), kind, hint)
    if info.layout == "diffusers" and kind in ("motion_module", "motion_lora"):
        return diffusers_to_official(state_dict)
    return state_dict


def identify(path: str | os.PathLike) -> CheckpointInfo:
    """What a file or folder holds, with the details `animatediff inspect` shows."""
    path = Path(path)
    if path.is_dir():
        return _identify_folder(path)
    state_dict = read_state_dict(path)
    info = classify_keys(list(state_dict))
    info.details.update(_tensor_summary(state_dict))
    if info.kind == "motion_module":
        official = state_dict if info.layout == "official" else diffusers_to_official(state_dict)
        config = infer_motion_module_config(official)
        info.details.update(version=motion_module_version(config), **config.to_dict())
    elif info.kind in ("motion_lora", "domain_adapter"):
        info.details.update(_lora_summary(state_dict))
    return info


def _identify_folder(path: Path) -> CheckpointInfo:
    config_file = path / "config.json"
    if config_file.is_file() and json.loads(config_file.read_text()).get("_class_name") == "MotionAdapter":
        return CheckpointInfo("motion_module", "diffusers", {"folder": True})
    if (path / "unet").is_dir() or (path / "model_index.json").is_file():
        return CheckpointInfo("image_model", "diffusers", {"folder": True})
    return CheckpointInfo("unknown", "unknown")


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


# ---------------------------------------------------------------------------------------------------
# Motion modules


def infer_motion_module_config(state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    """Work out a motion module's layout from its official-layout weights.

    Widths come from the GroupNorm sizes, the position-table length from `pe`, the version from the
    mid block: v1 (no mid block, 24 frames) was trained with the image GroupNorms pooled over frames;
    the SDXL module (three levels) with its own GroupNorm pooled over frames.
    """
    down: dict[int, dict[int, int]] = {}
    mid = False
    for key, value in state_dict.items():
        match = _MODULE_KEY.match(key)
        if match is None:
            continue
        if match.group(1) == "mid_block":
            mid = True
        elif match.group(2) is not None and key.endswith(
            (".temporal_transformer.norm.weight", ".temporal_convolution.norm.weight")
        ):
            down.setdefault(int(match.group(2)), {})[int(match.group(4))] = value.shape[0]
    if not down:
        raise ValueError("no motion-module weights (down_blocks.i.motion_modules.j.…)")
    widths = tuple(down[i][0] for i in sorted(down))
    first = "down_blocks.0.motion_modules.0.temporal_transformer."
    blocks = {key[len(first) :].split(".")[1] for key in state_dict if key.startswith(first + "transformer_blocks.")}
    pe_key = next((key for key in state_dict if key.startswith(first) and key.endswith("pos_encoder.pe")), None)
    max_frames = state_dict[pe_key].shape[1] if pe_key else MotionModuleConfig.max_frames
    values = dict(
        block_out_channels=widths,
        layers_per_block=len(down[0]),
        mid_block=mid,
        num_transformer_blocks=max(len(blocks), 1),
        max_frames=max_frames,
        norm_over_frames=len(widths) == 3,
        image_norm_over_frames=not mid and max_frames == 24,
        kind="convolution" if any(".temporal_convolution." in key for key in state_dict) else "transformer",
    )
    values.update(overrides)
    return MotionModuleConfig(**values)


# How each release ran: the settings a version implies, for overriding what the weights suggest.
VERSION_SETTINGS = {
    "v1": {"norm_over_frames": False, "image_norm_over_frames": True},
    "v2": {"norm_over_frames": False, "image_norm_over_frames": False},
    "v3": {"norm_over_frames": False, "image_norm_over_frames": False},
    "sdxl": {"norm_over_frames": True, "image_norm_over_frames": False},
}


def motion_module_version(config: MotionModuleConfig) -> str:
    """The release a layout matches: v1, v2, v3 (SD1.5) or sdxl."""
    if len(config.block_out_channels) == 3:
        return "sdxl"
    if config.mid_block:
        return "v2"
    return "v1" if config.max_frames == 24 else "v3"


def _check_position_tables(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            expected = sinusoidal_table(value.shape[1], value.shape[2])
            if not torch.allclose(value.float(), expected, atol=1e-3):
                raise CheckpointError(
                    f"{path}: the position table {key} is not the sinusoidal table a motion module uses "
                    "(the file may be corrupt or not a motion module)."
                )


def _read_motion_adapter_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from diffusers import MotionAdapter

    adapter = MotionAdapter.from_pretrained(path)
    config = adapter.config
    settings = dict(
        num_attention_heads=config.motion_num_attention_heads,
        norm_num_groups=config.motion_norm_num_groups,
        max_frames=config.motion_max_seq_length,
    )
    return diffusers_to_official(adapter.state_dict()), settings


def read_motion_module_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Official-layout weights of a motion module file or diffusers `MotionAdapter` folder, plus any
    settings the file states (a config saved by this package, a MotionAdapter's config)."""
    path = Path(path)
    if path.is_dir():
        info = _identify_folder(path)
        if info.kind != "motion_module":
            raise CheckpointError(f"{path}: this folder is {info.description}, not a motion module.")
        return _read_motion_adapter_folder(path)
    hint = " A motion module has keys such as 'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'."
    return read_checkpoint(path, "motion_module", hint), _saved_config(path) or {}


def load_motion_module(path: str | os.PathLike, **overrides) -> MotionModule:
    """Build a `MotionModule` from an official- or diffusers-layout file, or a MotionAdapter folder.

    The layout is read from the file itself (a config saved by this package, else inferred from the
    weights); keyword arguments override single `MotionModuleConfig` fields.
    """
    path = Path(path)
    state_dict, stated = read_motion_module_weights(path)
    if "block_out_channels" in stated:
        config = MotionModuleConfig.from_dict({**stated, **overrides})
    else:
        config = infer_motion_module_config(state_dict, **{**stated, **overrides})
    _check_position_tables(path, state_dict)
    module = MotionModule(config)
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise CheckpointError(
            f"{path}: the weights do not fit a motion module with settings {config}: {str(error).splitlines()[-1]}"
        ) from error
    missing = [key for key in missing if not key.endswith("pos_encoder.pe")]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the weights do not fit a motion module of widths {config.block_out_channels} "
            f"({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})."
        )
    return module


def _saved_config(path: Path) -> dict | None:
    if path.suffix != ".safetensors":
        return None
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != MOTION_MODULE_FORMAT:
        return None
    return json.loads(metadata["config"])


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None):
    """Write tensors as safetensors, atomically."""
    path = Path(path)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    return path


def save_motion_module(module: MotionModule, path: str | os.PathLike, layout: str = "official") -> Path:
    """Write `module` as safetensors in the official (default) or diffusers layout.

    A diffusers-layout path without the `.safetensors` extension becomes a `MotionAdapter` folder that
    diffusers' `MotionAdapter.from_pretrained` loads.
    """
    path = Path(path)
    metadata = {"format": MOTION_MODULE_FORMAT, "config": json.dumps(module.config.to_dict())}
    if layout == "official":
        return save_state_dict(module.state_dict(), path, metadata)
    if path.suffix == ".safetensors":
        return save_state_dict(official_to_diffusers(module.state_dict()), path, metadata)
    return _save_motion_adapter_folder(module, path)


def to_motion_adapter(module: MotionModule):
    """The same weights as a diffusers `MotionAdapter` (for diffusers' `AnimateDiffPipeline`)."""
    from diffusers import MotionAdapter

    config = module.config
    adapter = MotionAdapter(
        block_out_channels=config.block_out_channels,
        motion_layers_per_block=config.layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_block=config.num_transformer_blocks,
        motion_num_attention_heads=config.num_attention_heads,
        motion_norm_num_groups=config.norm_num_groups,
        motion_max_seq_length=config.max_frames,
        use_motion_mid_block=config.mid_block,
    )
    adapter.load_state_dict(official_to_diffusers(module.state_dict()))
    return adapter


def _save_motion_adapter_folder(module: MotionModule, path: Path) -> Path:
    adapter = to_motion_adapter(module)
    with atomic_path(path, directory=True) as temporary:
        adapter.save_pretrained(temporary)
    return path


def convert_checkpoint(source: str | os.PathLike, target: str | os.PathLike, layout: str) -> CheckpointInfo:
    """Rewrite a motion module or MotionLoRA in the `official` or `diffusers` layout, as safetensors."""
    if layout not in ("official", "diffusers"):
        raise CheckpointError(f"--to must be 'official' or 'diffusers'; got {layout!r}.")
    source = Path(source)
    info = _identify_folder(source) if source.is_dir() else classify_keys(checkpoint_keys(source))
    if info.kind == "motion_module":
        save_motion_module(load_motion_module(source), target, layout)
    elif info.kind == "motion_lora":
        official = read_checkpoint(source, "motion_lora")
        save_state_dict(official if layout == "official" else official_to_diffusers(official, "unet."), target)
    else:
        raise CheckpointError(f"{source}: this is {info.description}; convert takes a motion module or a MotionLoRA.")
    return info
