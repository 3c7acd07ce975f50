"""Loading the image model a video is made with: the base, a personalized (DreamBooth) checkpoint, LoRAs,
a replacement VAE.

Everything goes through diffusers' and transformers' own loaders: diffusers folders with
`from_pretrained`, civitai-style single files (LDM key layout) with diffusers' single-file conversion,
image LoRAs (kohya/civitai or diffusers format) with diffusers' LoRA loader, fused into the weights.
Checkpoints are read with this package's safe reader first, so a `.ckpt` never runs pickled code.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.files import read_json
from animatediff.formats import (
    Kind,
    checkpoint_keys,
    classify_keys,
    read_checkpoint,
    read_state_dict,
    require_kind,
)

_TEXT_PREFIX = "cond_stage_model.transformer."


@dataclass
class Components:
    """The image-model parts a video pipeline is assembled from; SDXL's second text encoder (with the
    pooled projection) and its tokenizer beside the first."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    text_encoder_2: CLIPTextModelWithProjection | None = None
    tokenizer_2: CLIPTokenizer | None = None

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Components:
        for model in (self.unet, self.vae, self.text_encoder, self.text_encoder_2):
            if model is not None:
                model.to(device=device, dtype=dtype)
        return self


def is_sdxl(unet: UNet2DConditionModel) -> bool:
    """Whether an image UNet is SDXL's (it takes pooled text embeddings and size ids)."""
    return unet.config.addition_embed_type == "text_time"


def load_base(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Components:
    """An SD1.x or SDXL image model from a diffusers folder (unet/, vae/, text_encoder/, tokenizer/, and
    SDXL's text_encoder_2/ and tokenizer_2/) or a single-file checkpoint (the latter needs the model's
    configs from the hub or its local cache)."""
    path = Path(path)
    if path.is_file():
        return _load_single_file_base(path).to(dtype=dtype)
    missing = [name for name in ("unet", "vae", "text_encoder", "tokenizer") if not (path / name).is_dir()]
    if not path.is_dir() or missing:
        found = "it does not exist" if not path.exists() else f"missing: {', '.join(missing)}"
        raise CheckpointError(
            f"{path}: expected a diffusers model folder with unet/, vae/, text_encoder/ and tokenizer/ "
            f"subfolders, or a single-file .safetensors/.ckpt checkpoint; {found}."
        )
    with _reading(path, "a diffusers model folder (unet/, vae/, text_encoder/, tokenizer/)"):
        components = Components(
            unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype),
            vae=AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype),
            text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype),
            tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
        )
    if not is_sdxl(components.unet):
        return components
    missing = [name for name in ("text_encoder_2", "tokenizer_2") if not (path / name).is_dir()]
    if missing:
        raise CheckpointError(
            f"{path}: its UNet is SDXL's, which needs a second text encoder; missing: {', '.join(missing)}."
        )
    with _reading(path, "an SDXL diffusers folder (text_encoder_2/, tokenizer_2/)"):
        components.text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(
            path, subfolder="text_encoder_2", dtype=dtype
        )
        components.tokenizer_2 = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2")
    return components


@contextmanager
def _reading(path: Path, expected: str) -> Iterator[None]:
    """Turn any failure of diffusers' or transformers' loaders on a user's files into an error naming them."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:  # the loaders raise OSError, ValueError, JSON and safetensors errors, …
        raise CheckpointError(f"{path}: could not be loaded as {expected} ({first_line(error)}).") from error


def _check_sd_checkpoint(path: Path, keys: list[str], family: str | None = None) -> str:
    """The checkpoint's family (sd1 or sdxl); `family`: the one it must be (the base's)."""
    info = require_kind(path, keys, Kind.SD_CHECKPOINT)
    found = info.details["family"]
    if found not in ("sd1", "sdxl"):
        raise CheckpointError(
            f"{path}: this is an {found.upper()} checkpoint; AnimateDiff's motion modules need an "
            "SD1.x or SDXL image model."
        )
    if family is not None and found != family:
        names = {"sd1": "SD1.x", "sdxl": "SDXL"}
        raise CheckpointError(
            f"{path}: this is an {names[found]} checkpoint and the base is {names[family]}; a "
            "personalized model must be made from the base it is given with."
        )
    return found


def _load_single_file_base(path: Path) -> Components:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # they pull in much of transformers

    # refuse unsafe pickles and other kinds of file before diffusers reads it (safetensors: keys only)
    sdxl = _check_sd_checkpoint(path, checkpoint_keys(path)) == "sdxl"
    try:
        if sdxl:
            pipeline = StableDiffusionXLPipeline.from_single_file(str(path))
        else:
            pipeline = StableDiffusionPipeline.from_single_file(str(path), safety_checker=None)
    except Exception as error:  # diffusers' single-file loader: missing configs offline, or a damaged file
        name = "SDXL" if sdxl else "SD1.5"
        raise CheckpointError(
            f"{path}: a single-file checkpoint needs the {name} model configs, which could not be found "
            f"offline or on the hub ({first_line(error)}). Pass a diffusers {name} folder as --base "
            "and this file as --dreambooth instead."
        ) from error
    if sdxl:
        return Components(
            pipeline.unet,
            pipeline.vae,
            pipeline.text_encoder,
            pipeline.tokenizer,
            pipeline.text_encoder_2,
            pipeline.tokenizer_2,
        )
    return Components(pipeline.unet, pipeline.vae, pipeline.text_encoder, pipeline.tokenizer)


def _apply_sdxl_checkpoint(components: Components, path: Path, base: Path) -> Components:
    """An SDXL personalized single file, through diffusers' single-file loader with the base folder's configs."""
    from diffusers import StableDiffusionXLPipeline

    with _reading(path, "a personalized SDXL checkpoint that fits the base's configs"):
        pipeline = StableDiffusionXLPipeline.from_single_file(
            str(path), config=str(base), torch_dtype=components.unet.dtype
        )
    return Components(
        pipeline.unet,
        pipeline.vae,
        pipeline.text_encoder,
        components.tokenizer,
        pipeline.text_encoder_2,
        components.tokenizer_2,
    )


def _text_encoder_weights(state_dict: dict[str, torch.Tensor], text_encoder: CLIPTextModel) -> dict:
    """The checkpoint's CLIP weights under the names this transformers version uses (with or without
    the `text_model.` level)."""
    nested = any(key.startswith("text_model.") for key in text_encoder.state_dict())
    weights = {}
    for key, value in state_dict.items():
        if key.startswith(_TEXT_PREFIX) and not key.endswith("position_ids"):
            name = key[len(_TEXT_PREFIX) :].removeprefix("text_model.")
            weights[f"text_model.{name}" if nested else name] = value
    return weights


def apply_dreambooth(components: Components, path: str | os.PathLike, base: str | os.PathLike) -> Components:
    """Replace the base's UNet, VAE and text-encoder weights with a personalized model's.

    A single-file checkpoint (LDM keys) takes its configs from the base diffusers folder, so this works
    offline; a diffusers folder (a whole model with unet/, or just a UNet folder as `image_finetune`
    writes it) brings its own. Returns new components; the tokenizer is the base's.
    """
    path = Path(path)
    if path.is_dir():
        return _apply_dreambooth_folder(components, path)
    sdxl = components.text_encoder_2 is not None
    if sdxl:
        _check_sd_checkpoint(path, checkpoint_keys(path), "sdxl")
        return _apply_sdxl_checkpoint(components, path, Path(base))
    state_dict = read_state_dict(path)
    _check_sd_checkpoint(path, list(state_dict), "sd1")
    dtype = components.unet.dtype
    with _reading(path, "a personalized SD1.x checkpoint that fits the base's configs"):
        unet = UNet2DConditionModel.from_single_file(
            state_dict, config=str(base), subfolder="unet", torch_dtype=dtype, **_input_channels(state_dict)
        )
        vae = components.vae
        if any(key.startswith("first_stage_model.") for key in state_dict):
            vae = AutoencoderKL.from_single_file(state_dict, config=str(base), subfolder="vae", torch_dtype=dtype)
    text_encoder = components.text_encoder
    text_weights = _text_encoder_weights(state_dict, text_encoder)
    if text_weights:
        with _reading(path, "a personalized SD1.x checkpoint whose text encoder fits the base's"):
            missing, _ = text_encoder.load_state_dict(text_weights, strict=False)
        if missing:
            raise CheckpointError(
                f"{path}: its text encoder does not fit the base's ({len(missing)} weights missing, e.g. {missing[0]})."
            )
    return Components(unet, vae, text_encoder, components.tokenizer, components.text_encoder_2, components.tokenizer_2)


def _input_channels(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """The UNet's input channels as a single file's first convolution has them (9 for an SD1.5 inpainting
    checkpoint, whose base configs say 4); nothing when the file has no UNet."""
    conv_in = state_dict.get("model.diffusion_model.input_blocks.0.0.weight")
    return {} if conv_in is None else {"in_channels": int(conv_in.shape[1])}


def _apply_dreambooth_folder(components: Components, path: Path) -> Components:
    dtype = components.unet.dtype
    unet_folder = path / "unet" if (path / "unet").is_dir() else path
    if not (unet_folder / "config.json").is_file():
        raise CheckpointError(
            f"{path}: expected a diffusers UNet folder (config.json + weights) or a model folder with unet/."
        )
    with _reading(path, "a diffusers UNet folder"):
        unet = UNet2DConditionModel.from_pretrained(unet_folder, torch_dtype=dtype)
    if unet.config.cross_attention_dim != components.unet.config.cross_attention_dim:
        raise CheckpointError(
            f"{path}: its UNet reads text of width {unet.config.cross_attention_dim}, the base's text encoder "
            f"gives {components.unet.config.cross_attention_dim}."
        )
    vae, text_encoder = components.vae, components.text_encoder
    with _reading(path, "a diffusers model folder"):
        if (path / "vae").is_dir():
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
        if (path / "text_encoder").is_dir():
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype)
    return Components(unet, vae, text_encoder, components.tokenizer, components.text_encoder_2, components.tokenizer_2)


def load_vae(path: str | os.PathLike, like: AutoencoderKL) -> AutoencoderKL:
    """An autoencoder to replace `like` (the base's VAE), in its dtype: a diffusers `AutoencoderKL` folder (or a
    model folder's vae/), or a single file (`.safetensors`/`.ckpt`/`.pt`, LDM keys as vae-ft-mse-840000-ema-pruned
    is published, bare or under `first_stage_model.`, or diffusers keys) read with `like`'s config, so it loads
    offline. A VAE making other latents than `like` (channels or downscale factor) is refused naming both."""
    path = Path(path)
    if path.is_dir():
        vae = _load_vae_folder(path, like.dtype)
        _check_latents(path, _latents_of(vae), like)
        return vae
    state_dict = read_state_dict(path)  # a .ckpt is unpickled safely: tensors only
    _check_latents(path, _file_latents(path, state_dict), like)
    with tempfile.TemporaryDirectory() as config, _reading(path, "a VAE whose layers fit the base's VAE config"):
        like.save_config(config)
        return AutoencoderKL.from_single_file(state_dict, config=config, torch_dtype=like.dtype)


def _load_vae_folder(path: Path, dtype: torch.dtype) -> AutoencoderKL:
    folder = path / "vae" if not (path / "config.json").is_file() and (path / "vae").is_dir() else path
    config = folder / "config.json"
    found = read_json(config, "VAE config").get("_class_name") if config.is_file() else None
    if found != "AutoencoderKL":
        what = f"its config.json names {found}" if config.is_file() else "it has no config.json (nor a vae/ folder)"
        raise CheckpointError(f"{path}: expected a diffusers AutoencoderKL folder; {what}.")
    with _reading(path, "a diffusers AutoencoderKL folder"):
        return AutoencoderKL.from_pretrained(folder, torch_dtype=dtype)


def _latents_of(vae: AutoencoderKL) -> tuple[int, int]:
    """(latent channels, downscale factor) of an autoencoder."""
    return vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1)


_DOWNSAMPLE = re.compile(r"encoder\.down(?:_blocks)?\.(\d+)\.downsample(?:rs\.0)?\.conv\.weight$")


def _file_latents(path: Path, state_dict: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(latent channels, downscale factor) of a VAE file in LDM or diffusers keys: the decoder's input width and
    one halving per encoder level with a downsampler."""
    decoder_in = [value for key, value in state_dict.items() if key.endswith("post_quant_conv.weight")]
    encoder_in = any(key.endswith("encoder.conv_in.weight") for key in state_dict)
    if not decoder_in or not encoder_in:
        description = classify_keys(list(state_dict)).description
        raise CheckpointError(
            f"{path}: this file is {description}, not a VAE (an autoencoder with encoder., decoder. and "
            "post_quant_conv. weights)."
        )
    levels = {match.group(1) for key in state_dict if (match := _DOWNSAMPLE.search(key))}
    return decoder_in[0].shape[1], 2 ** len(levels)


def _check_latents(path: Path, found: tuple[int, int], like: AutoencoderKL) -> None:
    expected = _latents_of(like)
    if found != expected:
        raise ConfigError(
            f"vae {path}: its latents have {found[0]} channels at 1/{found[1]} of the frame size; the base's VAE "
            f"makes {expected[0]} channels at 1/{expected[1]}. A replacement VAE must make the latents the base's "
            "UNet was trained on."
        )


TEXT_WIDTHS = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}  # the width of the text states cross-attention reads


def _check_text_width(path: Path, state_dict: dict[str, torch.Tensor], width: int) -> None:
    """Refuse a LoRA whose cross-attention keys and values read text states of another width than the
    base's (an SDXL LoRA, or an SDXL release's LCM LoRA, on an SD1.5 base, or the reverse)."""
    down = re.compile(r"attn2[._]to_[kv].*(lora_down|lora_A|\.down)\.weight$")
    found = {value.shape[1] for key, value in state_dict.items() if down.search(key) and value.ndim == 2}
    if found and width not in found:
        other = found.pop()

        def named(size: int) -> str:
            return f"{size} wide ({TEXT_WIDTHS[size]})" if size in TEXT_WIDTHS else f"{size} wide"

        raise CheckpointError(
            f"lora {path}: made for an image model whose text states are {named(other)}; this "
            f"base's are {named(width)}. Use a LoRA made for this base."
        )


def apply_image_lora(components: Components, path: str | os.PathLike, scale: float = 1.0) -> None:
    """Fuse an image LoRA (kohya/civitai or diffusers format) into the UNet and text encoder at `scale`.

    Uses diffusers' LoRA loader, so the file's own alpha/rank scaling applies as in diffusers,
    ComfyUI and A1111.
    """
    path = Path(path)
    state_dict = read_checkpoint(path, Kind.IMAGE_LORA)
    _check_text_width(path, state_dict, components.unet.config.cross_attention_dim)
    if components.text_encoder_2 is not None:
        from diffusers import StableDiffusionXLPipeline

        pipeline = StableDiffusionXLPipeline(
            vae=components.vae,
            text_encoder=components.text_encoder,
            text_encoder_2=components.text_encoder_2,
            tokenizer=components.tokenizer,
            tokenizer_2=components.tokenizer_2,
            unet=components.unet,
            scheduler=None,
        )
    else:
        from diffusers import StableDiffusionPipeline

        pipeline = StableDiffusionPipeline(
            vae=components.vae,
            text_encoder=components.text_encoder,
            tokenizer=components.tokenizer,
            unet=components.unet,
            scheduler=None,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    name = f"lora_{abs(hash(path))}"
    with _reading(path, "an image LoRA that fits this image model"):
        pipeline.load_lora_weights(state_dict, adapter_name=name)
    pipeline.fuse_lora(lora_scale=scale, adapter_names=[name])
    pipeline.unload_lora_weights()
