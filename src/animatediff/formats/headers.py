"""What a motion module file says about itself without building the module: the facts its header holds
(levels, mid block, position-table length, metadata), the release these make it (`families`), the config
this package saved in it, or the config its weights imply.

These are read for every generation before any weights are loaded (the release sets the sampling preset
and the frames one pass can take), so a safetensors file is read no further than its header and a `.ckpt`
is memory-mapped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.families import FAMILIES, METADATA_KEY, Family, detect, resolve
from animatediff.files import read_json
from animatediff.formats.safe import is_safetensors, mapped_state_dict, safetensors_metadata, safetensors_shapes
from animatediff.motion_module import MotionModuleConfig

MOTION_MODULE_FORMAT = "animatediff-motion-module"  # the metadata `format` of the files this package writes
IMAGE_LORA_KEY = "animatediff.image_lora"  # a motion module's metadata: the image LoRA beside it that it runs with
MODULE_KEY = re.compile(r"^(down_blocks\.(\d+)|up_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.")
IMAGE_INPUT_KEYS = {"pia": "conv_in.", "i2v": "img_encoder."}  # the image conditioning stored beside a motion module


def image_input_of(keys) -> str | None:
    """The image conditioning a motion module file stores beside its motion modules (`families.IMAGE_INPUTS`):
    PIA's `conv_in.weight`/`.bias`, AnimateLCM-I2V's `img_encoder.…`; None for a plain motion module."""
    keys = list(keys)
    if not any(MODULE_KEY.match(key) for key in keys):  # an image UNet's own conv_in is no image input
        return None
    return next((name for name, prefix in IMAGE_INPUT_KEYS.items() if any(k.startswith(prefix) for k in keys)), None)


def split_image_input(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A motion module file's tensors as (the motion modules', the image conditioning's, prefix removed)."""
    kind = image_input_of(state_dict)
    if kind is None:
        return state_dict, {}
    prefix = IMAGE_INPUT_KEYS[kind]
    extra = {key.removeprefix(prefix): value for key, value in state_dict.items() if key.startswith(prefix)}
    return {key: value for key, value in state_dict.items() if not key.startswith(prefix)}, extra


@dataclass(frozen=True)
class ModuleHeader:
    """What a motion module file says about its release, read without loading its weights."""

    levels: int
    mid_block: bool
    max_frames: int | None  # None: no position table stored
    metadata: str | None  # the release its metadata names (`families.METADATA_KEY`)
    image_lora: str | None = None  # the image LoRA file beside it that its metadata names (`IMAGE_LORA_KEY`)
    image_input: str | None = None  # the image conditioning stored beside it (`image_input_of`)


def module_header(path: str | os.PathLike) -> ModuleHeader:
    """The layout facts of a motion module file (a safetensors header, a memory-mapped `.ckpt`) or a
    MotionAdapter folder (its config)."""
    path = Path(path)
    if path.is_dir():
        config = read_json(path / "config.json", "MotionAdapter's config")
        return ModuleHeader(
            len(config.get("block_out_channels", (320, 640, 1280, 1280))),
            bool(config.get("use_motion_mid_block", True)),
            int(config.get("motion_max_seq_length", MotionModuleConfig.max_frames)),
            None,
            image_input="pia" if config.get("conv_in_channels") else None,  # diffusers' PIA adapter
        )
    metadata = {}
    if is_safetensors(path):
        shapes = safetensors_shapes(path)
        metadata = safetensors_metadata(path)
    else:
        shapes = {key: tuple(value.shape) for key, value in mapped_state_dict(path).items()}
    levels = {match.group(2) for key in shapes if (match := MODULE_KEY.match(key)) and match.group(2) is not None}
    tables = [shape[1] for key, shape in shapes.items() if key.endswith(("pos_encoder.pe", "pos_embed.pe"))]
    mid_block = any(key.startswith("mid_block.") for key in shapes)
    lora = metadata.get(IMAGE_LORA_KEY)
    if lora is not None and (Path(lora).name != lora or not (path.parent / lora).is_file()):
        raise CheckpointError(
            f"{path}: its metadata names the image LoRA {lora!r}, which should be a file beside it "
            f"({path.parent / Path(lora).name} is missing)."
        )
    table = tables[0] if tables else None
    return ModuleHeader(len(levels), mid_block, table, metadata.get(METADATA_KEY), lora, image_input_of(shapes))


def motion_module_family(
    path: str | os.PathLike, override: str | None = None, header: ModuleHeader | None = None
) -> tuple[Family, str]:
    """A motion module's release and the rule that decided it (`families.resolve`)."""
    path = Path(path)
    header = header or module_header(path)
    if header.metadata is not None and header.metadata not in FAMILIES:
        raise CheckpointError(
            f"{path}: its metadata names the release {header.metadata!r}; expected one of {', '.join(FAMILIES)}."
        )
    return resolve(
        path.name, header.levels, header.mid_block, header.max_frames, header.metadata, override, header.image_input
    )


def motion_module_table(path: str | os.PathLike, header: ModuleHeader | None = None) -> int:
    """The length of a motion module's position table (the most frames one pass can take), read without
    loading the module (`module_header`, or the `header` already read); a file that stores no table has its
    release's length, as loading gives it (AnimateLCM's 64)."""
    path = Path(path)
    stated = {} if path.is_dir() else saved_config(path)
    if "max_frames" in stated:
        return int(stated["max_frames"])
    header = header or module_header(path)
    return header.max_frames or detect(header.levels, header.mid_block, None, header.image_input).max_frames


def module_family(config: MotionModuleConfig) -> Family:
    """The release whose layout a motion module has (v1, v2, v3, or the SDXL beta)."""
    return detect(levels=len(config.block_out_channels), mid_block=config.mid_block, max_frames=config.max_frames)


def release_settings(name: str) -> dict:
    """The `MotionModuleConfig` settings that run a module as the release `name` did."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown motion-module release {name!r}; expected one of {', '.join(FAMILIES)}.")
    return FAMILIES[name].module_settings()


def saved_config(path: Path) -> dict:
    """The `MotionModuleConfig` this package saved in a safetensors file's metadata, or {}."""
    if not is_safetensors(path):
        return {}
    metadata = safetensors_metadata(path)
    if metadata.get("format") != MOTION_MODULE_FORMAT:
        return {}
    try:
        config = json.loads(metadata["config"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path}: its motion-module config (metadata) is not readable ({first_line(error)})."
        ) from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its motion-module config (metadata) is not a JSON object.")
    return config


def infer_motion_module_config(state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    """Work out a motion module's layout from its official-layout weights.

    Widths come from the GroupNorm sizes, the position-table length from `pe`, the mid block from its
    keys; the release these match (`families.detect`) says how the module ran (its GroupNorms).
    Raises `ValueError` when no temporal module's GroupNorm is found.
    """
    down: dict[int, dict[int, int]] = {}
    mid = False
    for key, value in state_dict.items():
        match = MODULE_KEY.match(key)
        if match is None:
            continue
        if match.group(1) == "mid_block":
            mid = True
        elif match.group(2) is not None and key.endswith(
            (".temporal_transformer.norm.weight", ".temporal_convolution.norm.weight")
        ):
            down.setdefault(int(match.group(2)), {})[int(match.group(4))] = value.shape[0]
    if not down or 0 not in down or 0 not in down[0]:
        raise ValueError("no GroupNorm weights of the temporal modules (down_blocks.0.motion_modules.0.….norm.weight)")
    widths = tuple(down[i][0] for i in sorted(down))
    first = "down_blocks.0.motion_modules.0.temporal_transformer."
    blocks = {key[len(first) :].split(".")[1] for key in state_dict if key.startswith(first + "transformer_blocks.")}
    pe_key = next((key for key in state_dict if key.startswith(first) and key.endswith("pos_encoder.pe")), None)
    table = state_dict[pe_key].shape[1] if pe_key else None
    release = detect(len(widths), mid, table, image_input_of(state_dict))
    max_frames = table or release.max_frames  # a file without its table (AnimateLCM's): the release's length
    values = dict(
        block_out_channels=widths,
        layers_per_block=len(down[0]),
        mid_block=mid,
        num_transformer_blocks=max(len(blocks), 1),
        max_frames=max_frames,
        kind="convolution" if any(".temporal_convolution." in key for key in state_dict) else "transformer",
        **release.module_settings(),
    )
    values.update(overrides)
    return MotionModuleConfig(**values)


def checked_config(path: Path, state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    """`infer_motion_module_config`, with an error naming `path` when its weights make no motion module."""
    try:
        return infer_motion_module_config(state_dict, **overrides)
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path}: has motion-module keys but is not a complete motion module ({error}); the file may be "
            "damaged or cut short."
        ) from error
