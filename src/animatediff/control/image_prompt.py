"""IP-Adapter (image prompt), through diffusers' own loaders: the adapter's image projection and its
extra key/value weights go into the UNet with `_load_ip_adapter_weights`, the image through a CLIP
vision encoder; the unconditional half of the guidance batch gets a zero embedding (or, for adapters
that read the encoder's hidden states, those of a black image), as diffusers' pipelines compute it."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0
from diffusers.models.embeddings import ImageProjection
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from animatediff.control.conditions import ImagePrompt


def load_ip_adapter(unet: UNet2DConditionModel, state_dict: dict[str, torch.Tensor], scale: float = 1.0) -> None:
    """Put an IP-Adapter (flat keys `image_proj.…` and `ip_adapter.…`, as its files hold them) into `unet`."""
    parts: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, tensor in state_dict.items():
        part, _, rest = key.partition(".")
        if part not in parts:
            raise ValueError(f"an IP-Adapter holds image_proj.* and ip_adapter.* tensors; found {key!r}")
        parts[part][rest] = tensor
    unet._load_ip_adapter_weights([parts], low_cpu_mem_usage=False)
    set_ip_adapter_scale(unet, scale)


def set_ip_adapter_scale(unet: UNet2DConditionModel, scale: float) -> None:
    for processor in unet.attn_processors.values():
        if isinstance(processor, IPAdapterAttnProcessor | IPAdapterAttnProcessor2_0):
            processor.scale = [scale] * len(processor.scale)


def reads_hidden_states(unet: UNet2DConditionModel) -> bool:
    """Whether the loaded adapter projects the encoder's hidden states (IP-Adapter Plus) rather than its
    image embedding."""
    return not isinstance(unet.encoder_hid_proj.image_projection_layers[0], ImageProjection)


@torch.no_grad()
def image_prompt(
    encoder: CLIPVisionModelWithProjection,
    processor: CLIPImageProcessor,
    image: np.ndarray,
    hidden_states: bool,
    guidance: bool,
) -> ImagePrompt:
    """The image prompt of `image` (H×W×3 uint8), `[uncond; cond]` when `guidance`."""
    pixels = processor(image, return_tensors="pt").pixel_values.to(device=encoder.device, dtype=encoder.dtype)

    def embed(values: torch.Tensor) -> torch.Tensor:
        if hidden_states:
            return encoder(values, output_hidden_states=True).hidden_states[-2]
        return encoder(values).image_embeds

    cond = embed(pixels)[None]
    if not guidance:
        return ImagePrompt(cond)
    uncond = embed(torch.zeros_like(pixels))[None] if hidden_states else torch.zeros_like(cond)
    return ImagePrompt(torch.cat([uncond, cond]))
