"""Upscaling a made clip, and the hires fix's second pass.

Three upscalers, as A1111's hires fix offers them: Lanczos (Pillow), a super-resolution model file that
spandrel recognises (ESRGAN, Real-ESRGAN, SwinIR, …; run in overlapping tiles so memory stays bounded), and
`latent`: the clip's latents themselves resized (bicubic; `latent-nearest`: nearest-exact) before the second
pass. The second pass is this package's video-to-video at a low strength with the clip's own prompt, models,
seed and controls at the new size (in context windows when the clip is long), so the new detail is drawn for
the whole clip at once rather than frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.settings import LATENT_MODES, UpscaleSpec

TILE = 192  # input pixels per tile side of a model upscaler: ×4 models hold 768² outputs at once
TILE_OVERLAP = 16  # input pixels of context read on each side of a tile (its outputs dropped)
# what super-resolution releases nest their tensors under, in the order spandrel's loader unwraps them
SR_WRAPPERS = ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net")


# -- pixel upscalers ------------------------------------------------------------------------------------


def lanczos(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """F×H×W×3 uint8 frames resized to `size` = (width, height) with Pillow's Lanczos filter."""
    resize = Image.Resampling.LANCZOS
    return np.stack([np.asarray(Image.fromarray(frame).resize(size, resize)) for frame in frames])


def tiled(
    net: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, scale: int, tile: int, overlap: int
) -> torch.Tensor:
    """`net` (1 c h w → 1 c' h·scale w·scale) run on `image` in tile×tile pieces, each read with `overlap`
    pixels of context on every side (cut at the image's edges) whose outputs are dropped: the result equals one
    whole run wherever `overlap` covers the network's receptive field, with memory bounded by the tile."""
    height, width = image.shape[-2:]
    rows = []
    for top in range(0, height, tile):
        row = []
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            piece = net(image[..., y0 : min(bottom + overlap, height), x0 : min(right + overlap, width)])
            kept = piece[..., (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale]
            row.append(kept)
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2)


def load_model_upscaler(path: Path, device: str = "cpu"):
    """A super-resolution model from a file spandrel recognises (its tensors read safely by this package,
    never unpickled): a spandrel `ImageModelDescriptor` in eval mode on `device`."""
    try:
        import spandrel
    except ImportError as error:  # spandrel imports torchvision, which needs a torch build it matches
        raise ConfigError(
            f"upscaler {path}: model-file upscalers need spandrel (pip install 'animatediff[upscale]'), which "
            f"cannot be imported here ({first_line(error)}); use --upscaler lanczos or latent."
        ) from error
    from animatediff.formats.safe import read_state_dict

    # as spandrel's own file loader reads it: Real-ESRGAN's and SwinIR's releases nest their tensors under
    # `params_ema` or `params`, some training scripts prefix every key with `module.`
    try:
        state = spandrel.canonicalize_state_dict(read_state_dict(path, SR_WRAPPERS))
    except CheckpointError as error:  # not a file of tensors at all: said as the other refusals say it
        raise CheckpointError(f"upscaler {error}") from error
    try:
        model = spandrel.ModelLoader(device=torch.device(device)).load_from_state_dict(state)
    except Exception as error:  # spandrel's architecture detection refuses unknown keys in many ways
        raise CheckpointError(
            f"upscaler {path}: not a super-resolution model spandrel knows ({first_line(error)}); expected an "
            "ESRGAN, Real-ESRGAN, SwinIR or other spandrel-supported file."
        ) from error
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose != "SR":
        raise CheckpointError(
            f"upscaler {path}: spandrel reads it as a {getattr(model, 'purpose', 'non-image')} model "
            f"({model.architecture.name}); expected a super-resolution model."
        )
    return model.eval()


@torch.no_grad()
def model_upscale(
    net: Callable[[torch.Tensor], torch.Tensor],
    scale: int,
    frames: np.ndarray,
    size: tuple[int, int],
    tile: int = TILE,
    overlap: int = TILE_OVERLAP,
    device: str = "cpu",
) -> np.ndarray:
    """F×H×W×3 uint8 frames through a ×`scale` super-resolution `net` (floats in [0, 1], `1 3 h w`), one frame
    at a time in tiles, then to `size` = (width, height) with Lanczos where the model's own scale differs."""
    upscaled = []
    for frame in frames:
        image = rearrange(torch.from_numpy(frame), "h w c -> 1 c h w").to(device).float() / 255
        output = tiled(net, image, scale, tile, overlap).clamp(0, 1)
        upscaled.append(rearrange((output * 255).round().byte().cpu(), "1 c h w -> h w c").numpy())
    upscaled = np.stack(upscaled)
    return upscaled if upscaled.shape[2:0:-1] == size else lanczos(upscaled, size)


def upscale_pixels(frames: np.ndarray, size: tuple[int, int], model=None, device: str = "cpu") -> np.ndarray:
    """F×H×W×3 uint8 frames at `size` = (width, height), by a super-resolution `model` (`load_model_upscaler`)
    or, without one, Lanczos."""
    if model is None:
        return lanczos(frames, size)
    return model_upscale(model, model.scale, frames, size, device=device)


# -- latent upscaling ----------------------------------------------------------------------------------


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Video latents (b c f h w) resized to `size` = (latent height, latent width) frame by frame, as A1111's
    latent upscalers resize them (`bicubic` or `nearest-exact`)."""
    flat = rearrange(latents, "b c f h w -> (b f) c h w").float()
    resized = F.interpolate(flat, size=size, mode=mode, **({"align_corners": False} if mode == "bicubic" else {}))
    return rearrange(resized, "(b f) c h w -> b c f h w", b=latents.shape[0]).to(latents.dtype)


def latent_mode(spec: UpscaleSpec) -> str | None:
    """The interpolation mode of a latent upscaler (None: a pixel one)."""
    return LATENT_MODES.get(spec.upscaler)


# -- an existing clip, without a second pass ---------------------------------------------------------


def upscale_frames(frames: np.ndarray, spec: UpscaleSpec, output: Path, fps: float, record: dict) -> Path:
    """Upscale F×H×W×3 uint8 `frames` by a pixel upscaler alone (no second pass: no image model) and write
    `output`, its sidecar the spec's settings with `record` added."""
    from animatediff.export import write_video

    height, width = frames.shape[1:3]
    model = load_model_upscaler(spec.model) if spec.model is not None else None
    made = upscale_pixels(frames, spec.size(width, height, 1), model)
    return write_video(made, output, fps=fps, settings={**spec.describe(width, height, 1), **record})
