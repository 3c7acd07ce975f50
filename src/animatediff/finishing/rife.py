"""RIFE 4.x (Huang et al., "Real-Time Intermediate Flow Estimation for Video Frame Interpolation", ECCV 2022)
from the weights Practical-RIFE publishes (`flownet.pkl`, a state dict of its IFNet).

No maintained package loads these weights offline as a library (Practical-RIFE is a script repository; the
packaged ports wrap ncnn or VapourSynth), so the network is written here from the paper and the published
weights' key layout, and sized from the weights themselves: IFNet is a coarse-to-fine stack of IFBlocks,
each seeing both frames (and, from the second on, both warped by the flow so far, the last fusion mask and
its features) at 1/2^(n−1−i) of the size and refining the two flows from time t to each frame and the
fusion mask; a small `encode` head (4.7 and later) adds learned features of each frame. The in-between
frame is both frames warped by the final flows and blended by the sigmoid of the mask. Releases 4.x differ
only in the number of blocks, their widths, the head and how many features a block hands to the next; all
are read from the shapes of the weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from animatediff.errors import CheckpointError
from animatediff.formats.safe import read_state_dict

BLOCK_CONVS = 8  # ResConvs per IFBlock in every 4.x release
FLOW, MASK = 4, 1  # each block's output: two flows (t → first, t → second), the fusion mask, then features
TRAINING_ONLY = ("teacher.", "caltime.")  # present in some training checkpoints, unused at inference


def _conv(into: int, out: int) -> nn.Sequential:
    """A stride-2 3×3 convolution and LeakyReLU (the block's downsampling stem)."""
    return nn.Sequential(nn.Conv2d(into, out, 3, 2, 1), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    """x + β·conv(x), then LeakyReLU: the block's body."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One level: its inputs at 1/scale of the size → the flow update, mask and features at full size."""

    def __init__(self, into: int, channels: int, out: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(into, channels // 2), _conv(channels // 2, channels))
        self.convblock = nn.Sequential(*(ResConv(channels) for _ in range(BLOCK_CONVS)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(channels, 4 * out, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return torch.cat((out[:, :FLOW] * scale, out[:, FLOW:]), 1)  # flows in full-size pixels


class Head(nn.Module):
    """Per-frame features (4.7 and later): a stride-2 convolution, two more, and a transposed one back up."""

    def __init__(self, channels: int, out: int):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, channels, 3, 2, 1)
        self.cnn1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.cnn2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(channels, out, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        return self.cnn3(self.relu(self.cnn2(x)))


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`image` (b c h w) sampled at each pixel + `flow` (b 2 h w, pixels; bilinear, edges repeated)."""
    height, width = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    grid = torch.stack((xs, ys), -1).to(image)  # h w xy, in grid_sample's [-1, 1]
    step = torch.tensor([(width - 1) / 2, (height - 1) / 2]).to(image)
    where = grid + rearrange(flow, "b xy h w -> b h w xy") / step
    return F.grid_sample(image, where, mode="bilinear", padding_mode="border", align_corners=True)


@dataclass(frozen=True)
class Layout:
    """What sizes an IFNet, read from its weights: each block's (inputs, width, outputs) and the head's
    (width, features per frame; 0: no head)."""

    blocks: tuple[tuple[int, int, int], ...]
    head: tuple[int, int]

    @property
    def handed_on(self) -> tuple[int, ...]:
        """The features each block hands to the next (its outputs beyond the flows and the mask)."""
        return tuple(out - FLOW - MASK for _, _, out in self.blocks)


class IFNet(nn.Module):
    """RIFE's flow network: the blocks coarse to fine, then both frames warped and fused by the mask."""

    def __init__(self, layout: Layout):
        super().__init__()
        self.layout = layout
        for index, (into, channels, out) in enumerate(layout.blocks):
            self.add_module(f"block{index}", IFBlock(into, channels, out))
        self.encode = Head(*layout.head) if layout.head[1] else None

    def forward(self, first: torch.Tensor, second: torch.Tensor, t: float) -> torch.Tensor:
        """The frame at time t between `first` and `second` (b 3 h w in [0, 1], sides a multiple of
        `self.multiple`)."""
        time = first[:, :1] * 0 + t
        features = (self.encode(first), self.encode(second)) if self.encode else (first[:, :0], first[:, :0])
        count = len(self.layout.blocks)
        flow = mask = handed = None
        warped = (first, second)
        for index in range(count):
            block, scale = getattr(self, f"block{index}"), 2.0 ** (count - 1 - index)
            if flow is None:
                out = block(torch.cat((first, second, *features, time), 1), None, scale)
                flow = out[:, :FLOW]
            else:
                moved = (warp(features[0], flow[:, :2]), warp(features[1], flow[:, 2:]))
                inputs = [*warped, *moved, time, mask] + ([handed] if self._takes_features(index) else [])
                out = block(torch.cat(inputs, 1), flow, scale)
                flow = flow + out[:, :FLOW]
            mask, handed = out[:, FLOW : FLOW + MASK], out[:, FLOW + MASK :]
            warped = (warp(first, flow[:, :2]), warp(second, flow[:, 2:]))
        weight = torch.sigmoid(mask)
        return (warped[0] * weight + warped[1] * (1 - weight)).clamp(0, 1)

    def _takes_features(self, index: int) -> bool:
        return self.layout.blocks[index][0] == _inputs_after(self.layout.head[1]) + self.layout.handed_on[index - 1]

    @property
    def multiple(self) -> int:
        """Frame sides must be a multiple of this: the coarsest block works at 1/2^(n−1), and downsamples by 4."""
        return 4 * 2 ** (len(self.layout.blocks) - 1)


def _inputs_after(head: int) -> int:
    """A later block's inputs without handed-on features: both warped frames and features, t, mask, flow."""
    return 3 + 3 + 2 * head + 1 + MASK + FLOW


def read_layout(path: Path, weights: dict[str, torch.Tensor]) -> Layout:
    """The IFNet that `weights` fit, or a `CheckpointError` saying what the file is not."""
    count = 0
    while f"block{count}.conv0.0.0.weight" in weights:
        count += 1
    if count < 2 or f"block{count - 1}.lastconv.0.weight" not in weights:
        sample = ", ".join(list(weights)[:3]) or "none"
        raise CheckpointError(
            f"interpolator {path}: not RIFE 4.x weights (Practical-RIFE's flownet.pkl, keys block0.conv0.0.0.weight, "
            f"…, block1…); its keys begin {sample}."
        )
    blocks = tuple(
        (
            weights[f"block{i}.conv0.0.0.weight"].shape[1],
            weights[f"block{i}.conv0.1.0.weight"].shape[0],
            weights[f"block{i}.lastconv.0.weight"].shape[1] // 4,
        )
        for i in range(count)
    )
    head = (
        (weights["encode.cnn0.weight"].shape[0], weights["encode.cnn3.weight"].shape[1])
        if "encode.cnn0.weight" in weights
        else (0, 0)
    )
    layout = Layout(blocks, head)
    later = [_inputs_after(head[1]) + extra for extra in (0, *layout.handed_on)]
    if blocks[0][0] != 3 + 3 + 2 * head[1] + 1 or any(into not in later for into, _, _ in blocks[1:]):
        raise CheckpointError(
            f"interpolator {path}: an IFNet whose blocks take {[into for into, _, _ in blocks]} input channels, "
            "which is not the inputs of a RIFE 4.x IFNet (frames, features, t, mask, flows)."
        )
    return layout


@dataclass
class Rife:
    """A loaded RIFE, as an interpolation method (`interpolation.Between`)."""

    net: IFNet
    device: torch.device
    description: str

    @torch.no_grad()
    def between(self, first: np.ndarray, second: np.ndarray, times: Sequence[float]) -> np.ndarray:
        pair = torch.from_numpy(np.stack([first, second])).to(self.device, torch.float32)
        pair = rearrange(pair, "two h w c -> two c h w")
        height, width = pair.shape[-2:]
        multiple = self.net.multiple
        pad = (0, -width % multiple, 0, -height % multiple)
        pair = F.pad(pair, pad, mode="replicate")
        made = [self.net(pair[:1], pair[1:], t)[0, :, :height, :width] for t in times]
        return rearrange(torch.stack(made), "n c h w -> n h w c").cpu().numpy()


def load_rife(path: str | os.PathLike, device: str = "cpu") -> Rife:
    """RIFE 4.x from Practical-RIFE's `flownet.pkl` (or a `.safetensors` with its keys), read safely."""
    path = Path(path)
    weights = {re.sub(r"^module\.", "", key): value for key, value in read_state_dict(path).items()}
    weights = {key: value for key, value in weights.items() if not key.startswith(TRAINING_ONLY)}
    net = IFNet(read_layout(path, weights))
    try:
        net.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"interpolator {path}: RIFE-like keys, but they do not fit an IFNet: {error}") from None
    blocks = len(net.layout.blocks)
    description = f"RIFE 4.x IFNet ({blocks} blocks, {'with' if net.encode else 'no'} feature head)"
    return Rife(net.eval().to(device), torch.device(device), description)
