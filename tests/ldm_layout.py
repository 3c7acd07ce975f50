"""Rebuild a civitai-style single-file (LDM key layout) SD1.x checkpoint from diffusers models.

The key table is the original Stable Diffusion repository's layout: `model.diffusion_model.` for the
UNet (input/middle/output blocks), `first_stage_model.` for the VAE, `cond_stage_model.transformer.`
for the CLIP text encoder. The tests load these files back through the package's own loaders, which use
diffusers' conversion, so the two directions are written independently.
"""

from __future__ import annotations

import torch

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = (
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("conv_in", "input_blocks.0.0"),
    ("conv_norm_out", "out.0"),
    ("conv_out", "out.2"),
)


def _unet_prefixes(unet) -> list[tuple[str, str]]:
    config = unet.config
    levels, layers = len(config.block_out_channels), config.layers_per_block
    pairs = []
    for i in range(levels):
        has_attention = config.down_block_types[i].startswith("CrossAttn")
        for j in range(layers):
            slot = (layers + 1) * i + j + 1
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{slot}.0."))
            if has_attention:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{slot}.1."))
        if i < levels - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(layers + 1) * (i + 1)}.0.op."))
        up_attention = config.up_block_types[i].startswith("CrossAttn")
        for j in range(layers + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{(layers + 1) * i + j}.0."))
            if up_attention:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{(layers + 1) * i + j}.1."))
        if i < levels - 1:
            index = 2 if up_attention else 1
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{(layers + 1) * i + layers}.{index}."))
    pairs += [
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    return pairs


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    prefixes = _unet_prefixes(unet)
    converted = {}
    for key, value in unet.state_dict().items():
        new = key
        for hf, sd in _UNET_TOP:
            if key.startswith(hf + "."):
                new = sd + key[len(hf) :]
        for hf, sd in prefixes:
            if key.startswith(hf):
                new = sd + key[len(hf) :]
                if ".resnets." in hf:
                    for hf_name, sd_name in _RESNET:
                        new = new.replace(f".{hf_name}.", f".{sd_name}.")
        converted["model.diffusion_model." + new] = value
    return converted


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.") for j in range(2)]
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
    for i in range(levels):
        pairs.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."))
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        pairs.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block."))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample."))
    attention = (
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    )
    converted = {}
    for key, value in vae.state_dict().items():
        new = key
        for hf, sd in pairs:
            if key.startswith(hf):
                new = sd + key[len(hf) :]
        new = new.replace(".conv_shortcut.", ".nin_shortcut.")
        if ".mid.attn_1." in new:
            for hf, sd in attention:
                new = new.replace(f".attn_1.{hf}", f".attn_1.{sd}")
            if new.endswith(".weight") and value.ndim == 2:
                value = value[:, :, None, None]
        converted["first_stage_model." + new] = value
    return converted


def text_encoder_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """SD1.x checkpoints hold the transformers CLIPTextModel under `cond_stage_model.transformer.text_model.`."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    state["embeddings.position_ids"] = torch.arange(77)[None]
    return {"cond_stage_model.transformer.text_model." + k: v for k, v in state.items()}


def to_ldm_checkpoint(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    return {**unet_to_ldm(unet), **vae_to_ldm(vae), **text_encoder_to_ldm(text_encoder)}
