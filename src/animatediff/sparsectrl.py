"""SparseCtrl (AnimateDiff v3): the encoder that steers a whole clip from a few keyframes.

The encoder is a ControlNet made from the image UNet's own down blocks and mid block (diffusers'
`ControlNetModel`, built from the base's UNet) with a motion module of its own after every
resnet(+attention) pair of every down block: one temporal self-attention per transformer block,
GroupNorm per frame, a 32-frame position table. It follows the official `SparseControlNetModel` and the
controlnet branch of the official pipeline:

- Every frame of the clip gets a condition and a mask channel: keyframes hold their condition and mask 1,
  every other frame zeros. RGB models (the official "simplified condition embedding") take keyframe
  *latents* (the image through the VAE: a posterior sample times the scaling factor) through one 3×3
  convolution; scribble models take the image's pixels in [0, 1] through ControlNet's small stack of
  convolutions, which brings them down to the latents' size.
- The noisy latents are not shown to it: its latent input is zeros (`set_noisy_sample_input_to_zero`), so
  the condition, the timestep and the text states alone make its residuals.
- It runs at every step on the whole guidance batch (both halves see the same condition, each with its own
  text), and its residuals, times the conditioning scale, are added to the video UNet's down-block and
  mid-block outputs (the one hook ControlNets use too).

Its files (the official `.ckpt`, `.safetensors` in either key layout, diffusers' `SparseControlNetModel`
folders) are read and written by `animatediff.formats.sparsectrl`; the keyframes themselves (the condition,
the mask, RGB images through the VAE) are `animatediff.control.sparsectrl`'s.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from einops import rearrange, repeat
from torch import nn

from animatediff.errors import ConfigError
from animatediff.inflation import FrameAxis, Residuals, apply_after, insertion_points
from animatediff.motion_module import MotionModuleConfig, TemporalModule, Windows

_EMBEDDING = "controlnet_cond_embedding."


@dataclass(frozen=True)
class SparseCtrlConfig:
    """What a SparseCtrl encoder is besides the image UNet's shape (the official YAML's
    `controlnet_additional_kwargs`, or what its weights show).

    `latent_condition`: RGB keyframes as VAE latents through one convolution (official
    `use_simplified_condition_embedding`); otherwise pixels (scribbles) through `embedding_channels`.
    `conditioning_channels` counts the condition's channels without the mask channel that `mask` adds.
    `zero_input`: the encoder sees zeros instead of the noisy latents."""

    latent_condition: bool = True
    conditioning_channels: int = 4
    mask: bool = True
    zero_input: bool = True
    embedding_channels: tuple[int, ...] = (16, 32, 96, 256)
    motion_heads: int = 8
    motion_blocks: int = 1
    max_frames: int = 32
    norm_over_frames: bool = False  # the motion modules' GroupNorm pooled over frames (diffusers) or per frame

    @property
    def kind(self) -> str:
        return "rgb" if self.latent_condition else "scribble"

    @property
    def input_channels(self) -> int:
        return self.conditioning_channels + int(self.mask)

    def to_dict(self) -> dict:
        return asdict(self)

    def motion_config(self, widths: tuple[int, ...], layers_per_block: int) -> MotionModuleConfig:
        return MotionModuleConfig(
            block_out_channels=widths,
            layers_per_block=layers_per_block,
            mid_block=False,
            num_attention_heads=self.motion_heads,
            num_transformer_blocks=self.motion_blocks,
            self_attentions=1,
            max_frames=self.max_frames,
            norm_over_frames=self.norm_over_frames,
        )


class SparseCtrl(nn.Module):
    """The SparseCtrl encoder: `controlnet` (a diffusers `ControlNetModel` whose down blocks carry
    `motion_modules`, so its state dict has the official keys) run with the frames folded into the batch."""

    def __init__(self, controlnet: ControlNetModel, config: SparseCtrlConfig):
        super().__init__()
        self.controlnet, self.config = controlnet, config
        self.axis = FrameAxis()
        unet_config = controlnet.config
        motion = config.motion_config(tuple(unet_config.block_out_channels), unet_config.layers_per_block)
        for block, width in zip(controlnet.down_blocks, unet_config.block_out_channels, strict=True):
            block.motion_modules = nn.ModuleList(TemporalModule(width, motion) for _ in range(motion.layers_per_block))
            for layer, module in zip(insertion_points(block), block.motion_modules, strict=True):
                apply_after(layer, module, self.axis)

    @property
    def dtype(self) -> torch.dtype:
        return self.controlnet.dtype

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.controlnet.config.block_out_channels)

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {key: value.detach() for key, value in self.controlnet.state_dict().items()}

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        text_states: torch.Tensor,
        condition: torch.Tensor,
        mask: torch.Tensor,
        scale: float = 1.0,
        windows: Windows | None = None,
    ) -> Residuals:
        """Residuals for the video UNet at `sample` (b c f h w, the guidance batch) and `timestep`, given the
        text states (b n d, or (b f) n d per frame) and the clip's `condition` (c f H W) and `mask` (1 f H W),
        zeros on frames without a keyframe (or one of each per clip of the batch: b c f H W, b 1 f H W).
        `windows`: the motion modules' context windows, as the UNet's."""
        batch, frames = sample.shape[0], sample.shape[2]
        latents = torch.zeros_like(sample) if self.config.zero_input else sample
        if self.config.mask:
            condition = torch.cat([condition, mask], dim=-4)
        condition = condition.to(sample.device, self.dtype)
        if condition.ndim == 5:  # one per clip of the batch (training)
            condition = rearrange(condition, "b c f h w -> (b f) c h w")
        else:
            condition = repeat(condition, "c f h w -> (b f) c h w", b=batch)
        if text_states.shape[0] == batch:
            text_states = repeat(text_states, "b n d -> (b f) n d", f=frames)
        if torch.is_tensor(timestep) and timestep.ndim == 1 and len(timestep) == batch:
            timestep = repeat(timestep, "b -> (b f)", f=frames)
        with self.axis.folded(frames, windows):
            down, mid = self.controlnet(
                rearrange(latents, "b c f h w -> (b f) c h w").to(self.dtype),
                timestep,
                encoder_hidden_states=text_states.to(self.dtype),
                controlnet_cond=condition,
                conditioning_scale=scale,
                return_dict=False,
            )
        return Residuals(list(down), mid)


def build_sparsectrl(unet: UNet2DConditionModel, config: SparseCtrlConfig) -> SparseCtrl:
    """A SparseCtrl encoder for `unet`'s shape, its image layers copied from `unet` (the official
    `from_unet`), its motion modules fresh (zero output) and its zero convolutions at zero."""
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_channels=config.input_channels, conditioning_embedding_out_channels=config.embedding_channels
    )
    if config.latent_condition:
        controlnet.controlnet_cond_embedding = nn.Conv2d(
            config.input_channels, unet.config.block_out_channels[0], kernel_size=3, padding=1
        )
        nn.init.zeros_(controlnet.controlnet_cond_embedding.weight)
        nn.init.zeros_(controlnet.controlnet_cond_embedding.bias)
    model = SparseCtrl(controlnet, config).eval()
    if (unet.device, unet.dtype) != (controlnet.device, controlnet.dtype):
        nn.Module.to(model, unet.device, unet.dtype)
    return model


# ---------------------------------------------------------------------------------------------------
# What an encoder's (official-layout) weights show


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(match[1]) for key in state if (match := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def infer_config(state: dict[str, torch.Tensor], saved: dict | None = None) -> SparseCtrlConfig:
    """The encoder's config from its (official-layout) weights; a diffusers folder's or the official YAML's
    settings (`saved`) fill in what weights cannot show (heads, the mask, the zero input)."""
    saved = saved or {}
    mask = bool(saved.get("concat_conditioning_mask", saved.get("concate_conditioning_mask", True)))
    latent = _EMBEDDING + "weight" in state
    embedding = state[_EMBEDDING + "weight"] if latent else state[_EMBEDDING + "conv_in.weight"]
    blocks = _count(state, r"^controlnet_cond_embedding\.blocks\.(\d+)\.")
    channels = (
        ()
        if latent
        else (embedding.shape[0], *(state[f"{_EMBEDDING}blocks.{i}.weight"].shape[0] for i in range(1, blocks, 2)))
    )
    table = next((value for key, value in state.items() if key.endswith("pos_encoder.pe")), None)
    first_module = r"^down_blocks\.0\.motion_modules\.0\.temporal_transformer\."
    motion_blocks = _count(state, first_module + r"transformer_blocks\.(\d+)\.")
    heads = saved.get("motion_num_attention_heads", saved.get("motion_module_kwargs", {}).get("num_attention_heads", 8))
    return SparseCtrlConfig(
        latent_condition=latent,
        conditioning_channels=embedding.shape[1] - int(mask),
        mask=mask,
        zero_input=bool(saved.get("set_noisy_sample_input_to_zero", True)),
        embedding_channels=channels or SparseCtrlConfig.embedding_channels,
        motion_heads=int(heads if isinstance(heads, int) else heads[0]),
        motion_blocks=motion_blocks or 1,
        max_frames=table.shape[1] if table is not None else 32,
    )


def encoder_shape(state: dict[str, torch.Tensor]) -> dict:
    """The image UNet shape an encoder's weights were made for: widths, layers per block, text width."""
    levels = _count(state, r"^down_blocks\.(\d+)\.")
    return {
        "block_out_channels": tuple(state[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)),
        "layers_per_block": _count(state, r"^down_blocks\.0\.resnets\.(\d+)\."),
        "cross_attention_dim": next(
            (value.shape[1] for key, value in state.items() if key.endswith("attn2.to_k.weight")), None
        ),
    }


_YAML_FIXED = {
    "use_motion_module": True,
    "motion_module_mid_block": False,
    "motion_module_type": "Vanilla",
    "motion_module_resolutions": [1, 2, 4, 8],
}


def check_settings(path, config: SparseCtrlConfig, settings: dict) -> None:
    """Refuse official YAML settings that contradict the weights or that this package does not build."""
    for name, value in _YAML_FIXED.items():
        if name in settings and settings[name] != value:
            raise ConfigError(
                f"controlnet_config: {name} {settings[name]!r} is not supported for sparsectrl {path}; "
                f"the official SparseCtrl encoders have {value!r}."
            )
    said = settings.get("use_simplified_condition_embedding")
    if said is not None and bool(said) != config.latent_condition:
        raise ConfigError(
            f"controlnet_config: use_simplified_condition_embedding {said} does not fit sparsectrl {path}, whose "
            f"weights are a {config.kind} encoder ({'latent' if config.latent_condition else 'image'} condition)."
        )
    channels = settings.get("conditioning_channels")
    if channels is not None and int(channels) != config.conditioning_channels:
        raise ConfigError(
            f"controlnet_config: conditioning_channels {channels} does not fit sparsectrl {path}, "
            f"whose weights take {config.conditioning_channels}."
        )


def check_keyframes(indices, count: int, frames: int) -> None:
    """Refuse keyframe indices outside a clip of `frames` frames, or more indices than `count` keyframes."""
    if count < len(indices):
        raise ConfigError(
            f"SparseCtrl: {len(indices)} keyframe indices but {count} keyframes; give one image (or latent) per index."
        )
    for index in indices:
        if not -frames <= index < frames:
            raise ConfigError(
                f"keyframe index {index} is outside the clip's {frames} frames (0 to {frames - 1}, or "
                "negative from the end)."
            )
