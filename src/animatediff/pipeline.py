"""Text-to-video sampling: prompt → text states → denoised video latents → uint8 frames.

The numerics follow the official release: initial noise drawn on the CPU from a seeded generator,
classifier-free guidance on a doubled `[uncond; cond]` batch, prompts padded to the tokenizer's length
with no attention mask, latents decoded a chunk of frames at a time and clamped to [0, 1].
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from einops import rearrange
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from animatediff.control.camera import camera_context
from animatediff.control.conditions import Conditions, ImagePrompt, InitImage, InitVideo
from animatediff.control.controlnet import control_residuals
from animatediff.control.image_input import ImageInput
from animatediff.control.init_latents import encode_frames, first_step, image_latents, noised_latents
from animatediff.control.inpaint import INPAINT_CHANNELS, InpaintInput, KeptLatents, latent_mask
from animatediff.errors import AnimateDiffError
from animatediff.families import OFFICIAL_DDIM
from animatediff.image_models import TEXT_WIDTHS, Components
from animatediff.inflation import AnimateDiffUNet, inflate
from animatediff.motion_module import MotionModule, MotionStrength
from animatediff.prompting import chunk_count, encode_prompts, padded
from animatediff.sampling.clip import DECODE_CHUNK, Sample, check_frame_size, check_steps
from animatediff.sampling.context import fuse_weights, windows
from animatediff.sampling.distributed import ALONE, WindowSpread
from animatediff.sampling.freeinit import butterworth_low_pass, mix_frequencies
from animatediff.sampling.motion_strength import per_frame, scaled, step_factor
from animatediff.sampling.noise import shuffle_noise
from animatediff.sampling.options import ContextSettings, Interpolation
from animatediff.sampling.prompts import frame_states
from animatediff.sampling.speed import CONDITIONAL, GUIDED, REUSED, StepCache, guidance_step
from animatediff.step_cache import StepCacheRun, Window, check_depth, halves_of

log = logging.getLogger("animatediff")


def official_scheduler() -> DDIMScheduler:
    """DDIM as the official inference configs set it (everything else at diffusers' defaults)."""
    return DDIMScheduler(**OFFICIAL_DDIM)


def initial_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """The noise contract: float32 from a seeded CPU generator, the same on every device."""
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def encode_text(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, texts: list[str], clip_skip: int = 1
) -> torch.Tensor:
    """Text states as the official release computes them: padded to the tokenizer's length, no mask.
    `clip_skip` N (A1111's CLIP skip) reads the N-th layer from the end through the final layer norm, as
    diffusers' `clip_skip` N - 1 does; 1 is the last layer, the official states."""
    return encode_prompts(tokenizer, text_encoder, texts, "plain", clip_skip)


def encode_text_sdxl(
    tokenizers: tuple[CLIPTokenizer, CLIPTokenizer], encoders: tuple, texts: list[str], clip_skip: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's text states and pooled embeddings, as diffusers computes them: each encoder's penultimate hidden
    states (with `clip_skip` N, the (N+1)-th from the end, as diffusers' `clip_skip` N - 1), side by side;
    the pooled (projected) output of the second."""
    states = []
    for tokenizer, encoder in zip(tokenizers, encoders, strict=True):
        tokens = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        output = encoder(tokens.to(encoder.device), output_hidden_states=True)
        states.append(output.hidden_states[-1 - clip_skip])
    return torch.cat(states, dim=-1), output[0]


def prompt_losses(tokenizer: CLIPTokenizer, prompt: str, syntax: str = "plain") -> list[str]:
    """What the text encoder will not see of `prompt`: words past the token limit (only `plain` cuts: `a1111`
    and `comfy` read long prompts in chunks), characters it has no token for. Empty when it sees all of it."""
    ids = tokenizer(prompt, truncation=False).input_ids
    losses = []
    limit = tokenizer.model_max_length
    if len(ids) > limit and syntax == "plain":
        words = prompt.split()
        kept = _words_that_fit(tokenizer, words, limit - 2)  # less the start and end tokens
        losses.append(
            f"it is {len(ids) - 2} tokens long and the text encoder reads {limit - 2}: the first {kept} of its "
            f"{len(words)} words are kept, and '{words[kept]}' and the {len(words) - kept - 1} words after it "
            "are dropped"
        )
    unknown = tokenizer.unk_token_id
    if unknown is not None and unknown in ids[1:-1]:
        missing = sorted({char for char in prompt if set(tokenizer(char).input_ids[1:-1]) == {unknown}})
        losses.append(f"the tokenizer has no token for {', '.join(map(repr, missing)) or 'some of its characters'}")
    return losses


def _words_that_fit(tokenizer: CLIPTokenizer, words: list[str], room: int) -> int:
    """How many of the leading words fit whole into `room` tokens."""
    low, high = 0, len(words)  # the most that fit lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if len(tokenizer(" ".join(words[:middle]), add_special_tokens=False).input_ids) <= room:
            low = middle
        else:
            high = middle - 1
    return low


def _halves(value):
    """The two halves of a guidance batch's tensor, residuals or nothing."""
    if value is None:
        return (None, None)
    if isinstance(value, torch.Tensor):
        return value.chunk(2)
    return tuple(type(value)([d.chunk(2)[i] for d in value.down], value.mid.chunk(2)[i]) for i in range(2))


def _with_image_input(
    image_input: ImageInput | None, model_input: torch.Tensor, added: dict | None, frames: list[int]
) -> tuple[torch.Tensor, dict | None]:
    """The UNet's input and added conditions with a PIA image (its mask and image channels after the latents)
    or an AnimateLCM-I2V image (its latents for the image encoder) of the clip's `frames`."""
    if image_input is None:
        return model_input, added
    if image_input.kind == "pia":
        return image_input.pia_channels(model_input, frames), added
    return model_input, {**(added or {}), "image_latents": image_input.clip_latents(len(model_input), len(frames))}


def _window_added(added: dict | None, index: torch.Tensor) -> dict | None:
    """SDXL's added conditions for a window of frames `index`: per-frame values (b f d) sliced, per-clip
    ones kept."""
    if added is None:
        return None
    return {key: value[:, index] if value.ndim == 3 else value for key, value in added.items()}


def _model_kind(config) -> str:
    """What image model a UNet or ControlNet config is of, in words: SDXL (it takes pooled text embeddings and
    size ids), else named by its text width."""
    if config.addition_embed_type == "text_time":
        return "an SDXL model"
    kind = TEXT_WIDTHS.get(config.cross_attention_dim)
    return f"an {kind} model" if kind else "another image model"


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Float frames in [0, 1], `f c h w`, to `F×H×W×3` uint8 by rounding."""
    video = rearrange(video.clamp(0, 1), "f c h w -> f h w c")
    return (video.float() * 255).round().to(torch.uint8).cpu().numpy()


def _guided(
    eps: torch.Tensor, how: str, scale: float, difference: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A step's noise prediction after classifier-free guidance, and the cond − uncond difference to reuse:
    `how` is GUIDED (`eps` the [uncond; cond] batch), REUSED (`eps` the conditional half; the unconditional one
    is it less the last `difference`) or CONDITIONAL (`eps` as it is)."""
    if how == GUIDED:
        uncond, cond = eps.chunk(2)
        difference = cond - uncond
        return uncond + scale * difference, difference
    if how == REUSED:
        return eps + (scale - 1) * difference, difference
    return eps, difference


@dataclass(frozen=True)
class StepControls:
    """What steers every denoising step besides the text: context windows, the conditions of the clip
    (control residuals and an image prompt; an init video sets where sampling starts, and a masked one what is
    kept after each step or what an inpainting UNet sees besides), how strongly the motion modules act
    (`sampling.motion_strength`: per frame, the scale also per step), and what the steps may skip
    (`sampling.speed`: guidance past `guidance_end`, the unconditional half on alternate late steps with
    `guidance_reuse`, step caching)."""

    context: ContextSettings | None = None
    conditions: Conditions = field(default_factory=Conditions)
    added: dict | None = None  # SDXL's pooled text embeddings and size ids (`text_embeds`, `time_ids`): b d or b f d
    on_step: Callable[[int, int], None] | None = None  # called with (steps done, steps) after each step
    motion_scale: tuple[tuple[int, float], ...] = ()  # FRAME → scale (empty: 1)
    motion_effect: tuple[tuple[int, float], ...] = ()  # FRAME → effect (empty: 1)
    motion_scale_steps: tuple[tuple[float, float], ...] = ()  # fraction of the steps → the scale's factor
    guidance_end: float = 1.0
    guidance_reuse: bool = False
    cache: StepCache = field(default_factory=StepCache)
    kept: KeptLatents | None = None  # a masked init video's kept area (4-channel UNets; `control.inpaint`)
    inpaint: InpaintInput | None = None  # an inpainting UNet's mask and masked latents

    def conditional_half(self) -> StepControls:
        """These controls for the conditional half of the guidance batch alone (the image prompt's and SDXL's
        per-clip conditioning cut to it)."""
        conditions, added = self.conditions, self.added
        if conditions.image_prompt is not None:
            conditions = replace(conditions, image_prompt=ImagePrompt(conditions.image_prompt.embeds[1:]))
        if added is not None:
            added = {name: value[1:] for name, value in added.items()}
        return replace(self, conditions=conditions, added=added)

    def motion(self, step: tuple[int, int], frames: Sequence[int], device: torch.device) -> MotionStrength | None:
        """How strongly the motion modules act at `step` (index, of how many) on the clip's `frames` (None: as
        trained)."""
        factor = step_factor(self.motion_scale_steps, *step)
        scale = self.motion_scale if factor == 1.0 else scaled(self.motion_scale, factor)
        return MotionStrength.of(per_frame(scale, frames), per_frame(self.motion_effect, frames), device)

    def start(self, steps: int) -> int:
        """The index of the first timestep run: 0, or later for a video-to-video clip."""
        init = self.conditions.init
        return 0 if init is None else first_step(steps, init.strength)


class AnimateDiffPipeline:
    """Composes a video UNet, a VAE, a CLIP text encoder and any diffusers scheduler."""

    spread: WindowSpread = ALONE  # which context windows this process runs (`sampling.distributed`)

    def __init__(
        self,
        unet: AnimateDiffUNet,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin | None = None,
        split_guidance: bool = False,
        text_encoder_2: CLIPTextModelWithProjection | None = None,
        tokenizer_2: CLIPTokenizer | None = None,
    ):
        """`split_guidance` runs the guidance batch's `[uncond; cond]` halves one after the other: the
        same result with half the UNet's activation memory. `text_encoder_2` and `tokenizer_2`: SDXL's."""
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler or official_scheduler()
        self.split_guidance = split_guidance
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2

    @classmethod
    def from_components(
        cls,
        components: Components,
        motion_module: MotionModule | None,
        scheduler: SchedulerMixin | None = None,
        split_guidance: bool = False,
        image_encoder: torch.nn.Module | None = None,
    ) -> AnimateDiffPipeline:
        """`image_encoder`: AnimateLCM-I2V's (`control.image_input.ImageEncoder`); a PIA UNet is the image UNet
        with PIA's `conv_in` in place (`control.image_input.pia_conv_in`)."""
        return cls(
            inflate(components.unet, motion_module, image_encoder),
            components.vae,
            components.text_encoder,
            components.tokenizer,
            scheduler,
            split_guidance,
            components.text_encoder_2,
            components.tokenizer_2,
        )

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        for model in (self.unet, self.vae, self.text_encoder, self.text_encoder_2):
            if model is not None:
                model.to(device=device, dtype=dtype)
        return self

    @property
    def sdxl(self) -> bool:
        return self.text_encoder_2 is not None

    @property
    def image_input(self) -> str | None:
        """The image conditioning the video UNet takes: `pia` (a 9-channel conv_in), `i2v` (AnimateLCM-I2V's
        image encoder) or None."""
        if self.unet.image_encoder is not None:
            return "i2v"
        unet = self.unet.unet  # PIA's conv_in is wider than the image UNet's own (an inpainting UNet's is not)
        return "pia" if unet.conv_in.in_channels > unet.config.in_channels else None

    def compile(self, mode: str | None = None) -> AnimateDiffPipeline:
        """Compile the UNet, motion modules included, with `torch.compile` (`mode` as torch takes it, e.g.
        "reduce-overhead" for CUDA graphs); the first call pays for it.

        Same outputs within float error; see bench/RESULTS.md for what it gains.
        """
        self.unet.unet.compile(mode=mode)
        return self

    @property
    def device(self) -> torch.device:
        return self.unet.unet.device

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        """The frame size the image model was trained at (512 for SD1.5)."""
        return self.unet.unet.config.sample_size * self.vae_scale_factor

    @torch.no_grad()
    def encode_prompt(
        self, prompt: str, negative_prompt: str | None, guidance: bool, clip_skip: int = 1, syntax: str = "plain"
    ) -> torch.Tensor:
        """Text states, `[uncond; cond]` stacked when guidance is on: (1 or 2, tokens, dim), read with the
        prompt `syntax` (`animatediff.prompting`: a1111, comfy or plain); the negative prompt is padded to the
        prompt's chunks (or the prompt to its). SDXL's prompts are read `plain` whatever the syntax, for now."""
        if self.sdxl:
            return self._sdxl_conditioning({0: prompt}, negative_prompt, guidance, clip_skip)[0]
        texts = [negative_prompt or "", prompt] if guidance else [prompt]
        return encode_prompts(self.tokenizer, self.text_encoder, texts, syntax, clip_skip)

    @torch.no_grad()
    def _sdxl_conditioning(
        self,
        prompts: dict[int, str],
        negative_prompt: str | None,
        guidance: bool,
        clip_skip: int = 1,
        frames: int = 1,
        interpolation: Interpolation = "linear",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SDXL's text states and pooled embeddings, `[uncond; cond]` with guidance: (1 or 2, tokens, dim) and
        (1 or 2, dim) for one prompt; for a prompt map (`prompts`: keyframe → text) one of each per frame,
        (1 or 2, frames, tokens, dim) and (1 or 2, frames, dim), the pooled embeddings interpolated between
        the keyframes as the text states are. No negative prompt gives zeros for both, as diffusers' SDXL
        pipelines do (`force_zeros_for_empty_prompt`)."""
        encoders, tokenizers = (self.text_encoder, self.text_encoder_2), (self.tokenizer, self.tokenizer_2)
        keyframes = sorted(prompts)
        states, pooled = encode_text_sdxl(tokenizers, encoders, [prompts[k] for k in keyframes], clip_skip)
        if len(keyframes) > 1:  # k n d -> 1 f n d; the pooled ones as one-token states: k d -> 1 f d
            states = frame_states(keyframes, states, frames, interpolation)[None]
            pooled = frame_states(keyframes, pooled[:, None], frames, interpolation)[None, :, 0]
        if not guidance:
            return states, pooled
        if negative_prompt:
            negative, negative_pooled = encode_text_sdxl(tokenizers, encoders, [negative_prompt], clip_skip)
            if len(keyframes) > 1:  # the same for every frame
                negative, negative_pooled = (
                    negative[:, None].expand_as(states),
                    negative_pooled[:, None].expand_as(pooled),
                )
        else:
            negative, negative_pooled = torch.zeros_like(states), torch.zeros_like(pooled)
        return torch.cat([negative, states]), torch.cat([negative_pooled, pooled])

    def _sdxl_sample_conditioning(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """`_sdxl_conditioning` for the clip's prompt (or prompt map) and settings."""
        prompts = dict(sample.prompt_map) or {0: sample.prompt}
        guidance = sample.guidance_scale > 1.0
        return self._sdxl_conditioning(
            prompts, sample.negative_prompt, guidance, sample.clip_skip, sample.frames, sample.prompt_interpolation
        )

    @torch.no_grad()
    def added_conditions(self, sample: Sample) -> dict | None:
        """SDXL's added conditioning for the clip: the pooled text embeddings (one per clip, or with a prompt
        map one per frame: b f dim) and the size ids (original size, crop corner, target size: the clip's
        size, no crop; the same for every frame, so one per clip), `[uncond; cond]` with guidance; None for
        SD1.x."""
        if not self.sdxl:
            return None
        _, pooled = self._sdxl_sample_conditioning(sample)
        ids = torch.tensor([[sample.height, sample.width, 0, 0, sample.height, sample.width]], dtype=pooled.dtype)
        return {"text_embeds": pooled, "time_ids": ids.repeat(len(pooled), 1).to(pooled.device)}

    def check_inputs(
        self, num_frames: int, height: int, width: int, steps: int, context: ContextSettings | None = None
    ) -> None:
        check_frame_size(width, height, self.vae_scale_factor)
        if num_frames < 1 or steps < 1:
            raise AnimateDiffError(f"frames and steps must be at least 1; got {num_frames} and {steps}.")
        config = self.scheduler.config
        check_steps(steps, config.num_train_timesteps, config.get("steps_offset", 0))
        motion_module = self.unet.motion_module
        table = motion_module.config.max_frames if motion_module is not None else None
        if table is not None and context is not None and context.length > table:
            raise AnimateDiffError(
                f"the context length {context.length} is longer than the motion module's position table "
                f"({table} frames); use at most {table}."
            )
        if table is not None and context is None and num_frames > table:
            raise AnimateDiffError(
                f"frames must be between 1 and {table} (the motion module's position table) without context "
                f"windows; got {num_frames} (give a context: ContextSettings(length=16, overlap=4))."
            )

    @torch.no_grad()
    def denoising_steps(
        self,
        latents: torch.Tensor,
        text_states: torch.Tensor,
        steps: int,
        guidance_scale: float,
        progress: bool = True,
        generator: torch.Generator | None = None,
        controls: StepControls | None = None,
    ) -> Iterator[torch.Tensor]:
        """Run the scheduler's reverse process on `b c f h w` latents, yielding them after each step.

        `text_states` are one per clip (b, tokens, dim) or one per frame (b, f, tokens, dim), `[uncond;
        cond]` when b is 2. `controls`: context windows for a clip longer than their `length`
        (`sampling`), and the clip's conditions (`control`); with an init video the latents are already
        noised to the timestep it starts from, and the steps before it are skipped.
        `generator` feeds stochastic schedulers (ancestral, SDE); DDIM at eta 0 draws nothing.
        """
        controls = controls or StepControls()
        self.scheduler.set_timesteps(steps, device=self.device)
        start = controls.start(steps)
        if start == 0:
            latents = latents * self.scheduler.init_noise_sigma
        elif hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start * self.scheduler.order)
        guidance = text_states.shape[0] == 2
        conditional = controls.conditional_half() if guidance else controls
        cache = StepCacheRun(controls.cache, steps) if controls.cache.on else None
        difference = None  # the last guided step's cond − uncond, for the steps that reuse it
        accepted = inspect.signature(self.scheduler.step).parameters
        extra = {"eta": 0.0, "generator": generator}
        extra = {name: value for name, value in extra.items() if name in accepted}
        timesteps = self.scheduler.timesteps[start * self.scheduler.order :]
        units = self._window_counts(latents.shape[2], range(start, start + len(timesteps)), controls.context)
        unit = "window" if sum(units) > len(units) else "step"
        # closed on Ctrl-C too; a step of many windows moves the bar (and its estimate of the time left) per window
        with tqdm(total=sum(units), desc="denoising", unit=unit, disable=not progress) as bar:
            for step, t in enumerate(timesteps, start=start):
                how = guidance_step(step, steps, controls.guidance_end, controls.guidance_reuse)
                if not guidance or (how == REUSED and difference is None):
                    how = GUIDED if guidance else CONDITIONAL
                both = how == GUIDED and guidance
                model_input = torch.cat([latents] * 2) if both else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                tick = bar.update if unit == "window" else lambda count: None
                text, step_controls = (
                    (text_states, controls) if both or not guidance else (text_states[1:], conditional)
                )
                eps = self._predict_noise(model_input, t, text, step_controls, (step, steps), tick, cache)
                eps = eps.to(latents.dtype)
                bar.update(0 if unit == "window" else 1)
                eps, difference = _guided(eps, how, guidance_scale, difference)
                if controls.kept is not None and controls.kept.guidance:
                    alone = step_controls.conditional_half() if both else step_controls
                    eps = self._reconstructed(eps, model_input[-1:], t, text[-1:], alone, (step, steps))
                latents = self.scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
                if controls.kept is not None:  # as diffusers' inpainting: the kept area noised to the next step
                    following = step - start + 1
                    next_t = timesteps[following] if following < len(timesteps) else None
                    latents = controls.kept.blend(latents, self.scheduler, t, next_t)
                if not torch.isfinite(latents).all():
                    raise AnimateDiffError(
                        f"the latents became NaN or infinite at step {step + 1} of {steps}; nothing was written. "
                        "Lower the LoRA, adapter or guidance scales, or use --dtype float32."
                    )
                if controls.on_step is not None:
                    controls.on_step(step + 1, steps)
                yield latents

    def _reconstructed(
        self, eps: torch.Tensor, model_input: torch.Tensor, t, text: torch.Tensor, controls, step: tuple[int, int]
    ) -> torch.Tensor:
        """`eps` with reconstruction guidance toward the kept area (`controls.kept.reconstructed`), through
        the conditional prediction of `model_input` (the step's scaled latents, one clip) with `text`."""

        def predict(latents: torch.Tensor) -> torch.Tensor:
            return self._predict_noise(latents, t, text, controls, step, lambda count: None)

        # with several processes each one's gradient reaches its own windows only: their sum is the whole one
        return controls.kept.reconstructed(eps, model_input, self._alpha_bar(t), predict, self.spread.join)

    def _alpha_bar(self, t) -> torch.Tensor:
        """ᾱ of the step at timestep `t` (after `scale_model_input`, which sets a sigma scheduler's step index):
        from the step's sigma where the scheduler has sigmas (ᾱ = 1 / (1 + σ²)), else from `alphas_cumprod`."""
        scheduler = self.scheduler
        if getattr(scheduler, "sigmas", None) is not None and getattr(scheduler, "step_index", None) is not None:
            sigma = scheduler.sigmas[scheduler.step_index].float()
            return (1 / (1 + sigma**2)).to(self.device)
        return scheduler.alphas_cumprod[int(t)].float().to(self.device)

    @staticmethod
    def _window_counts(num_frames: int, steps: range, context: ContextSettings | None) -> list[int]:
        """How many times each step runs the whole video UNet: once, or once per context window."""
        if context is None or num_frames <= context.length or context.scope == "motion":
            return [1] * len(steps)
        return [len(windows(num_frames, step, context)) for step in steps]

    def _predict_noise(
        self,
        model_input: torch.Tensor,
        t,
        text_states: torch.Tensor,
        controls: StepControls,
        step: tuple[int, int],
        tick: Callable[[int], None],
        cache: StepCacheRun | None = None,
    ) -> torch.Tensor:
        """The noise prediction for the whole clip; `step` is (index, of how many) in the full schedule;
        `tick(1)` after each context window; `cache` the run's step cache (None: none)."""
        num_frames, context = model_input.shape[2], controls.context
        if context is None or num_frames <= context.length:
            return self._call_unet(model_input, t, text_states, controls, step, cache=cache)
        frame_windows = windows(num_frames, step[0], context)
        if context.scope == "motion":
            weights = fuse_weights(context.length, context.fuse, context.overlap)
            pairs = [(torch.tensor(frames), weights) for frames in frame_windows]
            return self._call_unet(model_input, t, text_states, controls, step, motion_windows=pairs, cache=cache)
        return self._predict_in_windows(model_input, t, text_states, controls, step, frame_windows, tick, cache)

    def _predict_in_windows(
        self,
        model_input: torch.Tensor,
        t,
        text_states: torch.Tensor,
        controls: StepControls,
        step: tuple[int, int],
        frame_windows: list[list[int]],
        tick: Callable[[int], None],
        cache: StepCacheRun | None = None,
    ) -> torch.Tensor:
        """Each window of frames through the whole video UNet on its own; the predictions averaged per frame.
        With several processes (`self.spread`), this one runs its share of the windows and the weighted sums
        are joined (`sampling.distributed`)."""
        batch, _, num_frames, height, width = model_input.shape
        out = (batch, self.unet.unet.config.out_channels, num_frames, height, width)  # 4 for an inpainting UNet too
        total = torch.zeros(out, dtype=torch.float32, device=model_input.device)
        count = torch.zeros(model_input.shape[2], device=model_input.device)
        context = controls.context
        weights = fuse_weights(context.length, context.fuse, context.overlap).to(model_input.device)
        for frames in frame_windows:
            count.index_add_(0, torch.tensor(frames, device=model_input.device), weights)
        mine = self.spread.share(frame_windows)
        for frames in mine:
            index = torch.tensor(frames, device=model_input.device)
            text = text_states[:, index] if text_states.ndim == 4 else text_states
            window = replace(controls, added=_window_added(controls.added, index))
            latents = model_input[:, :, index]
            eps = self._call_unet(latents, t, text, window, step, frame_index=index, cache=cache).float()
            total.index_add_(2, index, eps * weights[None, None, :, None, None])
            tick(1)
        tick(len(frame_windows) - len(mine))  # the other processes' windows
        return self.spread.join(total) / count[None, None, :, None, None]

    def _call_unet(
        self,
        model_input: torch.Tensor,
        t,
        text_states: torch.Tensor,
        controls: StepControls,
        step: tuple[int, int],
        motion_windows=None,
        frame_index=None,
        cache: StepCacheRun | None = None,
    ):
        """The video UNet on `model_input` (the frames `frame_index` of the clip; None: all of them), with
        the clip's control residuals, image prompt and SDXL conditioning; per-frame text states folded as it
        takes them; the guidance batch's halves one after the other with `split_guidance`; what `cache` keeps
        for this window and these halves reused."""
        conditions, added = controls.conditions, controls.added
        residuals = control_residuals(conditions, model_input, t, text_states, step, frame_index, motion_windows, added)
        image = conditions.image_prompt.embeds if conditions.image_prompt is not None else None
        if text_states.ndim == 4:  # b f n d
            text_states = rearrange(text_states, "b f n d -> (b f) n d")
        frames = range(model_input.shape[2]) if frame_index is None else frame_index.tolist()
        motion = controls.motion(step, frames, model_input.device)
        if controls.inpaint is not None:  # after the ControlNets, which take the latents alone
            model_input = controls.inpaint.beside(model_input, frame_index)
        strength = {} if motion is None else {"motion": motion}  # only asked of a video UNet when given
        model_input, added = _with_image_input(conditions.image_input, model_input, added, list(frames))
        window: Window = None if frame_index is None else tuple(frames)

        def reusing(halves: tuple[str, ...]):
            return nullcontext() if cache is None else cache.call(step[0], window, halves).applied(self.unet)

        with camera_context(conditions.camera):  # CameraCtrl's pose features for the motion module, if any
            if not self.split_guidance or len(model_input) == 1:
                with reusing(halves_of(len(model_input))):
                    return self.unet(model_input, t, text_states, motion_windows, residuals, image, added, **strength)
            added_halves = (
                [None, None] if added is None else [{k: v.chunk(2)[i] for k, v in added.items()} for i in (0, 1)]
            )
            halves = [model_input.chunk(2), text_states.chunk(2), _halves(residuals), _halves(image), added_halves]
            predictions = []
            for half, (latents, text, res, emb, more) in zip(
                ("uncond", "cond"), zip(*halves, strict=True), strict=True
            ):
                with reusing((half,)):
                    predictions.append(self.unet(latents, t, text, motion_windows, res, emb, more, **strength))
            return torch.cat(predictions)

    def denoise(
        self,
        latents: torch.Tensor,
        text_states: torch.Tensor,
        steps: int,
        guidance_scale: float,
        progress: bool = True,
        generator: torch.Generator | None = None,
        controls: StepControls | None = None,
    ) -> torch.Tensor:
        """The final latents of `denoising_steps` (the same arguments)."""
        steps_run = self.denoising_steps(latents, text_states, steps, guidance_scale, progress, generator, controls)
        return deque(steps_run, maxlen=1)[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int = DECODE_CHUNK) -> torch.Tensor:
        """Video latents (1 c f h w) to float frames (f 3 H W) in [0, 1], `chunk_size` frames at a time."""
        latents = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        chunks = [
            self.vae.decode(chunk.to(self.vae.dtype), return_dict=False)[0] for chunk in latents.split(chunk_size)
        ]
        return (torch.cat(chunks).float() / 2 + 0.5).clamp(0, 1)

    def sample(
        self, prompt: str, num_frames: int = 16, height: int | None = None, width: int | None = None, **settings
    ) -> Sample:
        """A `Sample` for this pipeline: height and width default to the image model's own size, and the
        remaining settings (`negative_prompt`, `steps`, `guidance_scale`, `seed`) to `Sample`'s."""
        size = self.default_size
        return Sample(
            prompt=prompt,
            frames=num_frames,
            height=height or size,
            width=width or size,
            **{"seed": 0, "negative_prompt": "", **settings},
        )

    def __call__(
        self,
        prompt: str | Sample,
        progress: bool = True,
        conditions: Conditions | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **settings,
    ) -> np.ndarray:
        """Generate one clip as `F×H×W×3` uint8 frames (arguments as for `generate`)."""
        return to_uint8(self.generate(prompt, progress, conditions, on_step, **settings))

    def generate(
        self,
        prompt: str | Sample,
        progress: bool = True,
        conditions: Conditions | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **settings,
    ) -> torch.Tensor:
        """Generate one clip as float frames `f 3 H W` in [0, 1] (what `__call__` rounds to uint8); the
        arguments as for `generate_latents`. An extended clip is the input's frames followed by the new ones; a
        masked init video with a `mask_blur` has its kept area pasted back from the input."""
        clip = self.decode(self.generate_latents(prompt, progress, conditions, on_step, **settings))
        if conditions is not None and conditions.extension is not None:
            return conditions.extension.join(clip)
        init = conditions.init if conditions is not None else None
        return init.overlaid(clip) if isinstance(init, InitVideo) else clip

    def generate_latents(
        self,
        prompt: str | Sample,
        progress: bool = True,
        conditions: Conditions | None = None,
        on_step: Callable[[int, int], None] | None = None,
        **settings,
    ) -> torch.Tensor:
        """Generate one clip's final latents (1 c f h w, not yet decoded: a latent upscaler resizes them; for an
        extension, those of the new part with its overlap, which `generate` joins to the input).

        `prompt` is a complete `Sample`, or the prompt text with the keyword settings of `sample`
        (`negative_prompt`, `num_frames`, `height`, `width`, `steps`, `guidance_scale`, `seed`, and the
        time controls: `context`, `noise_shuffle`, `free_init`, `prompt_map`, `prompt_interpolation`).
        `conditions` (`animatediff.control`): an init video, ControlNets, an image prompt. `on_step(done,
        steps)` is called after each denoising step."""
        sample = prompt if isinstance(prompt, Sample) else self.sample(prompt, **settings)
        conditions = conditions or Conditions()
        extension = conditions.extension
        if extension is not None:
            self.check_extension(conditions, sample)
            conditions = replace(conditions, init=extension.init(sample.frames))
        self.check_inputs(sample.frames, sample.height, sample.width, sample.steps, sample.context)
        self.check_conditions(conditions, sample)
        if sample.cache.mode == "deep":
            check_depth(self.unet.unet, sample.cache.depth)
        layers = self.text_encoder.config.num_hidden_layers
        if sample.clip_skip > layers:
            raise AnimateDiffError(f"clip skip {sample.clip_skip} reaches past the text encoder's {layers} layers.")
        text_states = self.text_states(sample)
        generator = torch.Generator("cpu").manual_seed(sample.seed)
        noise, kept = self.starting_latents(sample, generator, conditions)
        if conditions.image_input is not None:  # PIA's or AnimateLCM-I2V's image: drawn right after the noise
            conditions = replace(conditions, image_input=conditions.image_input.encoded(self.vae, generator))
        inpaint = self.inpaint_input(conditions, generator)
        if conditions.sparsectrl is not None:  # RGB keyframes: posterior samples drawn right after the noise
            conditions = replace(conditions, sparsectrl=conditions.sparsectrl.encoded(self.vae, generator))
        if conditions.camera is not None:  # the pose features, once per clip
            conditions = replace(conditions, camera=conditions.camera.encoded())
        controls = StepControls(
            sample.context,
            conditions,
            self.added_conditions(sample),
            on_step,
            sample.motion_scale,
            sample.motion_effect,
            sample.motion_scale_steps,
            sample.guidance_end,
            sample.guidance_reuse,
            sample.cache,
            kept,
            inpaint,
        )
        latents = noise
        for iteration in range(sample.free_init or 1):
            if iteration:
                latents = self.reinitialize(latents, noise, generator)
            latents = self.denoise(
                latents, text_states, sample.steps, sample.guidance_scale, progress, generator, controls
            )
        return latents

    @property
    def inpainting(self) -> bool:
        """Whether the image UNet is an inpainting one (SD1.5-inpainting: 9 input channels)."""
        return self.unet.unet.config.in_channels == INPAINT_CHANNELS

    def inpaint_input(self, conditions: Conditions, generator: torch.Generator) -> InpaintInput | None:
        """An inpainting UNet's mask and masked latents for an init video (no mask: all of it redrawn); None
        for any other UNet."""
        init = conditions.init
        if not self.inpainting or not isinstance(init, InitVideo):
            return None
        mask = init.mask if init.mask is not None else torch.ones_like(init.frames[:, :1])
        return InpaintInput.encode(self.vae, init.frames, mask, self.vae_scale_factor, generator)

    def check_extension(self, conditions: Conditions, sample: Sample) -> None:
        """An extension is the clip's start: its overlap must leave new frames, its frames be the clip's size."""
        extension = conditions.extension
        if conditions.init is not None:
            raise AnimateDiffError("extending a clip sets the clip's start itself; give no init video or image too.")
        count = len(extension.frames)
        if not 0 < extension.overlap < min(count + 1, sample.frames):
            raise AnimateDiffError(
                f"the extension overlap must be at least 1 and less than the clip's {sample.frames} frames and at "
                f"most the input's {count}; got {extension.overlap}."
            )

    def check_conditions(self, conditions: Conditions, sample: Sample) -> None:
        """Refuse conditions that do not fit the clip: frames of another size or too few of them, a strength
        that leaves no step to run, time controls that an init video leaves no room for, a ControlNet or
        SparseCtrl made for another image model than the base."""
        if self.sdxl and conditions.sparsectrl is not None:
            raise AnimateDiffError(
                "SparseCtrl encoders are made for SD1.5 (no SDXL SparseCtrl is released); use an SD1.x base with "
                "it, or a ControlNet with this SDXL base."
            )
        self._check_controlnets(conditions)
        self._check_image_input(conditions, sample)
        init, size = conditions.init, (sample.height, sample.width)
        self._check_mask(init, sample)
        if init is not None and first_step(sample.steps, init.strength) >= sample.steps:
            raise AnimateDiffError(
                f"strength {init.strength} leaves none of the {sample.steps} steps to run (it runs "
                f"int(steps × strength)); raise the strength or the steps."
            )
        what = "an init video" if isinstance(init, InitVideo) else "an init image"
        if init is not None and (sample.free_init or sample.noise_shuffle):
            raise AnimateDiffError(
                f"{what} sets the clip's starting latents itself; FreeInit and the noise shuffle "
                "work on clips made from noise (leave them out)."
            )
        video = isinstance(init, InitVideo)
        inputs = [("the init video", init.frames)] if video and init.latents is None else []
        if video and init.latents is not None:
            self._check_init_latents(init.latents, sample)
        if isinstance(init, InitImage):
            images = [("the init image", init.first), ("the last image", init.last)]
            inputs += [
                (name, image[None].expand(sample.frames, -1, -1, -1)) for name, image in images if image is not None
            ]
        inputs += [
            (f"control video {number}", control.frames)
            for number, control in enumerate(conditions.controlnets, start=1)
        ]
        for name, frames in inputs:
            if tuple(frames.shape[2:]) != size or len(frames) != sample.frames:
                raise AnimateDiffError(
                    f"{name} has {len(frames)} frames of {frames.shape[3]}×{frames.shape[2]}; the clip needs "
                    f"{sample.frames} of {sample.width}×{sample.height}."
                )
        if conditions.sparsectrl is not None:
            self._check_keyframes(conditions.sparsectrl, sample)
        if conditions.camera is not None:
            self._check_camera(conditions.camera, sample)

    def _check_mask(self, init: InitVideo | InitImage | None, sample: Sample) -> None:
        """An inpainting UNet redraws an init video; a mask is one per frame at the clip's size."""
        if self.inpainting and not isinstance(init, InitVideo):
            raise AnimateDiffError(
                "this image model is an inpainting one (its UNet takes 9 input channels): it redraws an init video "
                "(--init-video, with --mask or --mask-video) or extends a clip (--extend)."
            )
        wanted = (sample.frames, 1, sample.height, sample.width)
        if isinstance(init, InitVideo) and init.mask is not None and tuple(init.mask.shape) != wanted:
            raise AnimateDiffError(
                f"the mask is {tuple(init.mask.shape)} (frames, 1, height, width); the clip needs {wanted}."
            )

    def _check_camera(self, camera, sample: Sample) -> None:
        """CameraCtrl's poses must be one per frame at the clip's size, its encoder must take the clip's length
        at once (no context windows) and its levels must come out at the motion modules' sizes."""
        frames, _, height, width = camera.embedding.shape
        if frames != sample.frames or (height, width) != (sample.height, sample.width):
            raise AnimateDiffError(
                f"the camera poses' embedding is {frames} frames of {width}×{height}; the clip is {sample.frames} "
                f"frames of {sample.width}×{sample.height}."
            )
        config = camera.model.config
        if sample.context is not None and sample.frames > sample.context.length or sample.frames > config.max_frames:
            raise AnimateDiffError(
                f"CameraCtrl's pose encoder takes at most {config.max_frames} frames, all in one pass; the clip has "
                f"{sample.frames}{' in context windows' if sample.context is not None else ''}."
            )
        if config.downscale != self.vae_scale_factor:
            raise AnimateDiffError(
                f"CameraCtrl's pose encoder was made for a VAE that downscales by {config.downscale}; this image "
                f"model's VAE downscales by {self.vae_scale_factor}."
            )
        step = self.vae_scale_factor * 2 ** (len(config.channels) - 1)
        if sample.width % step or sample.height % step:
            raise AnimateDiffError(
                f"CameraCtrl needs a width and height that are multiples of {step} (its features halve the size "
                f"{len(config.channels) - 1} times, as the UNet does); got {sample.width}×{sample.height}."
            )

    def _check_image_input(self, conditions: Conditions, sample: Sample) -> None:
        """PIA and AnimateLCM-I2V clips need their image, at the clip's size; no other model takes one."""
        names = {"pia": "PIA", "i2v": "AnimateLCM-I2V"}
        given, wanted = conditions.image_input, self.image_input
        if wanted is not None and given is None:
            raise AnimateDiffError(f"this {names[wanted]} model animates an image; give it (an init image).")
        if given is None:
            return
        if given.kind != wanted:
            raise AnimateDiffError(
                f"a {names[given.kind]} image was given, but the video UNet "
                f"{'takes no image' if wanted is None else 'is ' + names[wanted] + ' (another image input)'}."
            )
        if conditions.init is not None:
            raise AnimateDiffError(f"{names[given.kind]} conditions every step on its image; give no init latents.")
        if tuple(given.image.shape[1:]) != (sample.height, sample.width):
            raise AnimateDiffError(
                f"the {names[given.kind]} image is {given.image.shape[2]}×{given.image.shape[1]}; the clip is "
                f"{sample.width}×{sample.height}."
            )
        if given.kind == "pia" and len(given.affinity) != sample.frames:
            raise AnimateDiffError(f"PIA's mask has {len(given.affinity)} frames; the clip has {sample.frames}.")

    def _check_controlnets(self, conditions: Conditions) -> None:
        """Each ControlNet must be made for the base's UNet: the same text width and added conditioning
        (SDXL's pooled text embeddings and size ids, or none)."""
        base = self.unet.unet.config
        for number, control in enumerate(conditions.controlnets, start=1):
            config = control.model.config
            if (config.cross_attention_dim, config.addition_embed_type) != (
                base.cross_attention_dim,
                base.addition_embed_type,
            ):
                raise AnimateDiffError(
                    f"ControlNet {number} is made for {_model_kind(config)} (text width {config.cross_attention_dim}"
                    f"); the base is {_model_kind(base)} (text width {base.cross_attention_dim}). Use a ControlNet "
                    "made for the base."
                )

    def _check_init_latents(self, latents: torch.Tensor, sample: Sample) -> None:
        """Already encoded init latents (a latent upscale's) must be the clip's: its frames, its latent size."""
        factor = self.vae_scale_factor
        wanted = (sample.frames, sample.height // factor, sample.width // factor)
        if (len(latents), *latents.shape[2:]) != wanted:
            raise AnimateDiffError(
                f"the init latents are {tuple(latents.shape)} (frames, channels, height, width); the clip needs "
                f"{wanted[0]} frames of {wanted[2]}×{wanted[1]} latents."
            )

    def _check_keyframes(self, sparse, sample: Sample) -> None:
        """SparseCtrl keyframes must be what its encoder takes, at the clip's size and length."""
        config = sparse.model.config
        latents = config.latent_condition and not sparse.encode
        factor = self.vae_scale_factor if latents else 1
        channels = 3 if sparse.encode else config.conditioning_channels
        wanted = (channels, sample.height // factor, sample.width // factor)
        what = "latents" if latents else "images"
        if tuple(sparse.keyframes.shape[1:]) != wanted or sparse.frames != sample.frames:
            raise AnimateDiffError(
                f"the SparseCtrl keyframes are {tuple(sparse.keyframes.shape[1:])} (channels, height, width) for "
                f"{sparse.frames} frames; this {config.kind} SparseCtrl takes {what} of {wanted} for the clip's "
                f"{sample.frames} frames."
            )

    def prompt_chunks(self, sample: Sample) -> int:
        """How many chunks the clip's prompts are encoded in (what the sidecar records beside the syntax)."""
        texts = [*(dict(sample.prompt_map) or {0: sample.prompt}).values(), sample.negative_prompt or ""]
        return chunk_count(self.tokenizer, texts, "plain" if self.sdxl else sample.prompt_syntax)

    def text_states(self, sample: Sample) -> torch.Tensor:
        """The clip's text states: (1 or 2, tokens, dim), or with a prompt map one per frame (1 or 2, frames,
        tokens, dim), interpolated between the keyframes; the negative prompt stays one."""
        prompts = dict(sample.prompt_map) or {0: sample.prompt}
        syntax = "plain" if self.sdxl else sample.prompt_syntax
        for text in prompts.values():
            for loss in prompt_losses(self.tokenizer, text, syntax):
                log.warning("prompt %r: %s.", text[:60], loss)
        guidance = sample.guidance_scale > 1.0
        if self.sdxl:
            return self._sdxl_sample_conditioning(sample)[0]
        if len(prompts) == 1:
            return self.encode_prompt(prompts[0], sample.negative_prompt, guidance, sample.clip_skip, syntax)
        keyframes = sorted(prompts)
        texts = [prompts[frame] for frame in keyframes]
        encoder = (self.tokenizer, self.text_encoder)
        states = encode_prompts(*encoder, texts, syntax, sample.clip_skip)  # keyframes' chunks padded to the most
        uncond = encode_prompts(*encoder, [sample.negative_prompt or ""], syntax, sample.clip_skip)
        states = padded([*states, uncond[0]], *encoder, sample.clip_skip)  # and the negative prompt's to theirs
        states, uncond = states[:-1], states[-1:]
        per_frame = frame_states(keyframes, states, sample.frames, sample.prompt_interpolation)[None]
        if not guidance:
            return per_frame
        return torch.cat([uncond[:, None].expand_as(per_frame), per_frame])

    def initial_latents(
        self, sample: Sample, generator: torch.Generator, conditions: Conditions | None = None
    ) -> torch.Tensor:
        """The noise contract's draw for the clip, with FreeNoise's rescheduling if the sample asks for it; for
        video-to-video, the init video's latents noised to the timestep its strength starts from."""
        return self.starting_latents(sample, generator, conditions)[0]

    def _check_reconstruction(self, weight: float) -> None:
        """Reconstruction guidance (`weight`) needs an image UNet of 4 input channels and a scheduler with ᾱ."""
        if self.inpainting:
            channels = self.unet.unet.config.in_channels
            raise AnimateDiffError(
                f"extension guidance ({weight:g}) needs an image UNet of 4 input channels; this one takes {channels} "
                "(an inpainting UNet) and sees the kept frames itself: leave out --extend-guidance."
            )
        if getattr(self.scheduler, "alphas_cumprod", None) is None:
            raise AnimateDiffError(
                f"extension guidance ({weight:g}) needs a scheduler with a noise schedule (alphas_cumprod); "
                f"{type(self.scheduler).__name__} has none: use another scheduler or leave out --extend-guidance."
            )

    def starting_latents(
        self, sample: Sample, generator: torch.Generator, conditions: Conditions | None = None
    ) -> tuple[torch.Tensor, KeptLatents | None]:
        """`initial_latents`, and for a masked init video on a 4-channel UNet what it keeps at every step (the
        input's clean latents, the noise they were noised with, the latent mask)."""
        init = conditions.init if conditions is not None else None
        if isinstance(init, InitVideo) and init.guidance:  # refused before anything is encoded
            self._check_reconstruction(init.guidance)
        if init is not None:
            self.scheduler.set_timesteps(sample.steps, device=self.device)
            start = first_step(sample.steps, init.strength) * self.scheduler.order
            if isinstance(init, InitVideo) and init.latents is not None:
                latents = init.latents.to(self.device).float()
            elif isinstance(init, InitVideo):
                latents = encode_frames(self.vae, init.frames, generator).float()
            else:
                latents = image_latents(self.vae, init, sample.frames, generator)
            noised, noise = noised_latents(latents, self.scheduler, self.scheduler.timesteps[start], generator)
            if not isinstance(init, InitVideo) or init.mask is None or self.inpainting:
                return noised, None
            mask = latent_mask(init.mask, self.vae_scale_factor).to(latents.device)
            original = rearrange(latents, "f c h w -> 1 c f h w")
            return noised, KeptLatents(original, noise, mask, init.guidance, init.release)
        factor = self.vae_scale_factor
        channels = self.unet.unet.config.in_channels
        shape = (1, channels, sample.frames, sample.height // factor, sample.width // factor)
        noise = initial_noise(shape, generator)
        if sample.noise_shuffle and sample.context is not None:
            noise = shuffle_noise(noise, sample.context.length, sample.context.stride, generator)
        return noise.to(device=self.device), None  # float32 whatever the UNet's dtype: the scheduler's arithmetic too

    def reinitialize(self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """FreeInit: the denoised `latents` noised back to the last timestep with the clip's own `noise`, low
        frequencies kept, high ones from fresh noise drawn from `generator`."""
        last = torch.full((latents.shape[0],), self.scheduler.config.num_train_timesteps - 1, device=latents.device)
        noised = self.scheduler.add_noise(latents, noise, last.long()).float()
        fresh = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
        low_pass = butterworth_low_pass(*latents.shape[2:]).to(latents.device)
        return mix_frequencies(noised, fresh, low_pass).to(latents.dtype)
