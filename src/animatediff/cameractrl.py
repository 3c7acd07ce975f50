"""CameraCtrl (He et al., 2024): camera poses steering a v3 motion module.

A clip's camera path becomes a Plücker embedding, six numbers per pixel and frame (`control.camera`). The
**pose encoder** turns it into one feature map per UNet level, as the release's `CameraPoseEncoder` does:

    (b f) 6 H W → pixel unshuffle by the VAE's factor → conv_in → per level: [down (avg-pool, not the
    first level)] → N × (resnet → temporal self-attention over frames, with a position table) → feature

and the **camera-conditioned motion module** adds each level's feature to the first temporal attention of
every transformer block at that level: after its position encoding, the attention's input h becomes

    h' = qkv_merge(h + pose) + h

and the queries, keys and values are all computed from h' (the release's `PoseAdaptorAttnProcessor` with
`query_condition` and `key_value_condition`, at its scale 1). Down block i takes level i's feature, up block
i the feature of the level of its width (the last level first). The merge layers are the only weights
CameraCtrl adds to the motion module; with no poses set they leave it as it was.

The release file (`CameraCtrl.ckpt`) holds `pose_encoder_state_dict` (the encoder's keys as here) and
`attention_processor_state_dict` (`…attention_blocks.0.processor.qkv_merge.weight|bias`, keyed by the
motion-module position they sit in); `formats.safe` reads them flattened, the encoder's under
`pose_encoder.`. It goes with the v3 motion module, the image model's VAE factor and at most 16 frames.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from animatediff.errors import CheckpointError
from animatediff.motion_module import MotionModule, MotionModuleConfig, TemporalTransformerBlock

ENCODER = "pose_encoder."
MERGE = re.compile(r"^(.*\.attention_blocks\.0)\.processor\.qkv_merge\.(weight|bias)$")
PLUCKER_CHANNELS = 6


@dataclass(frozen=True)
class PoseEncoderConfig:
    """The release's `pose_encoder_kwargs` that its weights show (`heads` they do not: the release uses 8).
    `skip_conv`: a convolution on each resnet's shortcut (`sk: false`); `conv_down`: a strided convolution
    instead of average pooling between levels (`use_conv: true`)."""

    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    resnets: int = 2
    downscale: int = 8
    kernel: int = 1
    skip_conv: bool = False
    conv_down: bool = False
    heads: int = 8
    max_frames: int = 16

    @property
    def input_channels(self) -> int:
        return PLUCKER_CHANNELS * self.downscale**2


class PoseResnet(nn.Module):
    """The encoder's resnet: [down] → [in_conv to the new width] → 3×3 conv → ReLU → k×k conv, + shortcut."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, config: PoseEncoderConfig):
        super().__init__()
        padding = config.kernel // 2
        self.down_opt = _Down(in_channels, config.conv_down) if down else None
        needs_in_conv = in_channels != out_channels or config.skip_conv
        self.in_conv = nn.Conv2d(in_channels, out_channels, config.kernel, 1, padding) if needs_in_conv else None
        self.block1 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(out_channels, out_channels, config.kernel, 1, padding)
        self.skep = nn.Conv2d(in_channels, out_channels, config.kernel, 1, padding) if config.skip_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down_opt is not None:
            x = self.down_opt(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        h = self.block2(self.act(self.block1(x)))
        return h + (x if self.skep is None else self.skep(x))


class _Down(nn.Module):
    """Halves the size: a strided 3×3 convolution, or 2×2 average pooling."""

    def __init__(self, channels: int, conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class CameraPoseEncoder(nn.Module):
    """Plücker embeddings (b 6 f H W) → one feature map per UNet level, `(b f) c h w` each."""

    def __init__(self, config: PoseEncoderConfig):
        super().__init__()
        self.config = config
        widths = config.channels
        self.unshuffle = nn.PixelUnshuffle(config.downscale)
        self.encoder_conv_in = nn.Conv2d(config.input_channels, widths[0], 3, 1, 1)
        self.encoder_down_conv_blocks = nn.ModuleList(
            nn.ModuleList(self._resnet(level, j) for j in range(config.resnets)) for level in range(len(widths))
        )
        attention = MotionModuleConfig(
            num_attention_heads=config.heads, self_attentions=1, max_frames=config.max_frames
        )
        self.encoder_down_attention_blocks = nn.ModuleList(
            nn.ModuleList(TemporalTransformerBlock(width, attention) for _ in range(config.resnets)) for width in widths
        )

    def _resnet(self, level: int, index: int) -> PoseResnet:
        """The level's `index`-th resnet: the first of a level after the first comes down from the level above."""
        widths = self.config.channels
        entering = index == 0 and level > 0
        return PoseResnet(widths[level - 1] if entering else widths[level], widths[level], entering, self.config)

    def forward(self, plucker: torch.Tensor) -> list[torch.Tensor]:
        clips = plucker.shape[0]
        x = self.encoder_conv_in(self.unshuffle(rearrange(plucker, "b c f h w -> (b f) c h w")))
        features = []
        for resnets, attentions in zip(self.encoder_down_conv_blocks, self.encoder_down_attention_blocks, strict=True):
            for resnet, attention in zip(resnets, attentions, strict=True):
                x = resnet(x)
                height, width = x.shape[-2:]
                x = attention(rearrange(x, "(b f) c h w -> (b h w) f c", b=clips))
                x = rearrange(x, "(b h w) f c -> (b f) c h w", h=height, w=width)
            features.append(x)
        return features


class PoseFeatures:
    """The pose features of the video UNet call under way, one `b c f h w` map per level (None: no poses),
    read by every `PoseMerge` (forward hooks and attentions take no extra arguments)."""

    def __init__(self):
        self.levels: list[torch.Tensor] | None = None


class PoseMerge(nn.Module):
    """One temporal attention's pose layer: its input h becomes qkv_merge(h + pose) + h."""

    def __init__(self, channels: int, level: int, features: PoseFeatures):
        super().__init__()
        self.qkv_merge = nn.Linear(channels, channels)
        self.level, self.features = level, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (b h w) f c, the attention's input after its position encoding
        if self.features.levels is None:
            return x
        feature = self.features.levels[self.level]  # 1 c f h w
        sequences = feature.shape[-2] * feature.shape[-1]
        if x.shape[0] % sequences or x.shape[1] != feature.shape[2]:
            raise ValueError(
                f"CameraCtrl's pose features ({feature.shape[2]} frames of {feature.shape[-1]}×{feature.shape[-2]}) "
                f"do not fit the motion module's input at this level ({x.shape[1]} frames, {x.shape[0]} positions)"
            )
        pose = repeat(feature, "1 c f h w -> (n h w) f c", n=x.shape[0] // sequences).to(x.dtype)
        return self.qkv_merge(x + pose) + x


class CameraCtrl(nn.Module):
    """The pose encoder and the pose layers it plugged into a motion module (`attach`)."""

    def __init__(
        self, encoder: CameraPoseEncoder, merges: dict[str, tuple[nn.Module, PoseMerge]], features: PoseFeatures
    ):
        """`merges`: each pose layer by its release key prefix, with the attention it plugs into."""
        super().__init__()
        self.pose_encoder = encoder
        self.merges = nn.ModuleList(merge for _, merge in merges.values())
        self.merge_names = tuple(merges)
        self._attentions = [attention for attention, _ in merges.values()]  # not submodules: the motion module's
        self.features = features
        self.plug_in()

    def plug_in(self) -> None:
        """Put the pose layers into their attentions (again: another CameraCtrl may have taken their place)."""
        for attention, merge in zip(self._attentions, self.merges, strict=True):
            attention.pose_merge = merge

    @property
    def config(self) -> PoseEncoderConfig:
        return self.pose_encoder.config

    def encode(self, plucker: torch.Tensor) -> list[torch.Tensor]:
        """Plücker embeddings of one clip (f 6 H W) → its pose features per level (1 c f h w)."""
        parameter = next(self.pose_encoder.parameters())
        inputs = rearrange(plucker, "f c h w -> 1 c f h w").to(parameter.device, parameter.dtype)
        return [rearrange(x, "(b f) c h w -> b c f h w", b=1) for x in self.pose_encoder(inputs)]

    @contextmanager
    def conditioned(self, features: list[torch.Tensor]) -> Iterator[None]:
        """The motion module's pose layers see `features` (from `encode`) while the block runs."""
        self.plug_in()
        self.features.levels = features
        try:
            yield
        finally:
            self.features.levels = None


def pose_attentions(motion_module: MotionModule) -> dict[str, tuple[nn.Module, int]]:
    """Every first temporal attention of the module's transformer blocks, by its key prefix in the release's
    layout, with the encoder level whose feature it takes (down block i: level i; up block i: the level of
    the i-th width from the end; the mid block: the last level)."""
    levels = len(motion_module.config.block_out_channels)
    blocks = [(f"down_blocks.{i}", block, i) for i, block in enumerate(motion_module.down_blocks)]
    blocks += [(f"up_blocks.{i}", block, levels - 1 - i) for i, block in enumerate(motion_module.up_blocks)]
    if motion_module.mid_block is not None:
        blocks.append(("mid_block", motion_module.mid_block, levels - 1))
    found = {}
    for prefix, block, level in blocks:
        for j, module in enumerate(block.motion_modules):
            for k, transformer_block in enumerate(module.temporal_transformer.transformer_blocks):
                name = f"{prefix}.motion_modules.{j}.temporal_transformer.transformer_blocks.{k}.attention_blocks.0"
                found[name] = (transformer_block.attention_blocks[0], level)
    return found


def encoder_config(state_dict: dict[str, torch.Tensor], path) -> PoseEncoderConfig:
    """The pose encoder's settings, read from its weights (`pose_encoder.`-prefixed keys)."""
    try:
        conv_in = state_dict[f"{ENCODER}encoder_conv_in.weight"]
        levels = 1 + max(
            int(k.split(".")[2]) for k in state_dict if k.startswith(f"{ENCODER}encoder_down_conv_blocks.")
        )
        resnets = 1 + max(
            int(k.split(".")[3]) for k in state_dict if k.startswith(f"{ENCODER}encoder_down_conv_blocks.0.")
        )
        channels = tuple(
            state_dict[f"{ENCODER}encoder_down_conv_blocks.{i}.0.block1.weight"].shape[0] for i in range(levels)
        )
        kernel = state_dict[f"{ENCODER}encoder_down_conv_blocks.0.0.block2.weight"].shape[-1]
        table = state_dict.get(f"{ENCODER}encoder_down_attention_blocks.0.0.attention_blocks.0.pos_encoder.pe")
    except (KeyError, ValueError, IndexError) as error:
        raise CheckpointError(f"{path}: not a CameraCtrl pose encoder (missing {error}).") from None
    downscale = math.isqrt(conv_in.shape[1] // PLUCKER_CHANNELS)
    if conv_in.shape[1] != PLUCKER_CHANNELS * downscale**2:
        raise CheckpointError(f"{path}: the pose encoder takes {conv_in.shape[1]} channels; expected 6 × a square.")
    return PoseEncoderConfig(
        channels=channels,
        resnets=resnets,
        downscale=downscale,
        kernel=kernel,
        skip_conv=f"{ENCODER}encoder_down_conv_blocks.0.0.skep.weight" in state_dict,
        conv_down=levels > 1 and f"{ENCODER}encoder_down_conv_blocks.1.0.down_opt.op.weight" in state_dict,
        max_frames=table.shape[1] if table is not None else 16,
    )


def attach(motion_module: MotionModule, state_dict: dict[str, torch.Tensor], path) -> CameraCtrl:
    """CameraCtrl from a file's tensors (`pose_encoder.`-prefixed encoder keys, the release's merge keys),
    its pose layers plugged into `motion_module`'s attentions. Every weight must find its place and every
    first temporal attention its pose layer, else a `CheckpointError` naming what does not fit."""
    config = encoder_config(state_dict, path)
    widths = motion_module.config.block_out_channels
    if config.channels != tuple(widths):
        raise CheckpointError(
            f"{path}: this CameraCtrl's pose encoder has widths {config.channels}, the motion module {tuple(widths)}; "
            "use the motion module it was trained with (the v3 module for the release)."
        )
    encoder = CameraPoseEncoder(config)
    _load(encoder, {k.removeprefix(ENCODER): v for k, v in state_dict.items() if k.startswith(ENCODER)}, path)
    merges_in_file = {MERGE.match(k)[1] for k in state_dict if MERGE.match(k)}
    places = pose_attentions(motion_module)
    if merges_in_file != set(places):
        missing, extra = sorted(set(places) - merges_in_file), sorted(merges_in_file - set(places))
        found = [f"{len(missing)} of its attentions without one, e.g. {missing[0]}"] if missing else []
        found += [f"{len(extra)} for attentions it does not have, e.g. {extra[0]}"] if extra else []
        raise CheckpointError(
            f"{path}: its pose layers do not fit this motion module ({'; '.join(found)}); use the v3 motion "
            "module CameraCtrl was trained with."
        )
    features = PoseFeatures()
    merges = {}
    for name, (attention, level) in places.items():
        merge = PoseMerge(widths[level], level, features)
        weights = {part: state_dict[f"{name}.processor.qkv_merge.{part}"] for part in ("weight", "bias")}
        _load(merge.qkv_merge, weights, path)
        merges[name] = (attention, merge)
    return CameraCtrl(encoder, merges, features).eval()


def _load(module: nn.Module, weights: dict[str, torch.Tensor], path) -> None:
    try:
        module.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: the CameraCtrl weights do not fit ({str(error).splitlines()[-1].strip()})."
        ) from None
