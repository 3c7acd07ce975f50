"""What each training stage trains, what it keeps frozen, and how it saves its result.

0. The image model itself, for a base trained from nothing (the shapes world's): `vae` trains the
   autoencoder on images (reconstruction + a light KL term) and sets its latent scaling factor from
   the data; `text_to_image` trains the UNet and the text encoder together on captioned images. Both
   save a complete diffusers model folder (the base folder with the trained parts replaced).
1. `domain_adapter`: a LoRA on the image UNet's self- and cross-attention q, k, v, out, on single
   video frames; saved in the official v3 adapter layout. (`image_finetune`: the whole image UNet,
   e.g. DreamBooth-style; `image_lora`: the same LoRA as the adapter, saved as a diffusers image LoRA
   for `--lora`, e.g. a personalization style.)
2. `motion_module`: a fresh (zero-output) motion module, base and domain adapter frozen; saved in the
   official motion-module layout.
3. `motion_lora`: a LoRA on the motion module's attention projections, everything else frozen; saved
   in the official MotionLoRA layout.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from animatediff.errors import ConfigError
from animatediff.files import atomic_path
from animatediff.formats import VERSION_SETTINGS, load_motion_module, save_motion_module, save_state_dict
from animatediff.image_models import Components, load_base
from animatediff.inflation import AnimateDiffUNet
from animatediff.lora import TrainableLoRA, apply_domain_adapter, attention_projections
from animatediff.motion_module import MotionModule, MotionModuleConfig
from animatediff.training.config import TrainConfig

RESULT_NAMES = {
    "vae": "model",
    "text_to_image": "model",
    "domain_adapter": "domain_adapter.safetensors",
    "image_finetune": "unet",
    "image_lora": "image_lora.safetensors",
    "motion_module": "motion_module.safetensors",
    "motion_lora": "motion_lora.safetensors",
}


class TrainingModel(nn.Module):
    """The video UNet the loss runs through, with the trained module registered beside it (a LoRA
    acts through hooks and is not otherwise a submodule), so data-parallel training syncs it."""

    def __init__(self, video_unet: AnimateDiffUNet, trainable: nn.Module):
        super().__init__()
        self.video_unet = video_unet
        self.trainable = trainable

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.video_unet(sample, timestep, encoder_hidden_states)


class AutoencoderTraining(nn.Module):
    """The `vae` stage's model: reconstruction of single frames through the VAE's posterior."""

    def __init__(self, vae):
        super().__init__()
        self.trainable = vae

    def forward(self, pixels: torch.Tensor, seeds: list[int]):
        """Reconstructions of `pixels` (one frame per seed) from posterior samples drawn with each seed."""
        posterior = self.trainable.encode(pixels).latent_dist
        draws = [torch.randn(posterior.mean.shape[1:], generator=torch.Generator().manual_seed(s)) for s in seeds]
        latents = posterior.mean + posterior.std * torch.stack(draws).to(posterior.mean.device)
        return self.trainable.decode(latents).sample, posterior


@dataclass
class Stage:
    model: TrainingModel | AutoencoderTraining
    components: Components  # the frozen VAE, text encoder and tokenizer (and the UNet, inside `model`)
    save: Callable[[Path], Path]  # writes the result in its official layout


def _fresh_motion_module(config: TrainConfig, unet) -> MotionModule:
    widths = tuple(unet.config.block_out_channels)
    if any(width % 32 for width in widths):
        raise ConfigError(
            f"'base': the motion module's GroupNorm(32) needs UNet widths that are multiples of 32; got {widths}."
        )
    version = config.motion_module_version
    return MotionModule(
        MotionModuleConfig(
            block_out_channels=widths,
            layers_per_block=unet.config.layers_per_block,
            mid_block=version == "v2",
            max_frames=24 if version == "v1" else 32,
            kind=config.motion_module_kind,
            position_encoding=config.position_encoding,
            **VERSION_SETTINGS[version],
        )
    )


def _save_unet(unet) -> Callable[[Path], Path]:
    def save(path: Path) -> Path:
        with atomic_path(path, directory=True) as temporary:
            unet.save_pretrained(temporary)
        return path

    return save


def _save_model_folder(base: Path, **parts: nn.Module) -> Callable[[Path], Path]:
    """Save as a copy of the base folder with the trained parts (vae, unet, text_encoder) replaced."""

    def save(path: Path) -> Path:
        with atomic_path(path, directory=True) as temporary:
            shutil.copytree(base, temporary, ignore=shutil.ignore_patterns(*parts), dirs_exist_ok=True)
            for name, model in parts.items():
                model.save_pretrained(temporary / name)
        return path

    return save


@torch.no_grad()
def latent_scaling_factor(vae, config: TrainConfig, count: int = 256) -> float:
    """1 / the standard deviation of the latents of `count` training images (as SD chose 0.18215)."""
    from animatediff.training.data import VideoClips

    clips = VideoClips(config.items, 1, 1, config.data.size, 0.0)
    pixels = torch.cat([clips[(index % len(clips), index)]["pixels"] for index in range(count)])
    was_training = vae.training
    vae.eval()
    latents = torch.cat([vae.encode(chunk.to(vae.device)).latent_dist.mean for chunk in pixels.split(64)])
    vae.train(was_training)
    return float(1.0 / latents.std())


def _vae_stage(config: TrainConfig, components: Components) -> Stage:
    """The whole autoencoder, or (`decoder_only`) its decoder alone: then the encoder, and so the latents
    a UNet was trained on and their scaling factor, stay as they are (as SD's fine-tuned VAE decoders)."""
    vae = components.vae
    if config.train.decoder_only:
        vae.decoder.requires_grad_(True)
        vae.post_quant_conv.requires_grad_(True)
    else:
        vae.requires_grad_(True)
    save_folder = _save_model_folder(config.base, vae=vae)

    def save(path: Path) -> Path:
        if not config.train.decoder_only:
            vae.register_to_config(scaling_factor=latent_scaling_factor(vae, config))
        return save_folder(path)

    return Stage(AutoencoderTraining(vae), components, save)


def build_stage(config: TrainConfig) -> Stage:
    """Load the models a stage needs, freeze everything but what it trains."""
    components = load_base(config.base)
    for model in (components.unet, components.vae, components.text_encoder):
        model.requires_grad_(False)
    unet = components.unet
    if config.stage == "vae":
        return _vae_stage(config, components)
    if config.stage == "text_to_image":
        unet.requires_grad_(True)
        parts = {"unet": unet}
        if config.train.train_text_encoder:
            parts["text_encoder"] = components.text_encoder.requires_grad_(True)
        return Stage(TrainingModel(AnimateDiffUNet(unet), nn.ModuleDict(parts)), components,
                     _save_model_folder(config.base, **parts))  # fmt: skip
    if config.stage in ("domain_adapter", "image_lora"):
        lora = TrainableLoRA(unet, attention_projections(unet, ("attn1", "attn2")), config.rank)
        weights = lora.official_state_dict if config.stage == "domain_adapter" else lora.diffusers_state_dict
        return Stage(TrainingModel(AnimateDiffUNet(unet), lora), components,
                     lambda path: save_state_dict(weights(), path))  # fmt: skip
    if config.stage == "image_finetune":
        unet.requires_grad_(True)
        return Stage(TrainingModel(AnimateDiffUNet(unet), unet), components, _save_unet(unet))
    if config.domain_adapter is not None:
        apply_domain_adapter(unet, config.domain_adapter, 1.0)
    if config.stage == "motion_module":
        module = (
            load_motion_module(config.motion_module) if config.motion_module else _fresh_motion_module(config, unet)
        )
        module.requires_grad_(True)
        return Stage(TrainingModel(AnimateDiffUNet(unet, module), module), components,
                     lambda path: save_motion_module(module, path))  # fmt: skip
    module = load_motion_module(config.motion_module).requires_grad_(False)
    video_unet = AnimateDiffUNet(unet, module)
    lora = TrainableLoRA(
        module, attention_projections(module, ("attention_blocks.0", "attention_blocks.1")), config.rank
    )
    return Stage(
        TrainingModel(video_unet, lora), components, lambda path: save_state_dict(lora.official_state_dict(), path)
    )
