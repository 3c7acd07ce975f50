"""How much memory a clip needs, estimated from the model's configs before anything loads, and a refusal
when the machine does not have it.

The estimate is the weights plus what grows with the clip: the UNet's activations (the frames of one
context window, or the whole clip, folded into the batch, twice with guidance), the VAE decoder's for
one chunk of frames, and the decoded frames, on top of what the loaded libraries take. Its constants
were measured on the embedded model from 16 to 4096 frames and 32² to 256² (bench/memory.py): the
estimate came to 0.98-1.42× the real peak, so what it refuses would not have fitted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psutil

from animatediff.errors import ConfigError
from animatediff.files import read_json
from animatediff.sampling.clip import DECODE_CHUNK
from animatediff.settings import Settings

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
PROCESS = 450 * 2**20  # torch, diffusers and transformers loaded, before any model (measured: bench/memory.py)
UNET_ACTIVATIONS = 30  # live activation tensors of the first level's width, per latent pixel and frame
VAE_ACTIVATIONS = 8  # live activation tensors of the decoder's first width, per output pixel and frame
WEIGHTS_SLACK = 2.0  # weights are held by the loaders while merging: count them twice


def _weights_bytes(settings: Settings) -> int:
    files = [path for _, path in settings.model.files()]
    total = 0
    for path in files:
        found = [path] if path.is_file() else list(path.rglob("*.safetensors")) + list(path.rglob("*.bin"))
        total += sum(file.stat().st_size for file in found)
    return int(total * WEIGHTS_SLACK * BYTES[settings.dtype] / 2)  # stored mostly in float16: 2 bytes each


def estimate_bytes(settings: Settings, split_guidance: bool = False) -> int:
    """The peak memory generating `settings` should take, in bytes (an estimate from above)."""
    sample, base = settings.sample, Path(settings.model.base)
    unet, vae = _configs(base)
    factor = 2 ** (len(vae["block_out_channels"]) - 1)
    latent_pixels = (sample.height // factor) * (sample.width // factor)
    batch = 1 if split_guidance or sample.guidance_scale <= 1 else 2
    size = BYTES[settings.dtype]
    context = sample.context
    in_flight = min(sample.frames, context.length) if context and context.scope == "unet" else sample.frames
    unet_bytes = UNET_ACTIVATIONS * batch * in_flight * unet["block_out_channels"][0] * latent_pixels * size
    pixels = sample.height * sample.width
    decoder_bytes = VAE_ACTIVATIONS * min(sample.frames, DECODE_CHUNK) * vae["block_out_channels"][0] * pixels * size
    frames_bytes = sample.frames * 3 * pixels * (4 + 4 + 1)  # float frames, their clamped copy, uint8
    return PROCESS + _weights_bytes(settings) + unet_bytes + decoder_bytes + frames_bytes


def _configs(base: Path) -> tuple[dict, dict]:
    if not base.is_dir():  # a single-file SD1.x checkpoint: SD1.5's own configs
        return {"block_out_channels": [320, 640, 1280, 1280]}, {"block_out_channels": [128, 256, 512, 512]}
    return read_json(base / "unet" / "config.json", "UNet config"), read_json(
        base / "vae" / "config.json", "VAE config"
    )


def available_bytes(device: str) -> int:
    """Memory free for the run on `device`: the GPU's free memory, or the machine's available memory."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return int(psutil.virtual_memory().available)


def check_memory(settings: Settings, split_guidance: bool = False) -> None:
    """Refuse, before anything loads, a clip that would not fit in the device's memory."""
    needed, free = estimate_bytes(settings, split_guidance), available_bytes(settings.device)
    if needed > free:
        sample = settings.sample
        raise ConfigError(
            f"{sample.frames} frames at {sample.width}×{sample.height} need about {needed / 2**30:.1f} GiB on "
            f"{settings.device}, which has {free / 2**30:.1f} GiB free; make fewer frames or smaller ones"
            + ("" if split_guidance else ", or add --split-guidance")
            + "."
        )


def check_upscale_memory(settings: Settings) -> None:
    """Refuse, before anything loads, an upscale whose frames (or second pass) would not fit in memory."""
    spec = settings.upscale
    if spec is None:
        return
    big = spec.sample(settings.sample, settings.vae_factor)
    what = f"--upscale {spec.scale:g} to {big.width}×{big.height}"
    if not spec.second_pass:
        check_frames_memory(big.frames, big.width, big.height, what)
        return
    try:
        check_memory(replace(settings, sample=big), settings.split_guidance)
    except ConfigError as error:
        raise ConfigError(f"{what}, its second pass: {error}") from None


def check_frames_memory(frames: int, width: int, height: int, what: str) -> None:
    """Refuse frames made without a model (an upscale alone: uint8, and floats while a model upscaler runs
    on the CPU) that would not fit in the machine's memory."""
    needed, free = PROCESS + frames * 3 * width * height * 9, available_bytes("cpu")
    if needed > free:
        raise ConfigError(
            f"{what}: {frames} frames of {width}×{height} need about {needed / 2**30:.1f} GiB, and "
            f"{free / 2**30:.1f} GiB is free; upscale less or use fewer frames."
        )
