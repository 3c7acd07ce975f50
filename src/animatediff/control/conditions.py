"""The conditions of one clip: an init video (masked or not) or image, a clip to extend, ControlNets with their
control frames, SparseCtrl keyframes, an image prompt, camera poses, the image of a PIA or AnimateLCM-I2V clip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from animatediff.control.camera import CameraInput
from animatediff.control.image_input import ImageInput
from animatediff.control.inpaint import carried, pasted
from animatediff.control.sparsectrl import SparseCtrlInput

if TYPE_CHECKING:  # diffusers' ControlNet registry loads when a ControlNet does, not with every clip
    from diffusers import ControlNetModel

# an extension's overlap is left to the model in the steps that start below this timestep (of the noise schedule's
# 1000): the last 2 of 25 DDIM steps, none of 4 LCM steps (docs/results.md, "How much of the clip to keep")
RELEASE = 50


@dataclass(frozen=True)
class InitVideo:
    """Video-to-video: `frames` (f 3 H W, floats in [0, 1], the clip's own size) are kept more the lower
    `strength` is (0 < strength ≤ 1; 1 starts from pure noise). With a `mask` (f 1 H W in [0, 1]: white, 1, is
    redrawn, black, 0, is kept; `control.inpaint`) only the white area is redrawn, and with a `mask_blur` (pixels,
    ≥ 0; None: the frames as decoded, as diffusers' pipelines return them) the input is pasted back outside it.
    `latents` (f c h w, scaled): the frames already encoded (a latent upscale), used instead of encoding `frames`
    (then None). `guidance`: the weight of reconstruction guidance toward the kept area (on the squared distance
    averaged over the kept frames; `control.inpaint.KeptLatents.reconstructed`; 0: none). `release`: the steps
    that start below this timestep (of the noise schedule's 1000) keep the model's own latents in the kept area
    too, so that the clip as decoded finishes the kept area with the rest (an extension's overlap, which its output
    replaces with the input's frames anyway; 0: the kept area ends as the input's latents)."""

    frames: torch.Tensor | None
    strength: float = 0.6
    mask: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    mask_blur: float | None = None
    guidance: float = 0.0
    release: int = 0

    def overlaid(self, clip: torch.Tensor) -> torch.Tensor:
        """The finished clip (f 3 H W): with a mask and a `mask_blur`, the input's own pixels pasted back outside
        the mask over an edge blurred by that many pixels (`control.inpaint.pasted`); else `clip` as it is."""
        if self.mask is None or self.mask_blur is None:
            return clip
        return pasted(clip, self.frames, self.mask, self.mask_blur)


@dataclass(frozen=True)
class Extension:
    """Extending a clip: `frames` (the input, f 3 H W in [0, 1], the clip's size) go on for the clip's frames,
    the first `overlap` of which are the input's last ones, kept as masked video-to-video keeps them (a mask all
    black over them, all white after), so the motion continues; the rest is drawn from noise (strength 1).
    The output is the input followed by the new frames after the overlap, which keep the input's own pixels
    where they still show what its last frame showed (measured from the overlap's last frame as decoded, which the
    model finishes with the new frames in the steps that start below timestep `release`; an inpainting UNet keeps
    nothing itself and finishes it anyway). `guidance` > 0 pulls the new frames toward the kept ones
    (reconstruction guidance, `control.inpaint.KeptLatents.reconstructed`) on 4-channel UNets."""

    frames: torch.Tensor
    overlap: int = 4
    guidance: float = 0.0
    release: int = RELEASE

    def init(self, count: int) -> InitVideo:
        """The masked init video of a `count`-frame clip: the overlap, then the input's last frame repeated
        (almost all noise at strength 1), white after the overlap."""
        kept, last = self.frames[-self.overlap :], self.frames[-1:]
        frames = torch.cat([kept, last.expand(count - self.overlap, -1, -1, -1)])
        mask = torch.ones((count, 1, *frames.shape[2:]))
        mask[: self.overlap] = 0
        return InitVideo(frames, 1.0, mask, guidance=self.guidance, release=self.release)

    def join(self, clip: torch.Tensor) -> torch.Tensor:
        """The whole clip: the input's frames, then `clip`'s (f 3 H W, its overlap as decoded) after the overlap,
        with the input's own pixels carried on where nothing moved (`control.inpaint.carried`)."""
        frames = self.frames.to(clip)
        return torch.cat([frames, carried(clip[self.overlap :], clip[self.overlap - 1], frames[-1])])


@dataclass(frozen=True)
class InitImage:
    """Image to video without SparseCtrl, as the A1111 extension does it: `first` (3 H W in [0, 1], the clip's
    size) blended into each frame's starting latents with a weight 1 − i / `falloff` at frame i (never below
    0), `last` likewise from the end; the rest random; then noised to `strength` as video-to-video."""

    first: torch.Tensor
    last: torch.Tensor | None = None
    strength: float = 0.75
    falloff: float = 32.0

    def weights(self, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each frame's weight of the first and of the last image (summing to at most 1)."""
        index = torch.arange(frames, dtype=torch.float32)
        first = (1 - index / self.falloff).clamp(min=0)
        last = (1 - index.flip(0) / self.falloff).clamp(min=0) if self.last is not None else torch.zeros(frames)
        total = (first + last).clamp(min=1)
        return first / total, last / total


@dataclass(frozen=True)
class ControlNetInput:
    """One ControlNet with its control frames (f 3 H W, floats in [0, 1], kept on the CPU until a step
    uses them), its residuals' scale, and the part of the steps it acts on (`start` to `end`, fractions).
    `guess_mode` runs it on the conditional half of the guidance batch alone, without text."""

    model: ControlNetModel
    frames: torch.Tensor
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False

    def active(self, step: int, steps: int) -> bool:
        """Whether it acts on step `step` of `steps` (diffusers' `controlnet_keep`)."""
        return not (step / steps < self.start or (step + 1) / steps > self.end)


@dataclass(frozen=True)
class ImagePrompt:
    """An IP-Adapter's image embedding, `[uncond; cond]` stacked when guidance is on: (1 or 2, tokens or 1,
    dim); the adapter itself is loaded into the UNet's attention (`image_prompt.load_ip_adapter`)."""

    embeds: torch.Tensor


@dataclass(frozen=True)
class Conditions:
    """Everything besides text that conditions one clip (each part optional)."""

    init: InitVideo | InitImage | None = None
    extension: Extension | None = None  # extending a clip (it sets `init` itself)
    controlnets: tuple[ControlNetInput, ...] = ()
    image_prompt: ImagePrompt | None = None
    sparsectrl: SparseCtrlInput | None = None
    image_input: ImageInput | None = None  # PIA's or AnimateLCM-I2V's image
    camera: CameraInput | None = None  # CameraCtrl's pose features for the motion module

    def __post_init__(self):
        object.__setattr__(self, "controlnets", tuple(self.controlnets))
        if self.init is not None and not 0 < self.init.strength <= 1:
            raise ValueError(f"strength must be in (0, 1]; got {self.init.strength}")
