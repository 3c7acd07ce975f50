"""Tiny seeded models with Stable Diffusion's structure, built by the tests themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

from animatediff import MotionModule, MotionModuleConfig

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "official-v2"
TOKENIZER = GOLDEN / "base_model" / "tokenizer"

# Two levels keep the tests fast while keeping SD's block types, two layers per block and GroupNorm(32).
WIDTHS = (32, 64)


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=WIDTHS,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=32,
        layers_per_block=1,
    ).eval()


def tiny_text_encoder(seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    return CLIPTextModel(config).eval()


def tiny_image_encoder() -> tuple[CLIPVisionModelWithProjection, CLIPImageProcessor]:
    """A CLIP vision encoder (32 wide, 17 tokens of 32×32 images) with its processor, for IP-Adapters."""
    torch.manual_seed(4)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPVisionModelWithProjection(config).eval(), processor


def tiny_config(**overrides) -> MotionModuleConfig:
    return MotionModuleConfig(block_out_channels=WIDTHS, layers_per_block=2, **overrides)


def random_motion_module(config: MotionModuleConfig | None = None, seed: int = 0, std: float = 0.1) -> MotionModule:
    """A motion module with every weight random (proj_out too), so it really changes the output."""
    torch.manual_seed(seed)
    module = MotionModule(config or tiny_config())
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, std)
    return module.eval()


def save_tiny_base(folder: Path, seed: int = 0) -> Path:
    """A diffusers folder of a tiny SD1.x-shaped image model (latent downscale factor 2)."""
    tiny_unet(seed).save_pretrained(folder / "unet")
    tiny_vae(seed).save_pretrained(folder / "vae")
    tiny_text_encoder(seed).save_pretrained(folder / "text_encoder")
    shutil.copytree(TOKENIZER, folder / "tokenizer")
    return folder


def assert_bfloat16_close(full: np.ndarray, half: np.ndarray) -> None:
    """A bfloat16 run's frames against the float32 run's: another rounding of the same clip (not equal, within
    4 of 255 pixel levels on average)."""
    difference = np.abs(full.astype(int) - half.astype(int)).mean()
    assert 0 < difference < 4, f"bfloat16 frames differ from float32 by {difference:.2f} pixel levels on average"
