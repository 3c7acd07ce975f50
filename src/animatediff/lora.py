"""Merging the official LoRA files: the domain adapter (image UNet) and MotionLoRAs (motion module).

Both use the same official format: for every adapted projection `<layer>.to_q` (q, k, v or out) two
tensors, `<layer>.processor.to_q_lora.down.weight` (rank × in) and `….up.weight` (out × rank). The
official merge, reproduced here, is `W += scale · up @ down`, with no rank or alpha rescaling.
Several MotionLoRAs compose by merging each with its own scale.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from animatediff.errors import CheckpointError
from animatediff.formats import Kind, read_checkpoint
from animatediff.motion_module import MotionModule

_LORA_KEY = re.compile(r"^(?P<layer>.+)\.processor\.to_(?P<projection>q|k|v|out)_lora\.down\.weight$")


def lora_target(down_key: str) -> str:
    """The linear layer a LoRA `down` key adapts: `….attn1.processor.to_out_lora.down.weight` → `….attn1.to_out.0`."""
    match = _LORA_KEY.match(down_key)
    if match is None:
        raise ValueError(f"not an official LoRA key: {down_key}")
    projection = "to_out.0" if match["projection"] == "out" else f"to_{match['projection']}"
    return f"{match['layer']}.{projection}"


@torch.no_grad()
def merge_lora(model: nn.Module, state_dict: dict[str, torch.Tensor], scale: float, source: str | os.PathLike) -> int:
    """Add `scale · up @ down` to every layer of `model` the official-format `state_dict` adapts.

    Returns the number of layers changed. Every target is checked before any weight changes, so a
    file that does not fit leaves `model` untouched.
    """
    layers = dict(model.named_modules())
    updates = []
    for down_key in sorted(key for key in state_dict if key.endswith(".down.weight")):
        target = lora_target(down_key)
        layer = layers.get(target)
        if not isinstance(layer, nn.Linear):
            raise CheckpointError(f"{source}: adapts '{target}', which this model does not have.")
        down, up = state_dict[down_key].float(), state_dict[down_key.replace(".down.", ".up.")].float()
        if (up.shape[0], down.shape[1]) != tuple(layer.weight.shape):
            raise CheckpointError(
                f"{source}: the LoRA for '{target}' is {up.shape[0]}×{down.shape[1]}, but the layer is "
                f"{layer.weight.shape[0]}×{layer.weight.shape[1]}; it was made for another model."
            )
        updates.append((layer, up @ down))
    for layer, delta in updates:
        layer.weight += (scale * delta).to(layer.weight)
    return len(updates)


def apply_domain_adapter(unet: nn.Module, path: str | os.PathLike, scale: float = 1.0) -> int:
    """Merge an official domain adapter (e.g. `v3_sd15_adapter.ckpt`) into the image UNet at `scale`."""
    return merge_lora(unet, read_checkpoint(path, Kind.DOMAIN_ADAPTER), scale, Path(path))


def apply_motion_lora(motion_module: MotionModule, path: str | os.PathLike, scale: float = 1.0) -> int:
    """Merge a MotionLoRA (official or diffusers layout) into the motion module at `scale`."""
    return merge_lora(motion_module, read_checkpoint(path, Kind.MOTION_LORA), scale, Path(path))


# ---------------------------------------------------------------------------------------------------
# Training: trainable low-rank updates, saved in the official format


def attention_projections(model: nn.Module, attention_names: tuple[str, ...]) -> list[str]:
    """Paths of the q, k, v and out projections of every attention whose name ends with one of
    `attention_names` (e.g. `attn1`/`attn2` in the image UNet, `attention_blocks.0`/`.1` in motion modules)."""
    targets = []
    for name, _ in model.named_modules():
        if name.endswith(attention_names):
            targets += [f"{name}.to_q", f"{name}.to_k", f"{name}.to_v", f"{name}.to_out.0"]
    return targets


def official_lora_prefix(target: str) -> str:
    """`….attn1.to_out.0` → `….attn1.processor.to_out_lora` (the inverse of `lora_target`)."""
    layer, projection = target.removesuffix(".0").rsplit(".", 1)
    return f"{layer}.processor.{projection}_lora"


class TrainableLoRA(nn.Module):
    """A rank-`rank` update `up(down(x))` added to the output of each target linear layer of `model`.

    The layers themselves are not replaced (forward hooks add the update), so the model's parameter
    names stay as they are. `up` starts at zero: a fresh LoRA changes nothing.
    """

    def __init__(self, model: nn.Module, targets: list[str], rank: int):
        super().__init__()
        layers = dict(model.named_modules())
        self.targets = targets
        self.down = nn.ModuleList(nn.Linear(layers[t].in_features, rank, bias=False) for t in targets)
        self.up = nn.ModuleList(nn.Linear(rank, layers[t].out_features, bias=False) for t in targets)
        for down, up in zip(self.down, self.up, strict=True):
            nn.init.normal_(down.weight, std=1 / rank)
            nn.init.zeros_(up.weight)
        for index, target in enumerate(targets):
            layers[target].register_forward_hook(self._adder(index))

    def _adder(self, index: int):
        def hook(_layer, inputs, output):
            x = inputs[0].to(self.down[index].weight.dtype)
            return output + self.up[index](self.down[index](x)).to(output.dtype)

        return hook

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under official keys (`….processor.to_q_lora.down.weight`), loadable by `merge_lora`."""
        state = {}
        for target, down, up in zip(self.targets, self.down, self.up, strict=True):
            prefix = official_lora_prefix(target)
            state[f"{prefix}.down.weight"] = down.weight.detach()
            state[f"{prefix}.up.weight"] = up.weight.detach()
        return state

    def diffusers_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights as a diffusers/peft image LoRA (`unet.….to_q.lora_A.weight`), loadable by `--lora`."""
        state = {}
        for target, down, up in zip(self.targets, self.down, self.up, strict=True):
            state[f"unet.{target}.lora_A.weight"] = down.weight.detach()
            state[f"unet.{target}.lora_B.weight"] = up.weight.detach()
        return state
