"""Making outputs from complete `Settings`: the one function the command line (and any other front end)
calls. Consecutive outputs with the same models share one pipeline. A clip with an upscale gets the hires fix
here: upscaled (`finishing.upscaling`) and denoised again by the same pipeline at the new size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from animatediff.control import Conditions, InitVideo
from animatediff.control.init_latents import encode_frames
from animatediff.export import write_video
from animatediff.finishing.interpolation import interpolate, interpolator
from animatediff.finishing.upscaling import latent_mode, load_model_upscaler, upscale_latents, upscale_pixels
from animatediff.loading import build_pipeline
from animatediff.pipeline import AnimateDiffPipeline, to_uint8
from animatediff.sampling.distributed import ALONE, WindowSpread
from animatediff.settings import Sample, Settings, UpscaleSpec

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class OutputMaker:
    """Makes outputs one at a time, keeping the last pipeline (and its conditions' models) loaded while the
    next output uses the same models: the command line's loop and the web app's workers both use one."""

    def __init__(self, progress: bool = True, spread: WindowSpread = ALONE):
        """`spread`: this process's share of a clip's context windows, when several processes make each clip
        together (`sampling.distributed`); only process 0 writes."""
        self.progress = progress and spread.writes
        self.spread = spread
        self.pipeline = self.conditions = self.built_for = self.conditions_for = None

    def conditions_of(self, run: Settings, sample: Sample) -> Conditions | None:
        """The conditions of `run`'s control inputs for `sample` (its size), their models loaded once."""
        control = run.control
        if not control.given:
            return None
        from animatediff.conditioning import ConditionLoader

        if self.conditions is None or ConditionLoader.models(control) != self.conditions_for:
            self.conditions = None
            self.conditions = ConditionLoader(self.pipeline, control)
            self.conditions_for = ConditionLoader.models(control)
        return self.conditions(sample, control)

    def make(self, run: Settings, on_step: Callable[[int, int], None] | None = None) -> Path | None:
        """Make and write `run`'s output (its sidecar is `run.sidecar()`); `on_step(done, steps)` after each
        denoising step. None on the processes that help make it without writing it."""
        control = run.control
        ip_adapter = (control.ip_adapter, control.ip_adapter_scale) if control.ip_adapter is not None else None
        built_for = (run.model, run.device, run.dtype, run.split_guidance, run.compile, ip_adapter)
        if built_for != self.built_for:
            self.pipeline = self.conditions = None  # free the last ones before loading the next
            device, dtype = torch.device(run.device), DTYPES[run.dtype]
            self.pipeline = build_pipeline(run.model, device, dtype, run.split_guidance, run.compile, ip_adapter)
            self.pipeline.spread = self.spread
            self.built_for = built_for
        between = interpolator(run.interpolator)[0] if run.interpolate else None  # a bad file fails before sampling
        if run.upscale is None:
            frames = self.pipeline(run.sample, self.progress, self.conditions_of(run, run.sample), on_step)
        else:
            conditions = partial(self.conditions_of, run)  # at the first pass's size, then at the second's
            frames = hires_fix(self.pipeline, run.sample, run.upscale, conditions, self.progress, on_step)
        if not self.spread.writes:
            return None
        if between is not None:  # after the upscale: the second pass denoises the clip's own frames
            frames = interpolate(frames, run.interpolate, run.loops, between, self.progress)
        settings = {**run.sidecar(), "prompt_chunks": self.pipeline.prompt_chunks(run.sample)}
        if self.spread.world > 1:
            settings["processes"] = self.spread.world  # the windows' sums were joined in another order
        return write_video(frames, run.output, fps=run.fps, settings=settings)


def generate_outputs(
    runs: list[Settings], progress: bool = True, spread: WindowSpread = ALONE
) -> Iterator[tuple[Settings, Path]]:
    """Make and write each output of `runs` in order; yields each run with the path written (with `spread`,
    on process 0 only: the others help make every output and write none).

    The sidecar beside each output is the run's own `Settings.sidecar()`."""
    maker = OutputMaker(progress, spread)
    for run in runs:
        written = maker.make(run)
        if written is not None:
            yield run, written


# -- the hires fix ---------------------------------------------------------------------------------------


@torch.no_grad()
def encoded(pipeline: AnimateDiffPipeline, frames: np.ndarray, seed: int) -> torch.Tensor:
    """F×H×W×3 uint8 frames as video latents (1 c f h w), posterior samples drawn from the seed."""
    from animatediff.conditioning import as_tensor  # the control inputs' loader: only clips with inputs need it

    generator = torch.Generator("cpu").manual_seed(seed)
    latents = encode_frames(pipeline.vae, as_tensor(frames), generator).float()
    return rearrange(latents, "f c h w -> 1 c f h w")


def upscaled(
    spec: UpscaleSpec,
    sample: Sample,
    clip: np.ndarray | torch.Tensor,
    pipeline: AnimateDiffPipeline | None = None,
    conditions: Callable[[Sample], Conditions | None] | None = None,
    progress: bool = True,
    on_step: Callable[[int, int], None] | None = None,
    model=None,
) -> np.ndarray:
    """A made `clip`, its frames (F×H×W×3 uint8) or its latents (1 c f h w), upscaled by `spec` and, unless its
    strength is 0, denoised again by `pipeline` from the upscaled clip at `spec.sample(sample)`
    (`conditions(sample)`: the clip's conditions at a sample's size; none if not given): F×H'×W'×3 uint8. A
    masked init video keeps its input outside the mask at the new size. `model`: the spec's super-resolution
    model, already loaded."""
    from animatediff.conditioning import as_tensor

    device = str(pipeline.device) if pipeline is not None else "cpu"
    if spec.model is not None and model is None:
        model = load_model_upscaler(spec.model, device)
    factor = pipeline.vae_scale_factor if pipeline is not None else 1
    big = spec.sample(sample, factor)
    given = (conditions(big) if conditions is not None else None) or Conditions()
    masked = given.init if isinstance(given.init, InitVideo) and given.init.mask is not None else None
    mode = latent_mode(spec)
    if mode is not None:
        latents = clip if isinstance(clip, torch.Tensor) else encoded(pipeline, clip, sample.seed)
        latents = upscale_latents(latents, (big.height // factor, big.width // factor), mode)
        if not spec.second_pass:
            return finished(pipeline.decode(latents), masked)
        init = InitVideo(None, spec.strength, latents=rearrange(latents, "1 c f h w -> f c h w"))
    else:
        frames = to_uint8(pipeline.decode(clip)) if isinstance(clip, torch.Tensor) else clip
        frames = upscale_pixels(frames, (big.width, big.height), model, device)
        if not spec.second_pass:
            return frames if masked is None else finished(as_tensor(frames), masked)
        init = InitVideo(as_tensor(frames), spec.strength)
    if masked is not None and not (init.frames is None and pipeline.inpainting):
        init = replace(init, mask=masked.mask)  # the second pass redraws the mask's area alone too
    return finished(pipeline.generate(big, progress, replace(given, init=init), on_step), masked)


def finished(clip: torch.Tensor, masked: InitVideo | None) -> np.ndarray:
    """An upscaled clip (f 3 H W in [0, 1]) as uint8 frames; for a masked clip, the input at the new size pasted
    back outside its mask (`InitVideo.overlaid`)."""
    return to_uint8(clip if masked is None else masked.overlaid(clip))


def hires_fix(
    pipeline: AnimateDiffPipeline,
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
    spec = run.upscale
    model = load_model_upscaler(spec.model, run.device) if spec.model is not None else None
    pipeline = build_pipeline(run.model, torch.device(run.device), getattr(torch, run.dtype), run.split_guidance)
    made = upscaled(spec, run.sample, frames, pipeline, progress=progress, model=model)
    return write_video(made, run.output, fps=run.fps, settings={**run.sidecar(), **record})
