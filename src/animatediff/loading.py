"""From a description of the models to use (`ModelSpec`) to a ready video pipeline.

`build_pipeline` checks that every file exists before anything loads, then loads and merges them in
the official order: personalized image weights (then a replacement VAE), image LoRAs, domain adapter,
motion module, MotionLoRAs. (The motion module and its MotionLoRAs are read first: they are small, so a damaged one
fails before the base model has been loaded.) Merges happen in float32; the pipeline is cast afterwards.
"""

from __future__ import annotations

from pathlib import Path

import torch

from animatediff.embeddings import load_embeddings
from animatediff.errors import CheckpointError, first_line
from animatediff.families import make_scheduler
from animatediff.formats import load_with_image_input
from animatediff.image_models import apply_dreambooth, apply_image_lora, load_base, load_vae
from animatediff.lora import apply_domain_adapter, apply_motion_lora
from animatediff.motion_module import MotionModule
from animatediff.pipeline import AnimateDiffPipeline
from animatediff.settings import ModelSpec


def load_video_motion(spec: ModelSpec) -> tuple[MotionModule | None, str | None, dict]:
    """The spec's motion module with its MotionLoRAs merged, or None (independent frames); and the image
    conditioning its file stores beside it (PIA's conv_in, AnimateLCM-I2V's image encoder: kind and tensors)."""
    if spec.motion_module is None:
        return None, None, {}
    motion_module, kind, tensors = load_with_image_input(spec.motion_module, **spec.motion_module_settings)
    for path, scale in spec.motion_loras:
        apply_motion_lora(motion_module, path, scale)
    return motion_module, kind, tensors


def image_encoder(path: Path, kind: str | None, tensors: dict, levels: int):
    """AnimateLCM-I2V's image encoder from its tensors (None for any other file)."""
    if kind != "i2v":
        return None
    from animatediff.control.image_input import ImageEncoder

    try:
        return ImageEncoder.from_state_dict(tensors, levels)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its image encoder (img_encoder.…) does not load: {first_line(error)}"
        ) from error


def install_pia(components, path: Path, tensors: dict) -> None:
    """PIA's 9-channel conv_in in the image UNet (`control.image_input.pia_conv_in`)."""
    from animatediff.control.image_input import pia_conv_in

    try:
        components.unet.conv_in = pia_conv_in(components.unet.conv_in, tensors)
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"{path}: its conv_in does not fit the base model's UNet: {first_line(error)}."
        ) from error


def build_pipeline(
    spec: ModelSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    split_guidance: bool = False,
    compile: bool = False,
    ip_adapter: tuple[Path, float] | None = None,
) -> AnimateDiffPipeline:
    """Load and merge everything `spec` names; the pipeline on `device` in `dtype`.

    `split_guidance` runs the guidance batch's halves one after the other (less memory); `compile`
    compiles the UNet with `torch.compile` (the first step pays for it); `ip_adapter` (path, scale) installs
    an IP-Adapter into the UNet."""
    motion_module, image_input, image_tensors = load_video_motion(spec)
    components = load_base(spec.base)
    if spec.dreambooth is not None:
        components = apply_dreambooth(components, spec.dreambooth, spec.base)
    if spec.vae is not None:
        components.vae = load_vae(spec.vae, like=components.vae)
    if spec.embeddings:  # textual inversion: each file a word of the tokenizer (`animatediff.embeddings`)
        load_embeddings(components.tokenizer, components.text_encoder, list(spec.embeddings))
    for path, scale in spec.loras:
        apply_image_lora(components, path, scale)
    if spec.domain_adapter is not None:
        apply_domain_adapter(components.unet, spec.domain_adapter, spec.domain_adapter_scale)
    if image_input == "pia":  # after the merges: PIA keeps the (personalized) image UNet's own conv_in for the latents
        install_pia(components, spec.motion_module, image_tensors)
    levels = len(components.unet.config.block_out_channels)
    encoder = image_encoder(spec.motion_module, image_input, image_tensors, levels)
    scheduler = make_scheduler(spec.sampler_name, spec.noise_schedule)
    pipeline = AnimateDiffPipeline.from_components(components, motion_module, scheduler, split_guidance, encoder)
    pipeline.to(device, dtype)
    if ip_adapter is not None:
        from animatediff.conditioning import install_ip_adapter

        install_ip_adapter(pipeline, *ip_adapter)
    # nothing here is trained: reconstruction guidance differentiates the latents alone, and parameters that asked
    # for gradients would have every layer's input saved for them
    for model in (pipeline.unet, pipeline.vae, pipeline.text_encoder, pipeline.text_encoder_2):
        if model is not None:
            model.requires_grad_(False)
    return pipeline.compile() if compile else pipeline
