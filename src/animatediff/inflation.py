"""Inflation: turn a diffusers image UNet into a video UNet by plugging a motion module into it.

The image UNet is used as loaded (any SD1.x-shaped `UNet2DConditionModel`, DreamBooth or LoRA-merged),
never copied or re-implemented. Frames travel folded into the batch, `(b f) c h w`, so every image
layer sees each frame on its own; the temporal modules run after each resnet(+attention) pair of
every down and up block, and after the mid block's attention, through forward hooks. The UNet's own
parameter names stay as they are, so diffusers' LoRA and conversion machinery keep working on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import rearrange, repeat
from torch import nn

from animatediff.errors import AnimateDiffError
from animatediff.families import FAMILIES
from animatediff.formats import module_family
from animatediff.motion_module import MotionModule, MotionStrength, Windows

_INFLATED = "_animatediff_inflated"  # set on an image UNet once a video UNet's hooks and processors are in it


class AlreadyInflatedError(AnimateDiffError):
    """`inflate` was handed an image UNet that is inside a video UNet already."""


class FrameAxis:
    """How many frames are folded into the batch of the video forward pass under way (and, for context
    windows of the motion modules alone, which frames each window holds; and how strongly the motion modules
    act in this pass, `MotionStrength`).

    Forward hooks take no arguments of their own, so the temporal modules (and the frame-pooled
    GroupNorms) read the count here. It is set for exactly the duration of one `AnimateDiffUNet`
    forward pass and unset otherwise, so a temporal layer run any other way fails instead of using a
    count left over from an earlier call.
    """

    def __init__(self):
        self._frames: int | None = None
        self.windows: Windows | None = None
        self.text_per_clip = False  # whether every frame of a clip has the same text states
        self.strength: MotionStrength | None = None
        self.image_features: list[torch.Tensor] | None = None  # AnimateLCM-I2V's, one per down block, this pass

    @contextmanager
    def folded(
        self,
        frames: int,
        windows: Windows | None = None,
        text_per_clip: bool = False,
        strength: MotionStrength | None = None,
    ) -> Iterator[None]:
        if self._frames is not None:
            raise RuntimeError("the video UNet was called again from inside its own forward pass")
        self._frames, self.windows, self.text_per_clip, self.strength = frames, windows, text_per_clip, strength
        try:
            yield
        finally:
            self._frames, self.windows, self.text_per_clip, self.strength = None, None, False, None

    @property
    def shared_text_frames(self) -> int | None:
        """The frame count when the frames of each clip share their text states, else None."""
        return self._frames if self.text_per_clip and self._frames and self._frames > 1 else None

    @property
    def frames(self) -> int:
        if self._frames is None:
            raise RuntimeError("a temporal layer ran outside AnimateDiffUNet.forward: the frame count is unknown")
        return self._frames


class FramePooledGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics pool over all frames of a clip (the v1 image-layer behaviour).

    Shares its weight and bias with the GroupNorm it replaces, so parameter names do not change.
    """

    def __init__(self, norm: nn.GroupNorm, axis: FrameAxis):
        super().__init__(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
        self.weight, self.bias = norm.weight, norm.bias
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.axis.frames
        pooled = super().forward(rearrange(x, "(b f) c h w -> b c f h w", f=f))
        return rearrange(pooled, "b c f h w -> (b f) c h w")


class ClipTextAttention(AttnProcessor2_0):
    """Cross-attention to text states that all frames of a clip share: the keys and values are computed once
    per clip instead of once per frame, and the clip's frames attend as one sequence of queries (each query's
    softmax is its own, so the numbers are those of attending frame by frame). Anything else (self-attention,
    per-frame text in prompt travel, masks) goes the usual way; `share_text_keys` installs it only where the
    attention's layout is the plain one it computes."""

    def __init__(self, axis: FrameAxis):
        super().__init__()
        self.axis = axis

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ):
        frames = self.axis.shared_text_frames
        if (
            frames is None
            or encoder_hidden_states is None
            or attention_mask is not None
            or args
            or kwargs
            or hidden_states.ndim != 3
            or hidden_states.shape[0] % frames
        ):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch, tokens, _ = hidden_states.shape
        clips, text = batch // frames, encoder_hidden_states[::frames]
        query, key, value = attn.to_q(hidden_states), attn.to_k(text), attn.to_v(text)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(clips, frames * tokens, attn.heads, head_dim).transpose(1, 2)
        key = key.view(clips, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(clips, -1, attn.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, tokens, attn.heads * head_dim).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _plain_cross_attention(module: nn.Module) -> bool:
    """A cross-attention that runs diffusers' default processor with none of its optional norms, residual or
    output rescaling: the layout `ClipTextAttention` computes."""
    return (
        isinstance(module, Attention)
        and module.is_cross_attention
        and type(module.processor) is AttnProcessor2_0
        and (module.spatial_norm, module.group_norm, module.norm_q, module.norm_k) == (None,) * 4
        and not (module.norm_cross or module.residual_connection or module.rescale_output_factor != 1)
    )


def share_text_keys(unet: UNet2DConditionModel, axis: FrameAxis) -> None:
    """Give the plain cross-attentions the per-clip processor (`ClipTextAttention`); the layout is checked once
    here, not at every call."""
    for module in unet.modules():
        if _plain_cross_attention(module):
            module.set_processor(ClipTextAttention(axis))


def insertion_points(block: nn.Module) -> list[nn.Module]:
    """The layers after which a block's temporal modules run: its attentions, else its resnets."""
    attentions = getattr(block, "attentions", None)
    return list(attentions) if attentions else list(block.resnets)


def _check_widths(unet: UNet2DConditionModel, motion_module: MotionModule) -> None:
    config = motion_module.config
    unet_widths = tuple(unet.config.block_out_channels)
    if unet_widths == tuple(config.block_out_channels) and unet.config.layers_per_block == config.layers_per_block:
        return
    levels = len(config.block_out_channels)
    module_kind = "SDXL" if module_family(config) == FAMILIES["sdxl"] else "SD1.x"
    base_kind = "SDXL" if unet.config.addition_embed_type == "text_time" else "SD1.x"
    counted = {2: "two", 3: "three", 4: "four"}.get(levels, str(levels))
    mixed = f"an {module_kind} motion module ({counted} levels) on an {base_kind} base: " * (module_kind != base_kind)
    raise AnimateDiffError(
        f"{mixed}the motion module was made for an image UNet with block widths {config.block_out_channels} and "
        f"{config.layers_per_block} layers per block, but the base model's UNet has widths {unet_widths} and "
        f"{unet.config.layers_per_block} layers per block; use a motion module made for this base model."
    )


def apply_after(layer: nn.Module, module: nn.Module, axis: FrameAxis) -> None:
    """Run `module` on `layer`'s output, whatever form diffusers returns it in."""

    def hook(_layer, _inputs, output):
        if isinstance(output, torch.Tensor):
            return module(output, axis.frames, axis.windows, axis.strength)
        if isinstance(output, tuple):
            return (module(output[0], axis.frames, axis.windows, axis.strength), *output[1:])
        output.sample = module(output.sample, axis.frames, axis.windows, axis.strength)
        return output

    layer.register_forward_hook(hook)


def add_image_features(unet: UNet2DConditionModel, axis: FrameAxis) -> None:
    """Add each down block's image feature (`axis.image_features`, AnimateLCM-I2V's encoder) to the output of
    the block's second layer, before that layer's motion module runs (the release adds it there)."""
    for level, block in enumerate(unet.down_blocks):
        layers = insertion_points(block)
        if len(layers) < 2:
            continue

        def hook(_layer, _inputs, output, level=level):
            features = axis.image_features
            if features is None:
                return output
            if isinstance(output, torch.Tensor):
                return output + features[level]
            if isinstance(output, tuple):
                return (output[0] + features[level], *output[1:])
            output.sample = output.sample + features[level]
            return output

        layers[1].register_forward_hook(hook, prepend=True)


def fold_added(added: dict[str, torch.Tensor] | None, num_frames: int) -> dict[str, torch.Tensor]:
    """SDXL's added conditions (`text_embeds`, `time_ids`) one per folded frame, `(b f) d`: a value given per
    clip (b d) is repeated for each of its frames, one given per frame (b f d: a prompt map's pooled
    embeddings) folded."""
    return {
        key: rearrange(value, "b f d -> (b f) d") if value.ndim == 3 else value.repeat_interleave(num_frames, dim=0)
        for key, value in (added or {}).items()
    }


@dataclass
class Residuals:
    """What the video UNet's down blocks and mid block add to their outputs, `(b f) c h w` each: the input that
    ControlNets and SparseCtrl steer it through."""

    down: list[torch.Tensor]
    mid: torch.Tensor

    def __add__(self, other: Residuals) -> Residuals:
        return Residuals([a + b for a, b in zip(self.down, other.down, strict=True)], self.mid + other.mid)


class AnimateDiffUNet(nn.Module):
    """A video UNet: the image UNet plus an optional motion module, on `b c f h w` latents."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        motion_module: MotionModule | None = None,
        image_encoder: nn.Module | None = None,
    ):
        """`image_encoder`: AnimateLCM-I2V's (`control.image_input.ImageEncoder`), whose features of the
        `image_latents` a call is given join the down blocks."""
        super().__init__()
        if getattr(unet, _INFLATED, False):
            raise AlreadyInflatedError(
                "this image UNet was already inflated into a video UNet (its temporal hooks and attention "
                "processors are in place); inflating it again would run a second motion module on top of the "
                "first. Use the video UNet that the first inflation returned, or load the image UNet afresh."
            )
        if motion_module is not None:
            _check_widths(unet, motion_module)
        self.unet = unet
        self.motion_module = motion_module
        self.axis = FrameAxis()
        self.image_encoder = image_encoder
        share_text_keys(unet, self.axis)
        if image_encoder is not None:
            add_image_features(unet, self.axis)
        if motion_module is not None:
            self._plug_in(motion_module)
            if motion_module.config.image_norm_over_frames:
                self._pool_image_norms_over_frames()
        setattr(unet, _INFLATED, True)

    def _plug_in(self, motion_module: MotionModule) -> None:
        pairs = list(zip(self.unet.down_blocks, motion_module.down_blocks, strict=True))
        pairs += list(zip(self.unet.up_blocks, motion_module.up_blocks, strict=True))
        if motion_module.mid_block is not None:
            pairs.append((self.unet.mid_block, motion_module.mid_block))
        for block, temporal in pairs:
            for layer, module in zip(insertion_points(block), temporal.motion_modules, strict=True):
                apply_after(layer, module, self.axis)

    def _pool_image_norms_over_frames(self) -> None:
        blocks = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        for resnet in (r for block in blocks for r in block.resnets):
            resnet.norm1 = FramePooledGroupNorm(resnet.norm1, self.axis)
            resnet.norm2 = FramePooledGroupNorm(resnet.norm2, self.axis)
        self.unet.conv_norm_out = FramePooledGroupNorm(self.unet.conv_norm_out, self.axis)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the image UNet computes in: its input layer's (diffusers' `unet.dtype` walks every module for
        casting hooks at each call, which is not nothing once per step of a small UNet)."""
        return self.unet.conv_in.weight.dtype

    def enable_gradient_checkpointing(self) -> None:
        """Gradient checkpointing of the image UNet's blocks (motion modules included): a block run again
        in the backward pass sees the frame count of the forward pass it belongs to."""
        self.unet.enable_gradient_checkpointing(self._checkpoint)

    def _checkpoint(self, block: nn.Module, *args):
        axis = self.axis
        frames, windows, text_per_clip, strength = axis.frames, axis.windows, axis.text_per_clip, axis.strength
        return torch.utils.checkpoint.checkpoint(
            block.__call__,
            *args,
            use_reentrant=False,
            context_fn=lambda: (nullcontext(), axis.folded(frames, windows, text_per_clip, strength)),
        )

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        motion_windows: Windows | None = None,
        residuals: Residuals | None = None,
        image_embeds: torch.Tensor | None = None,
        added_cond: dict[str, torch.Tensor] | None = None,
        motion: MotionStrength | None = None,
    ) -> torch.Tensor:
        """Predict noise for video latents `sample` (b c f h w) given text states: one per clip (b n d) or
        one per frame ((b f) n d). `motion_windows` runs the motion modules' attention on those windows of
        frames alone, fused per frame (the image layers see every frame); None: on all frames at once.
        `residuals` (ControlNet, SparseCtrl) are added to the down blocks' and the mid block's outputs,
        `(b f) c h w` each; `image_embeds` (b, tokens, dim) are an IP-Adapter's image prompt per clip;
        `added_cond` what conditions each clip besides: SDXL's pooled text embeddings and size ids (`text_embeds`,
        `time_ids`; `fold_added`), the image latents AnimateLCM-I2V's encoder sees (`image_latents`, b 4 f h w;
        needs `image_encoder`); `motion` how strongly the motion modules act in this call, per frame of `sample`
        (None: as trained)."""
        num_frames, dtype = sample.shape[2], self.dtype
        folded = rearrange(sample.to(dtype), "b c f h w -> (b f) c h w")
        text = encoder_hidden_states.to(dtype)  # a text encoder kept in float32 feeds a bfloat16 UNet too
        text_per_clip = text.shape[0] != folded.shape[0] or num_frames == 1
        if text_per_clip:
            text = repeat(text, "b n d -> (b f) n d", f=num_frames)
        if torch.is_tensor(timestep) and timestep.ndim == 1:
            timestep = repeat(timestep, "b -> (b f)", f=num_frames)
        extra = {}
        if residuals is not None:
            extra["down_block_additional_residuals"] = residuals.down
            extra["mid_block_additional_residual"] = residuals.mid
        added_cond = dict(added_cond or {})
        image_latents = added_cond.pop("image_latents", None)
        added = fold_added(added_cond, num_frames)
        if image_embeds is not None:
            added["image_embeds"] = [image_embeds.to(dtype).repeat_interleave(num_frames, dim=0)]
        if added:
            extra["added_cond_kwargs"] = added
        features = None
        if image_latents is not None:  # one image for every clip of the batch
            image_latents = image_latents.expand(sample.shape[0], -1, -1, -1, -1)
            features = [feature.to(dtype) for feature in self.image_encoder(image_latents.to(dtype))]
        with self.axis.folded(num_frames, motion_windows, text_per_clip, motion):
            self.axis.image_features = features
            try:
                out = self.unet(folded, timestep, encoder_hidden_states=text, return_dict=False, **extra)[0]
            finally:
                self.axis.image_features = None
        return rearrange(out, "(b f) c h w -> b c f h w", f=num_frames)


def inflate(
    unet: UNet2DConditionModel, motion_module: MotionModule | None, image_encoder: nn.Module | None = None
) -> AnimateDiffUNet:
    """Plug `motion_module` (and AnimateLCM-I2V's `image_encoder`) into `unet` (in place, nothing copied) and
    return the video UNet."""
    for module in (motion_module, image_encoder):
        if module is not None:
            module.to(device=unet.device, dtype=unet.dtype)
    return AnimateDiffUNet(unet, motion_module, image_encoder)
