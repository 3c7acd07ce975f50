"""Text-to-video sampling: prompt → text states → denoised video latents → uint8 frames.

The numerics follow the official release: initial noise drawn on the CPU from a seeded generator,
classifier-free guidance on a doubled `[uncond; cond]` batch, prompts padded to the tokenizer's length
with no attention mask, latents decoded a chunk of frames at a time and clamped to [0, 1].
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from einops import rearrange
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.errors import AnimateDiffError
from animatediff.families import OFFICIAL_DDIM
from animatediff.image_models import Components
from animatediff.inflation import AnimateDiffUNet, inflate
from animatediff.motion_module import MotionModule
from animatediff.settings import Sample

log = logging.getLogger("animatediff")


def official_scheduler() -> DDIMScheduler:
    """DDIM as the official inference configs set it (everything else at diffusers' defaults)."""
    return DDIMScheduler(**OFFICIAL_DDIM)


def initial_noise(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """The noise contract: float32 from a seeded CPU generator, the same on every device."""
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def encode_text(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, texts: list[str]) -> torch.Tensor:
    """Text states as the official release computes them: padded to the tokenizer's length, no mask."""
    tokens = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return text_encoder(tokens.to(text_encoder.device))[0]


def prompt_losses(tokenizer: CLIPTokenizer, prompt: str) -> list[str]:
    """What the text encoder will not see of `prompt`: words past the token limit, characters it has no
    token for. Empty when it sees all of it."""
    ids = tokenizer(prompt, truncation=False).input_ids
    losses = []
    limit = tokenizer.model_max_length
    if len(ids) > limit:
        kept = tokenizer.decode(ids[1 : limit - 1]).split()
        losses.append(f"it is {len(ids)} tokens long and only the first {limit} are read (it is cut after "
                      f"'{' '.join(kept[-3:])}')")  # fmt: skip
    unknown = tokenizer.unk_token_id
    if unknown is not None and unknown in ids[1:-1]:
        missing = sorted({char for char in prompt if set(tokenizer(char).input_ids[1:-1]) == {unknown}})
        losses.append(f"the tokenizer has no token for {', '.join(map(repr, missing)) or 'some of its characters'}")
    return losses


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Float frames in [0, 1], `f c h w`, to `F×H×W×3` uint8 by rounding."""
    video = rearrange(video.clamp(0, 1), "f c h w -> f h w c")
    return (video.float() * 255).round().to(torch.uint8).cpu().numpy()


class AnimateDiffPipeline:
    """Composes a video UNet, a VAE, a CLIP text encoder and any diffusers scheduler."""

    def __init__(
        self,
        unet: AnimateDiffUNet,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: SchedulerMixin | None = None,
        split_guidance: bool = False,
    ):
        """`split_guidance` runs the guidance batch's `[uncond; cond]` halves one after the other: the
        same result with half the UNet's activation memory."""
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler or official_scheduler()
        self.split_guidance = split_guidance

    @classmethod
    def from_components(
        cls,
        components: Components,
        motion_module: MotionModule | None,
        scheduler: SchedulerMixin | None = None,
        split_guidance: bool = False,
    ) -> AnimateDiffPipeline:
        return cls(
            inflate(components.unet, motion_module),
            components.vae,
            components.text_encoder,
            components.tokenizer,
            scheduler,
            split_guidance,
        )

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        for model in (self.unet, self.vae, self.text_encoder):
            model.to(device=device, dtype=dtype)
        return self

    def compile(self) -> AnimateDiffPipeline:
        """Compile the UNet, motion modules included, with `torch.compile`; the first call pays for it.

        Same outputs within float error; see bench/RESULTS.md for what it gains on CPU.
        """
        self.unet.unet.compile()
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
    def encode_prompt(self, prompt: str, negative_prompt: str | None, guidance: bool) -> torch.Tensor:
        """Text states, `[uncond; cond]` stacked when guidance is on: (1 or 2, tokens, dim)."""
        texts = [negative_prompt or "", prompt] if guidance else [prompt]
        return encode_text(self.tokenizer, self.text_encoder, texts)

    def check_inputs(self, num_frames: int, height: int, width: int, steps: int) -> None:
        factor = self.vae_scale_factor
        if height % factor or width % factor or height <= 0 or width <= 0:
            raise AnimateDiffError(
                f"width and height must be positive multiples of {factor} (this VAE's downscale factor); "
                f"got {width}×{height}."
            )
        motion_module = self.unet.motion_module
        if motion_module is not None and not 1 <= num_frames <= motion_module.config.max_frames:
            raise AnimateDiffError(
                f"frames must be between 1 and {motion_module.config.max_frames} (the motion module's "
                f"position table); got {num_frames}."
            )
        if num_frames < 1 or steps < 1:
            raise AnimateDiffError(f"frames and steps must be at least 1; got {num_frames} and {steps}.")
        schedule = self.scheduler.config.num_train_timesteps
        if steps > schedule:
            raise AnimateDiffError(f"steps must be at most {schedule} (the noise schedule's length); got {steps}.")

    @torch.no_grad()
    def denoising_steps(
        self,
        latents: torch.Tensor,
        text_states: torch.Tensor,
        steps: int,
        guidance_scale: float,
        progress: bool = True,
        generator: torch.Generator | None = None,
    ) -> Iterator[torch.Tensor]:
        """Run the scheduler's reverse process on `b c f h w` latents, yielding them after each step.

        `generator` feeds stochastic schedulers (ancestral, SDE); DDIM at eta 0 draws nothing.
        """
        self.scheduler.set_timesteps(steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        guidance = text_states.shape[0] == 2
        accepted = inspect.signature(self.scheduler.step).parameters
        extra = {"eta": 0.0, "generator": generator}
        extra = {name: value for name, value in extra.items() if name in accepted}
        with tqdm(self.scheduler.timesteps, desc="denoising", disable=not progress) as bar:  # closed on Ctrl-C too
            for t in bar:
                model_input = torch.cat([latents] * 2) if guidance else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                eps = self._predict_noise(model_input, t, text_states).to(latents.dtype)
                if guidance:
                    uncond, cond = eps.chunk(2)
                    eps = uncond + guidance_scale * (cond - uncond)
                latents = self.scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
                yield latents

    def _predict_noise(self, model_input: torch.Tensor, t, text_states: torch.Tensor) -> torch.Tensor:
        if not self.split_guidance or len(model_input) == 1:
            return self.unet(model_input, t, text_states)
        halves = zip(model_input.chunk(2), text_states.chunk(2), strict=True)
        return torch.cat([self.unet(latents, t, text) for latents, text in halves])

    def denoise(self, latents: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The final latents of `denoising_steps` (same arguments)."""
        return deque(self.denoising_steps(latents, *args, **kwargs), maxlen=1)[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """Video latents (1 c f h w) to float frames (f 3 H W) in [0, 1], `chunk_size` frames at a time."""
        latents = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        chunks = [self.vae.decode(chunk, return_dict=False)[0] for chunk in latents.split(chunk_size)]
        return (torch.cat(chunks).float() / 2 + 0.5).clamp(0, 1)

    def sample(self, prompt: str, num_frames: int = 16, height: int | None = None, width: int | None = None,
               **settings) -> Sample:  # fmt: skip
        """A `Sample` for this pipeline: height and width default to the image model's own size, and the
        remaining settings (`negative_prompt`, `steps`, `guidance_scale`, `seed`) to `Sample`'s."""
        size = self.default_size
        return Sample(prompt=prompt, frames=num_frames, height=height or size, width=width or size,
                      **{"seed": 0, "negative_prompt": "", **settings})  # fmt: skip

    def __call__(self, prompt: str | Sample, progress: bool = True, **settings) -> np.ndarray:
        """Generate one clip as `F×H×W×3` uint8 frames (arguments as for `generate`)."""
        return to_uint8(self.generate(prompt, progress, **settings))

    def generate(self, prompt: str | Sample, progress: bool = True, **settings) -> torch.Tensor:
        """Generate one clip as float frames `f 3 H W` in [0, 1] (what `__call__` rounds to uint8).

        `prompt` is a complete `Sample`, or the prompt text with the keyword settings of `sample`
        (`negative_prompt`, `num_frames`, `height`, `width`, `steps`, `guidance_scale`, `seed`)."""
        sample = prompt if isinstance(prompt, Sample) else self.sample(prompt, **settings)
        self.check_inputs(sample.frames, sample.height, sample.width, sample.steps)
        for loss in prompt_losses(self.tokenizer, sample.prompt):
            log.warning("prompt %r: %s.", sample.prompt[:60], loss)
        guidance = sample.guidance_scale > 1.0
        text_states = self.encode_prompt(sample.prompt, sample.negative_prompt, guidance)
        factor = self.vae_scale_factor
        channels = self.unet.unet.config.in_channels
        generator = torch.Generator("cpu").manual_seed(sample.seed)
        shape = (1, channels, sample.frames, sample.height // factor, sample.width // factor)
        latents = initial_noise(shape, generator).to(device=self.device, dtype=self.unet.dtype)
        latents = self.denoise(latents, text_states, sample.steps, sample.guidance_scale, progress, generator)
        return self.decode(latents)
