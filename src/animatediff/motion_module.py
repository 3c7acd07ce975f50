"""The motion module: AnimateDiff's contribution, a temporal transformer plugged into an image UNet.

At every place it is inserted, the module sees the UNet's feature map with the video's frames folded
into the batch, `(b f) c h w`. It lets every spatial position attend across the frames at that same
position, so the image layers stay untouched and the module only learns how content moves:

    x → GroupNorm → proj_in → N × [ 2 × (LayerNorm → + position table → attention over frames, residual)
                                    → (LayerNorm → GEGLU feed-forward, residual) ] → proj_out → + x

`proj_out` starts at zero, so a freshly built module is the identity and inserting it does not change
the image model. Parameter names follow the official release
(`down_blocks.i.motion_modules.j.temporal_transformer.…`), so its checkpoints load 1:1.

A call may ask the modules to act more or less strongly (`MotionStrength`, per frame): the attention's keys
scaled, the module's change to its input scaled. It is an argument of that call, never kept on the module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from einops import rearrange
from torch import nn

ModuleKind = Literal["transformer", "convolution"]
# Context windows over the frame axis: each a (frame indices, fuse weights) pair of length-L tensors
Windows = Sequence[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class MotionStrength:
    """How strongly the motion modules act in one video UNet call (ComfyUI-AnimateDiff-Evolved's motion scale and
    effect, `sampling.motion_strength`), one value per frame of the clip the call sees, float32 `(f,)`.

    `scale` multiplies each frame's keys in the temporal attention, so the query-key products (None: 1);
    `effect` scales what each module adds to its input, `x + effect · (module(x) − x)` (None: 1); `off`: the
    effect is 0 on every frame, and the modules are skipped (the image model alone)."""

    scale: torch.Tensor | None = None
    effect: torch.Tensor | None = None
    off: bool = False

    @classmethod
    def of(
        cls, scale: Sequence[float] | None, effect: Sequence[float] | None, device: torch.device
    ) -> MotionStrength | None:
        """The strength for per-frame values (None: 1 on every frame); None when both are None."""
        if scale is None and effect is None:
            return None
        return cls(
            None if scale is None else torch.tensor(scale, device=device),
            None if effect is None else torch.tensor(effect, device=device),
            effect is not None and not any(effect),
        )


@dataclass(frozen=True)
class MotionModuleConfig:
    """Shape and behaviour of a motion module, for one image UNet layout.

    `block_out_channels` and `layers_per_block` mirror the image UNet the module plugs into.
    `norm_over_frames` pools the module's GroupNorm over all frames (diffusers, official SDXL beta)
    instead of per frame (official SD1.5 v1/v2/v3). `image_norm_over_frames` is the matching choice
    for the image UNet's resnet GroupNorms: v1 modules were trained with them pooled over frames.
    """

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    mid_block: bool = True
    num_attention_heads: int = 8
    num_transformer_blocks: int = 1
    self_attentions: int = 2  # per transformer block (SparseCtrl's encoder has 1)
    max_frames: int = 32
    position_encoding: bool = True
    norm_num_groups: int = 32
    norm_over_frames: bool = False
    image_norm_over_frames: bool = False
    kind: ModuleKind = "transformer"  # or "convolution", the paper's ablation

    def __post_init__(self):
        if self.kind not in get_args(ModuleKind):
            raise ValueError(f"motion module kind must be 'transformer' or 'convolution'; got {self.kind!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MotionModuleConfig:
        values = dict(values)
        values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)


def sinusoidal_table(max_frames: int, dim: int) -> torch.Tensor:
    """The fixed position table of the paper (Vaswani et al.): sin on even, cos on odd channels."""
    position = torch.arange(max_frames).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_frames, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table


class PositionEncoding(nn.Module):
    """Adds the sinusoidal table to a sequence of frames; without it attention cannot tell frame order."""

    def __init__(self, dim: int, max_frames: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_frames, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (n, f, c)
        num_frames = x.shape[1]
        if num_frames > self.pe.shape[1]:
            raise ValueError(
                f"{num_frames} frames exceed this motion module's position table of {self.pe.shape[1]} frames"
            )
        return x + self.pe[:, :num_frames].to(x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head self-attention along the frame axis only: every pixel attends to itself in other frames.

    The batch of sequences (`b·h·w`, e.g. 8192 at 512² with guidance) is fed to the attention kernel in
    chunks of at most `max_sequences`, below the batch limits some GPU kernels have.
    """

    max_sequences = 16384

    def __init__(self, dim: int, heads: int, max_frames: int, position_encoding: bool):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim))
        self.pos_encoder = PositionEncoding(dim, max_frames) if position_encoding else None
        self.pose_merge: nn.Module | None = None  # CameraCtrl's pose layer, when it is plugged in (`cameractrl`)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        # x: (b h w) f c, one sequence of frames per spatial position; scale: (f,) multiplies each frame's key
        if self.pos_encoder is not None:
            x = self.pos_encoder(x)
        if self.pose_merge is not None:  # camera poses enter the queries, keys and values alike
            x = self.pose_merge(x)
        q, k, v = (
            rearrange(project(x), "n f (heads d) -> n heads f d", heads=self.heads)
            for project in (self.to_q, self.to_k, self.to_v)
        )
        if scale is not None:
            k = k * rearrange(scale, "f -> f 1").to(k.dtype)
        chunks = zip(*(t.split(self.max_sequences) for t in (q, k, v)), strict=True)
        outs = [F.scaled_dot_product_attention(*chunk) for chunk in chunks]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)  # one chunk: no copy
        return self.to_out(rearrange(out, "n heads f d -> n f (heads d)"))


class TemporalTransformerBlock(nn.Module):
    """Two (`self_attentions`) pre-norm temporal self-attentions, then a pre-norm GEGLU feed-forward, each
    residual."""

    def __init__(self, dim: int, config: MotionModuleConfig):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(dim, config.num_attention_heads, config.max_frames, config.position_encoding)
            for _ in range(config.self_attentions)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(config.self_attentions))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, windows: Windows | None = None, scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        # x: (b h w) f c; scale: (f,) or None
        x = self._attend(x, scale) if windows is None else self._attend_in_windows(x, windows, scale)
        return self.ff(self.ff_norm(x)) + x

    def _attend(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        for norm, attention in zip(self.norms, self.attention_blocks, strict=True):
            x = attention(norm(x), scale) + x
        return x

    def _attend_in_windows(self, x: torch.Tensor, windows: Windows, scale: torch.Tensor | None) -> torch.Tensor:
        """The attentions run on each window of frames alone (positions counted from the window's first
        frame), and each frame's results are averaged over the windows that hold it, by their weights."""
        total = torch.zeros_like(x, dtype=torch.float32)  # the weighted sum in float32 whatever the dtype
        count = torch.zeros(1, x.shape[1], 1, device=x.device)
        for frames, weights in windows:
            frames, weights = frames.to(x.device), weights.to(x.device)[None, :, None]
            window_scale = None if scale is None else scale[frames]
            total.index_add_(1, frames, self._attend(x[:, frames], window_scale).float() * weights)
            count.index_add_(1, frames, weights)
        return torch.where(count > 0, total / count, total).to(x.dtype)


class TemporalTransformer(nn.Module):
    """GroupNorm → proj_in → temporal transformer blocks → proj_out, added to the input."""

    def __init__(self, channels: int, config: MotionModuleConfig):
        super().__init__()
        self.norm_over_frames = config.norm_over_frames
        self.norm = nn.GroupNorm(config.norm_num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(channels, config) for _ in range(config.num_transformer_blocks)
        )
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        windows: Windows | None = None,
        strength: MotionStrength | None = None,
    ) -> torch.Tensor:
        # x: (b f) c h w
        strength = strength or MotionStrength()
        if strength.off:
            return x
        height, width = x.shape[-2:]
        if self.norm_over_frames:
            h = rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)
            h = rearrange(self.norm(h), "b c f h w -> (b h w) f c")
        else:
            h = rearrange(self.norm(x), "(b f) c h w -> (b h w) f c", f=num_frames)
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h, windows, strength.scale)
        h = self.proj_out(h)
        if strength.effect is not None:
            h = h * rearrange(strength.effect, "f -> f 1").to(h.dtype)
        return rearrange(h, "(b h w) f c -> (b f) c h w", h=height, w=width) + x


class TemporalModule(nn.Module):
    """One insertion point of the motion module (the official `VanillaTemporalModule`)."""

    def __init__(self, channels: int, config: MotionModuleConfig):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, config)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        windows: Windows | None = None,
        strength: MotionStrength | None = None,
    ) -> torch.Tensor:
        return self.temporal_transformer(x, num_frames, windows, strength)


class TemporalConvolution(nn.Module):
    """The ablation's alternative: GroupNorm → 1-D convolutions along the frame axis → + x.

    Each spatial position sees only its neighbouring frames (kernel 3), with no attention and no
    position table; the last convolution starts at zero, so a fresh module is the identity too.
    """

    def __init__(self, channels: int, config: MotionModuleConfig):
        super().__init__()
        self.norm = nn.GroupNorm(config.norm_num_groups, channels, eps=1e-6)
        self.conv_in = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.conv_out = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int, effect: torch.Tensor | None = None) -> torch.Tensor:
        # effect: (f,) scales what the convolutions add to each frame (None: 1)
        height, width = x.shape[-2:]
        h = rearrange(self.norm(x), "(b f) c h w -> (b h w) c f", f=num_frames)
        h = self.conv_out(F.silu(self.conv_in(h)))
        if effect is not None:
            h = h * effect.to(h.dtype)
        return rearrange(h, "(b h w) c f -> (b f) c h w", h=height, w=width) + x


class ConvolutionModule(nn.Module):
    """One insertion point of the convolution variant, keyed `temporal_convolution`."""

    def __init__(self, channels: int, config: MotionModuleConfig):
        super().__init__()
        self.temporal_convolution = TemporalConvolution(channels, config)

    def forward(
        self,
        x: torch.Tensor,
        num_frames: int,
        windows: Windows | None = None,
        strength: MotionStrength | None = None,
    ) -> torch.Tensor:
        """A convolution sees three neighbouring frames at a time, so it needs no context windows; having no
        attention, it takes a strength's effect and not its scale."""
        if strength is not None and strength.off:
            return x
        return self.temporal_convolution(x, num_frames, None if strength is None else strength.effect)


MODULE_KINDS = {"transformer": TemporalModule, "convolution": ConvolutionModule}


class _BlockModules(nn.Module):
    """Holds one UNet block's temporal modules under the official name `motion_modules`."""

    def __init__(self, channels: int, count: int, config: MotionModuleConfig):
        super().__init__()
        module = MODULE_KINDS[config.kind]
        self.motion_modules = nn.ModuleList(module(channels, config) for _ in range(count))


class MotionModule(nn.Module):
    """All temporal modules for one image UNet layout, keyed like the official checkpoints.

    Down block i holds `layers_per_block` modules of width `block_out_channels[i]`; up block i holds
    `layers_per_block + 1` of the reversed widths; the optional mid block holds one.
    """

    def __init__(self, config: MotionModuleConfig):
        super().__init__()
        self.config = config
        widths = config.block_out_channels
        self.down_blocks = nn.ModuleList(_BlockModules(c, config.layers_per_block, config) for c in widths)
        self.up_blocks = nn.ModuleList(_BlockModules(c, config.layers_per_block + 1, config) for c in reversed(widths))
        self.mid_block = _BlockModules(widths[-1], 1, config) if config.mid_block else None
