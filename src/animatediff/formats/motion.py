"""Motion-module files: loading one into a `MotionModule` from either key layout (a file, or diffusers'
`MotionAdapter` folder), and saving one in either.

A file saved by this package carries its `MotionModuleConfig` in the metadata; any other file's config is
inferred from its weights (`headers.infer_motion_module_config`). Loading is strict: every weight must fit
and every position table must be the sinusoidal table, so a damaged or mislabelled file is refused rather
than run with missing weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.families import FAMILIES, METADATA_KEY
from animatediff.files import atomic_path
from animatediff.formats.headers import (
    IMAGE_INPUT_KEYS,
    IMAGE_LORA_KEY,
    MOTION_MODULE_FORMAT,
    checked_config,
    image_input_of,
    saved_config,
    split_image_input,
)
from animatediff.formats.identify import Kind, identify_folder, read_checkpoint
from animatediff.formats.layouts import Layout, diffusers_to_official, official_to_diffusers
from animatediff.formats.safe import DIFFUSERS_MODEL_FILES, save_state_dict
from animatediff.motion_module import MotionModule, MotionModuleConfig, sinusoidal_table


def load_motion_module(path: str | os.PathLike, **overrides) -> MotionModule:
    """Build a `MotionModule` from an official- or diffusers-layout file, or a MotionAdapter folder.

    The layout is read from the file itself (a config saved by this package, else inferred from the
    weights); keyword arguments override single `MotionModuleConfig` fields. The image conditioning a PIA or
    AnimateLCM-I2V file stores beside its motion modules is left out (`load_with_image_input` returns it).
    """
    return load_with_image_input(path, **overrides)[0]


def load_with_image_input(path: str | os.PathLike, **overrides) -> tuple[MotionModule, str | None, dict]:
    """`load_motion_module`, and the image conditioning stored beside the motion modules: its kind (`pia`,
    `i2v` or None, `headers.image_input_of`) and its tensors, their prefix removed."""
    path = Path(path)
    state_dict, stated = read_motion_module_weights(path)
    _check_position_tables(path, state_dict)
    try:
        if "block_out_channels" in stated:
            config = MotionModuleConfig.from_dict({**stated, **overrides})
        else:
            config = checked_config(path, state_dict, **{**stated, **overrides})
        module = MotionModule(config)
    except (ValueError, TypeError, KeyError) as error:  # settings no motion module can have
        raise CheckpointError(f"{path}: its settings do not make a motion module ({first_line(error)}).") from error
    motion, image_input = split_image_input(state_dict)
    try:
        missing, unexpected = module.load_state_dict(motion, strict=False)
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
    return module, image_input_of(state_dict), image_input


def read_motion_module_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Official-layout weights of a motion module file or diffusers `MotionAdapter` folder, plus any
    settings the file states (a config saved by this package, a MotionAdapter's config)."""
    path = Path(path)
    if path.is_dir():
        info = identify_folder(path)
        if info.kind not in (Kind.MOTION_MODULE, Kind.PIA):
            raise CheckpointError(f"{path}: this folder is {info.description}, not a motion module.")
        return _read_motion_adapter_folder(path)
    hint = " A motion module has keys such as 'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'."
    return read_checkpoint(path, Kind.MOTION_MODULE, hint, also=(Kind.PIA,)), saved_config(path)


def _read_motion_adapter_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from diffusers import MotionAdapter

    try:
        adapter = MotionAdapter.from_pretrained(path)
    except Exception as error:  # diffusers' loaders raise many kinds for a damaged folder
        raise CheckpointError(
            f"{path}: not a loadable diffusers MotionAdapter folder (config.json and its weights): {first_line(error)}"
        ) from error
    config = adapter.config
    settings = dict(
        num_attention_heads=config.motion_num_attention_heads,
        norm_num_groups=config.motion_norm_num_groups,
        max_frames=config.motion_max_seq_length,
    )
    return diffusers_to_official(adapter.state_dict()), settings


def _check_position_tables(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            expected = sinusoidal_table(value.shape[1], value.shape[2])
            if not torch.allclose(value.float(), expected, atol=1e-3):
                raise CheckpointError(
                    f"{path}: the position table {key} is not the sinusoidal table a motion module uses "
                    "(the file may be corrupt or not a motion module)."
                )


def save_motion_module(
    module: MotionModule,
    path: str | os.PathLike,
    layout: Layout = Layout.OFFICIAL,
    family: str | None = None,
    image_lora: str | None = None,
    image_input: tuple[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `module` as safetensors in the official (default) or diffusers layout; `family` names its
    release in the metadata (for a release its weights do not tell, such as a distilled one), `image_lora`
    the image LoRA file beside it that it runs with (loading applies it at scale 1).

    A diffusers-layout path without the `.safetensors` extension becomes a `MotionAdapter` folder that
    diffusers' `MotionAdapter.from_pretrained` loads. `image_input` (kind, tensors: what `load_with_image_input`
    returns) is the image conditioning a PIA or AnimateLCM-I2V file keeps beside its motion modules.
    """
    path = Path(path)
    metadata = {"format": MOTION_MODULE_FORMAT, "config": json.dumps(module.config.to_dict())}
    if family is not None:
        metadata[METADATA_KEY] = FAMILIES[family].name
    if image_lora is not None:
        metadata[IMAGE_LORA_KEY] = image_lora
    kind, tensors = image_input or (None, {})
    extra = {IMAGE_INPUT_KEYS[kind] + key: value for key, value in tensors.items()} if kind else {}
    if layout == Layout.OFFICIAL:
        return save_state_dict({**module.state_dict(), **extra}, path, metadata)
    if path.suffix == ".safetensors":
        return save_state_dict({**official_to_diffusers(module.state_dict()), **extra}, path, metadata)
    if kind == "i2v":
        raise ConfigError(
            f"{path}: AnimateLCM-I2V's image encoder has no diffusers MotionAdapter form; write a .safetensors file."
        )
    return _save_motion_adapter_folder(module, path, tensors if kind == "pia" else None)


def to_motion_adapter(module: MotionModule, pia: dict[str, torch.Tensor] | None = None):
    """The same weights as a diffusers `MotionAdapter` (for diffusers' `AnimateDiffPipeline`; with PIA's conv_in
    tensors `pia`, for its `PIAPipeline`)."""
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
        conv_in_channels=None if pia is None else pia["weight"].shape[1],
    )
    conv_in = {} if pia is None else {f"conv_in.{key}": value for key, value in pia.items()}
    adapter.load_state_dict({**official_to_diffusers(module.state_dict()), **conv_in})
    return adapter


def _save_motion_adapter_folder(module: MotionModule, path: Path, pia: dict | None = None) -> Path:
    """A `MotionAdapter` folder holding the module's weights in the module's own dtype (with PIA's conv_in, as
    diffusers' PIA adapter holds it)."""
    adapter = to_motion_adapter(module, pia).to(next(module.parameters()).dtype)
    with atomic_path(path, directory=True, replaceable=DIFFUSERS_MODEL_FILES) as temporary:
        adapter.save_pretrained(temporary)
    return path
