"""The shapes world's image model before training: configs sized for a CPU, and a tokenizer for its words.

`scaffold` writes a complete diffusers Stable Diffusion folder (vae/, text_encoder/, tokenizer/, unet/,
scheduler/) whose models are seeded random initialisations. The training stages `vae` and
`text_to_image` then train it in place of a downloaded base, and everything downstream (personalization,
domain adapter, motion module, MotionLoRAs) uses the result exactly as it would use SD1.5.

Sizes, chosen for learnability per CPU minute (see docs/results.md for the measurements):
- frames 32×32; VAE with three levels (32, 64, 64 channels), so latents are 4×8×8;
- UNet on 8×8 latents: two levels (64, 128 channels), cross-attention in both and in the middle;
- text encoder: a 2-layer CLIP transformer of width 64 over a word-level vocabulary of the world.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from animatediff.families import OFFICIAL_DDIM
from animatediff.files import atomic_path
from animatediff.shapes.world import BACKGROUNDS, CAMERA_MOTIONS, COLOURS, IMAGE_SIZE, MOTIONS, SHAPES, STYLES

MAX_TOKENS = 32
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=IMAGE_SIZE,
)
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE // 4,
    in_channels=4,
    out_channels=4,
    block_out_channels=(64, 128),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=32,
)
TEXT_WIDTH = 64


def world_words() -> list[str]:
    """Every word a caption of the world uses, including the style triggers."""
    phrases = [*SHAPES, *COLOURS, *BACKGROUNDS, *MOTIONS, *CAMERA_MOTIONS, *STYLES.values()]
    phrases += ["a", "an", "on", "background", "camera", "and"]
    return sorted({word for phrase in phrases for word in phrase.split()})


def _alphabet() -> list[str]:
    """Printable ASCII, alone and word-final: any other word falls back to these pieces."""
    characters = [chr(code) for code in range(33, 127)]
    return characters + [c + "</w>" for c in characters]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the best-ranked adjacent pair until none applies."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks) + 1), i) for i, pair in enumerate(zip(pieces, pieces[1:], strict=False))]
        rank, i = min(pairs)
        if rank > len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def world_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE vocabulary in which every world word is one token.

    Merges are added word by word, each after all earlier ones, so a new merge never changes how an
    earlier word is split (it has the lowest priority, and the earlier word always had a better one).
    """
    ranks: dict[tuple[str, str], int] = {}
    for word in world_words():
        while len(pieces := _bpe(word, ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
    tokens = list(SPECIAL_TOKENS) + _alphabet()
    tokens += [a + b for a, b in ranks if a + b not in tokens]
    return {token: index for index, token in enumerate(tokens)}, list(ranks)


def world_tokenizer() -> CLIPTokenizer:
    vocabulary, merges = world_vocabulary()
    return CLIPTokenizer(vocab=vocabulary, merges=merges, model_max_length=MAX_TOKENS)


def text_encoder_config(vocabulary_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocabulary_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def scaffold(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write an untrained shapes-world Stable Diffusion folder (seeded random weights)."""
    folder = Path(folder)
    tokenizer = world_tokenizer()
    torch.manual_seed(seed)
    models = {
        "vae": AutoencoderKL(**VAE_CONFIG),
        "text_encoder": CLIPTextModel(text_encoder_config(len(tokenizer))),
        "unet": UNet2DConditionModel(**UNET_CONFIG),
    }
    with atomic_path(folder, directory=True) as temporary:
        for name, model in models.items():
            model.save_pretrained(temporary / name)
        tokenizer.save_pretrained(temporary / "tokenizer")
        (temporary / "scheduler").mkdir()
        scheduler = {"_class_name": "DDIMScheduler", **OFFICIAL_DDIM}
        (temporary / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2))
        index = {
            "_class_name": "StableDiffusionPipeline",
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (temporary / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
