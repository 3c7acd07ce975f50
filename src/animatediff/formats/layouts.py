"""The key layouts checkpoints name their tensors in, and renaming motion-module keys between two of them.

Motion modules and MotionLoRAs exist in two key layouts: the official release's
(`down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q`)
and diffusers' (`…motion_modules.0.transformer_blocks.0.attn1.to_q`, MotionLoRAs prefixed `unet.`).
Everything in this package works in the official layout; diffusers files are renamed on the way in. The
renames are diffusers' own conversion rules, kept reversible.
"""

from __future__ import annotations

import re
from enum import StrEnum

import torch


class Layout(StrEnum):
    """How a checkpoint names its tensors."""

    OFFICIAL = "official"
    DIFFUSERS = "diffusers"
    KOHYA = "kohya"
    LDM = "ldm"
    UNKNOWN = "unknown"


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
