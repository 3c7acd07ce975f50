"""Reading and writing motion-module checkpoints safely, in the official key layout.

A `.ckpt` is a pickle and may carry code; it is only ever read with `torch.load(weights_only=True)`,
which refuses anything but tensors and plain containers. `.safetensors` is preferred everywhere.
"""

from __future__ import annotations

import json
import os
import pickle
import re
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


def infer_motion_module_config(state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    """Work out a motion module's layout from its official-layout weights.

    Widths come from the GroupNorm sizes, the position-table length from `pe`, the version from the
    mid block: v1 (no mid block, 24 frames) was trained with the image GroupNorms pooled over frames.
    """
    down, up, mid = {}, {}, False
    for key, value in state_dict.items():
        match = _MODULE_KEY.match(key)
        if match is None:
            continue
        block, j = match.group(1), int(match.group(4))
        if block == "mid_block":
            mid = True
        elif key.endswith("temporal_transformer.norm.weight"):
            table = down if match.group(2) is not None else up
            index = int(match.group(2) if match.group(2) is not None else match.group(3))
            table.setdefault(index, {})[j] = value.shape[0]
    if not down:
        raise ValueError("no official-layout motion-module weights (down_blocks.i.motion_modules.j.…)")
    widths = tuple(down[i][0] for i in sorted(down))
    layers_per_block = len(down[0])
    first = "down_blocks.0.motion_modules.0.temporal_transformer."
    blocks = {
        key[len(first) :].split(".")[1] for key in state_dict if key.startswith(first + "transformer_blocks.")
    }
    pe_key = next(
        (key for key in state_dict if key.startswith(first) and key.endswith("pos_encoder.pe")), None
    )
    max_frames = state_dict[pe_key].shape[1] if pe_key else MotionModuleConfig.max_frames
    is_v1 = not mid and max_frames == 24
    values = dict(
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        mid_block=mid,
        num_transformer_blocks=max(len(blocks), 1),
        max_frames=max_frames,
        image_norm_over_frames=is_v1,
    )
    values.update(overrides)
    return MotionModuleConfig(**values)


def _check_position_tables(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            expected = sinusoidal_table(value.shape[1], value.shape[2])
            if not torch.allclose(value.float(), expected, atol=1e-3):
                raise CheckpointError(
                    f"{path}: the position table {key} is not the sinusoidal table a motion module uses "
                    "(the file may be corrupt or not a motion module)."
                )


def load_motion_module(path: str | os.PathLike, **overrides) -> MotionModule:
    """Build a `MotionModule` from an official-layout file (`.ckpt` or `.safetensors`).

    The layout is read from the file itself (a config saved by this package, else inferred from the
    weights); keyword arguments override single `MotionModuleConfig` fields.
    """
    path = Path(path)
    state_dict = read_state_dict(path)
    saved = _saved_config(path)
    try:
        config = (
            MotionModuleConfig.from_dict({**saved, **overrides})
            if saved
            else (infer_motion_module_config(state_dict, **overrides))
        )
    except ValueError as error:
        raise CheckpointError(
            f"{path}: not a motion module: {error}. Expected official-layout keys such as "
            "'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'."
        ) from error
    _check_position_tables(path, state_dict)
    module = MotionModule(config)
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
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


def save_motion_module(module: MotionModule, path: str | os.PathLike) -> Path:
    """Write `module` as official-layout safetensors, with its config in the file's metadata."""
    path = Path(path)
    tensors = {key: value.detach().contiguous().cpu() for key, value in module.state_dict().items()}
    metadata = {"format": MOTION_MODULE_FORMAT, "config": json.dumps(module.config.to_dict())}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    return path


_DIFFUSERS_RENAMES = (
    ("temporal_transformer.", ""),
    ("norms.0.", "norm1."),
    ("norms.1.", "norm2."),
    ("ff_norm.", "norm3."),
    ("attention_blocks.0.", "attn1."),
    ("attention_blocks.1.", "attn2."),
)


def official_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official motion-module keys to diffusers' `MotionAdapter` layout (position tables dropped)."""
    converted = {}
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            continue
        for old, new in _DIFFUSERS_RENAMES:
            key = key.replace(old, new)
        converted[key] = value
    return converted
