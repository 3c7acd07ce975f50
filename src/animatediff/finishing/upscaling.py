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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from animatediff.control import Conditions, InitVideo
from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.pipeline import to_uint8
from animatediff.settings import LATENT_MODES, Sample, Settings, UpscaleSpec

TILE = 192  # input pixels per tile side of a model upscaler: ×4 models hold 768² outputs at once
TILE_OVERLAP = 16  # input pixels of context read on each side of a tile (its outputs dropped)


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

    state = read_state_dict(path)
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


# -- the hires fix ---------------------------------------------------------------------------------------


@torch.no_grad()
def encoded(pipeline, frames: np.ndarray, seed: int) -> torch.Tensor:
    """F×H×W×3 uint8 frames as video latents (1 c f h w), posterior samples drawn from the seed."""
    from animatediff.conditioning import as_tensor
    from animatediff.control.init_latents import encode_frames

    generator = torch.Generator("cpu").manual_seed(seed)
    latents = encode_frames(pipeline.vae, as_tensor(frames), generator).float()
    return rearrange(latents, "f c h w -> 1 c f h w")


def upscaled(
    spec: UpscaleSpec,
    sample: Sample,
    clip: np.ndarray | torch.Tensor,
    pipeline=None,
    conditions: Callable[[Sample], Conditions | None] | None = None,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    model=None,
) -> np.ndarray:
    """A made `clip`, its frames (F×H×W×3 uint8) or its latents (1 c f h w), upscaled by `spec` and, unless its
    strength is 0, denoised again by `pipeline` from the upscaled clip at `spec.sample(sample)`
    (`conditions(sample)`: the clip's conditions at a sample's size; none if not given): F×H'×W'×3 uint8.
    `model`: the spec's super-resolution model, already loaded."""
    from animatediff.conditioning import as_tensor

    device = str(pipeline.device) if pipeline is not None else "cpu"
    if spec.model is not None and model is None:
        model = load_model_upscaler(spec.model, device)
    factor = pipeline.vae_scale_factor if pipeline is not None else 1
    big = spec.sample(sample, factor)
    mode = latent_mode(spec)
    if mode is not None:
        latents = clip if isinstance(clip, torch.Tensor) else encoded(pipeline, clip, sample.seed)
        latents = upscale_latents(latents, (big.height // factor, big.width // factor), mode)
        if not spec.second_pass:
            return to_uint8(pipeline.decode(latents))
        init = InitVideo(None, spec.strength, latents=rearrange(latents, "1 c f h w -> f c h w"))
    else:
        frames = to_uint8(pipeline.decode(clip)) if isinstance(clip, torch.Tensor) else clip
        frames = upscale_pixels(frames, (big.width, big.height), model, device)
        if not spec.second_pass:
            return frames
        init = InitVideo(as_tensor(frames), spec.strength)
    given = (conditions(big) if conditions is not None else None) or Conditions()
    return to_uint8(pipeline.generate(big, progress, replace(given, init=init), on_step))


def hires_fix(
    pipeline,
    sample: Sample,
    spec: UpscaleSpec,
    conditions: Callable[[Sample], Conditions],
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The clip `sample` made by `pipeline` with `conditions(sample)`, then upscaled and denoised again as
    `upscaled` does: F×H'×W'×3 uint8 frames at the new size. A model upscaler is loaded first, so a file it
    cannot read fails before anything is made."""
    model = load_model_upscaler(spec.model, str(pipeline.device)) if spec.model is not None else None
    latents = pipeline.generate_latents(sample, progress, conditions(sample), on_step)
    return upscaled(spec, sample, latents, pipeline, conditions, progress, on_step, model)


# -- an existing clip ----------------------------------------------------------------------------------------


def upscale_video(frames: np.ndarray, run: Settings, record: dict, progress: bool = True) -> Path:
    """Upscale an existing clip's F×H×W×3 uint8 `frames` as `run.upscale` says, with a second pass by
    `run.model` at `run.sample`'s prompt and seed, and write `run.output`, its sidecar `run.sidecar()` with
    `record` added."""
    from animatediff.export import write_video
    from animatediff.generation import DTYPES
    from animatediff.loading import build_pipeline

    spec = run.upscale
    model = load_model_upscaler(spec.model, run.device) if spec.model is not None else None
    pipeline = build_pipeline(run.model, torch.device(run.device), DTYPES[run.dtype], run.split_guidance)
    made = upscaled(spec, run.sample, frames, pipeline, progress=progress, model=model)
    return write_video(made, run.output, fps=run.fps, settings={**run.sidecar(), **record})


def upscale_frames(frames: np.ndarray, spec: UpscaleSpec, output: Path, fps: float, record: dict) -> Path:
    """Upscale F×H×W×3 uint8 `frames` by a pixel upscaler alone (no second pass: no image model) and write
    `output`, its sidecar the spec's settings with `record` added."""
    from animatediff.export import write_video

    height, width = frames.shape[1:3]
    model = load_model_upscaler(spec.model) if spec.model is not None else None
    made = upscale_pixels(frames, spec.size(width, height, 1), model)
    return write_video(made, output, fps=fps, settings={**spec.describe(width, height, 1), **record})
