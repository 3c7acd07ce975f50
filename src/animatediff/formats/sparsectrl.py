"""SparseCtrl encoder files: the official `.ckpt` (tensors under `controlnet`, or bare), `.safetensors` in the
official or diffusers key layout, and diffusers' `SparseControlNetModel` folders; reading any of them into an
encoder (`animatediff.sparsectrl.SparseCtrl`) checked against the base model, writing one in either layout,
converting between them, and describing one for `animatediff inspect`.

Inside this package an encoder's tensors are in the official layout (the image layers under diffusers'
ControlNet names, its motion modules under the official motion-module names); a diffusers folder's config
and the official YAML fill in the settings weights cannot show.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.files import atomic_path, read_json
from animatediff.formats.identify import KIND_NAMES, Kind, classify_keys
from animatediff.formats.layouts import diffusers_to_official, official_to_diffusers
from animatediff.formats.safe import DIFFUSERS_MODEL_FILES, read_state_dict, save_state_dict, weights_file
from animatediff.sparsectrl import (
    SparseCtrl,
    SparseCtrlConfig,
    build_sparsectrl,
    check_settings,
    encoder_shape,
    infer_config,
)

SPARSECTRL_CLASS = "SparseControlNetModel"  # diffusers' class name, in a folder's config.json
_IMAGE_SETTINGS = (  # the image UNet's settings a diffusers folder keeps that its weights cannot show
    "attention_head_dim",
    "num_attention_heads",
    "norm_num_groups",
    "flip_sin_to_cos",
    "freq_shift",
    "use_linear_projection",
)


def read_sparsectrl(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """A SparseCtrl file's or folder's tensors in the official layout, and the settings saved beside them."""
    path = Path(path)
    saved = {}
    if path.is_dir():
        config_file = path / "config.json"
        saved = read_json(config_file, "SparseCtrl folder's config") if config_file.is_file() else {}
        if saved.get("_class_name") != SPARSECTRL_CLASS:
            raise CheckpointError(
                f"sparsectrl {path}: a folder without a {SPARSECTRL_CLASS} config.json; "
                "expected a SparseCtrl checkpoint (.ckpt, .safetensors) or a diffusers SparseCtrl "
                "folder."
            )
        path = weights_file(path)
    state = read_state_dict(path)
    kind = classify_keys(list(state)).kind
    if kind != Kind.SPARSECTRL:
        what = "a ControlNet (give it with --controlnet)" if kind == Kind.CONTROLNET else KIND_NAMES[kind]
        raise CheckpointError(
            f"sparsectrl {path}: this file is {what}, not a SparseCtrl encoder (a ControlNet's "
            "condition embedding with motion modules)."
        )
    return _to_official(state), saved


def _to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official key names for a SparseCtrl state dict in either layout (diffusers' motion-module names
    renamed; its one position table per block kept for the one attention)."""
    if any("temporal_transformer." in key for key in state):
        return state
    motion = {key: value for key, value in state.items() if ".motion_modules." in key}
    converted = {key: value for key, value in state.items() if ".motion_modules." not in key}
    for key, value in diffusers_to_official(motion).items():
        if not key.endswith("attention_blocks.1.pos_encoder.pe"):
            converted[key] = value
    return converted


def load_sparsectrl(path: str | os.PathLike, unet: UNet2DConditionModel, settings: dict | None = None) -> SparseCtrl:
    """A SparseCtrl encoder from a file or folder, checked to fit `unet` (the base model's image UNet).
    `settings`: the official YAML's `controlnet_additional_kwargs`, where a prompt config gives one."""
    state, saved = read_sparsectrl(path)
    config = infer_config(state, {**saved, **(settings or {})})
    check_settings(path, config, settings or {})
    found = encoder_shape(state)
    wanted = {
        "block_out_channels": tuple(unet.config.block_out_channels),
        "layers_per_block": unet.config.layers_per_block,
        "cross_attention_dim": unet.config.cross_attention_dim,
    }
    if found != wanted:
        raise ConfigError(
            f"sparsectrl {path} was made for an image UNet with widths {found['block_out_channels']}, "
            f"{found['layers_per_block']} layers per block and text width {found['cross_attention_dim']}; the base "
            f"model's UNet has widths {wanted['block_out_channels']}, {wanted['layers_per_block']} layers per block "
            f"and text width {wanted['cross_attention_dim']}: use a SparseCtrl made for this base model."
        )
    model = build_sparsectrl(unet, config)
    own = model.controlnet.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        extra = f"; unexpected: {', '.join(unexpected[:3])}" if unexpected else ""
        raise CheckpointError(
            f"sparsectrl {path}: its tensors do not fit a SparseCtrl encoder (missing: "
            f"{', '.join(missing[:3]) or 'none'}{extra})."
        )
    try:
        model.controlnet.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"sparsectrl {path}: tensors of the wrong shape ({first_line(error)}).") from error
    return model


def save_sparsectrl(model: SparseCtrl, path: str | os.PathLike, layout: str = "official") -> Path:
    """Write the encoder: `official` keys as `.safetensors`, or `diffusers` as a `SparseControlNetModel`
    folder (a path without an extension) or `.safetensors` with its keys."""
    unet = model.controlnet.config
    image = {name: unet[name] for name in _IMAGE_SETTINGS if name in unet}
    return write_sparsectrl(model.official_state_dict(), model.config, path, layout, image)


def write_sparsectrl(
    state: dict[str, torch.Tensor],
    config: SparseCtrlConfig,
    path: str | os.PathLike,
    layout: str = "official",
    image: dict | None = None,
) -> Path:
    """Write official-layout tensors in `layout`; `image`: the image UNet's settings that weights cannot show
    (attention heads, GroupNorm groups), SD1.5's when not given."""
    from diffusers import SparseControlNetModel

    path = Path(path)
    state = {key: value.detach().contiguous() for key, value in state.items()}
    metadata = {"animatediff.sparsectrl": config.kind}
    if layout == "official":
        return save_state_dict(state, path, metadata)
    converted = official_to_diffusers(state)
    if path.suffix:
        return save_state_dict(converted, path, metadata)
    diffusers_model = SparseControlNetModel.from_config(diffusers_config(state, config, image or {}))
    diffusers_model.load_state_dict(converted)
    dtype = next(iter(state.values())).dtype
    if dtype != diffusers_model.dtype:
        diffusers_model = diffusers_model.to(dtype)
    with atomic_path(path, directory=True, replaceable=DIFFUSERS_MODEL_FILES) as temporary:
        diffusers_model.save_pretrained(temporary)
    return path


def diffusers_config(state: dict[str, torch.Tensor], config: SparseCtrlConfig, image: dict) -> dict:
    """diffusers' `SparseControlNetModel` config for an encoder's (official-layout) weights."""
    shape = encoder_shape(state)
    levels = len(shape["block_out_channels"])
    down = [
        "CrossAttnDownBlockMotion" if f"down_blocks.{i}.attentions.0.proj_in.weight" in state else "DownBlockMotion"
        for i in range(levels)
    ]
    projections = (value for key, value in state.items() if key.endswith("attentions.0.proj_in.weight"))
    linear = next((value.ndim == 2 for value in projections), False)
    return {
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "use_linear_projection": linear,
        **image,
        "in_channels": state["conv_in.weight"].shape[1],
        "conditioning_channels": config.conditioning_channels,
        "down_block_types": down,
        "block_out_channels": list(shape["block_out_channels"]),
        "layers_per_block": shape["layers_per_block"],
        "cross_attention_dim": shape["cross_attention_dim"],
        "conditioning_embedding_out_channels": list(config.embedding_channels),
        "temporal_transformer_layers_per_block": [config.motion_blocks] * levels,
        "motion_max_seq_length": config.max_frames,
        "motion_num_attention_heads": config.motion_heads,
        "concat_conditioning_mask": config.mask,
        "use_simplified_condition_embedding": config.latent_condition,
    }


def convert_sparsectrl(
    source: str | os.PathLike, target: str | os.PathLike, layout: str, dtype: torch.dtype | None = None
) -> Path:
    """Rewrite a SparseCtrl file or folder in `layout` (`official` or `diffusers`), its tensors in `dtype`
    (None: as stored)."""
    state, saved = read_sparsectrl(source)
    if dtype is not None:
        state = {key: value.to(dtype) for key, value in state.items()}
    image = {name: saved[name] for name in _IMAGE_SETTINGS if name in saved}
    return write_sparsectrl(state, infer_config(state, saved), target, layout, image)


def describe(path: str | os.PathLike) -> dict:
    """What `animatediff inspect` shows of a SparseCtrl file or folder."""
    state, saved = read_sparsectrl(path)
    config = infer_config(state, saved)
    shape = encoder_shape(state)
    return {
        "condition": config.kind,
        "conditioning_channels": config.conditioning_channels,
        "mask": config.mask,
        "motion_modules": sum(1 for key in state if key.endswith("proj_in.weight") and "motion_modules" in key),
        "motion_heads": config.motion_heads,
        "max_frames": config.max_frames,
        **shape,
    }
