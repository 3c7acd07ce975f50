"""Rewriting a motion module, MotionLoRA or SparseCtrl encoder in the other key layout (`animatediff convert`);
a CameraCtrl file from the release's pickle to safetensors (its one layout).

The tensors keep the dtype they are stored in unless another is asked for: a float16 release converts to
a float16 file of the same size. Only these kinds convert; anything else is refused naming what it is.
SparseCtrl encoders are written by `formats.sparsectrl.convert_sparsectrl`, which the caller hands over:
that module builds the SparseCtrl model, whose video-UNet hooks (`inflation`) import this package, so this
package's `__init__` (which re-exports `convert_checkpoint`) cannot import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from animatediff.errors import CheckpointError, ConfigError
from animatediff.formats.identify import CheckpointInfo, Kind, classify_keys, identify_folder, read_checkpoint
from animatediff.formats.layouts import Layout, official_to_diffusers
from animatediff.formats.motion import load_motion_module, save_motion_module
from animatediff.formats.safe import checkpoint_keys, save_state_dict, stored_dtype, weights_file

_CONVERTIBLE = (Kind.MOTION_MODULE, Kind.MOTION_LORA, Kind.SPARSECTRL, Kind.CAMERACTRL)


def convert_checkpoint(
    source: str | os.PathLike,
    target: str | os.PathLike,
    layout: Layout,
    convert_sparsectrl: Callable | None = None,
    dtype: torch.dtype | None = None,
) -> CheckpointInfo:
    """Rewrite a motion module, MotionLoRA or SparseCtrl encoder in the `official` or `diffusers` layout, as
    safetensors (a motion module or SparseCtrl in the diffusers layout may also become a `MotionAdapter` or
    `SparseControlNetModel` folder: a target without an extension), in `dtype` (None: the source's).
    SparseCtrl encoders are written by `convert_sparsectrl(source, target, layout, dtype)`
    (`formats.sparsectrl`'s, which the caller hands over). The returned info's details name the dtype
    written."""
    if layout not in (Layout.OFFICIAL, Layout.DIFFUSERS):
        raise ConfigError(f"--to must be 'official' or 'diffusers'; got {layout!r}.")
    source, target = Path(source), Path(target)
    info = identify_folder(source) if source.is_dir() else classify_keys(checkpoint_keys(source))
    if info.kind not in _CONVERTIBLE:
        raise CheckpointError(
            f"{source}: this is {info.description}; convert takes a motion module, a MotionLoRA, "
            "a SparseCtrl encoder or a CameraCtrl file."
        )
    if info.kind == Kind.SPARSECTRL and convert_sparsectrl is None:
        raise CheckpointError(
            f"{source}: a SparseCtrl encoder; convert it with animatediff.formats.sparsectrl's "
            "convert_sparsectrl (as `animatediff convert` does)."
        )
    if info.kind == Kind.CAMERACTRL and layout != Layout.OFFICIAL:
        raise ConfigError(
            f"{source}: CameraCtrl has one key layout, the release's; convert it --to official (a pickled "
            "CameraCtrl.ckpt becomes a .safetensors with the pose encoder's keys under 'pose_encoder.')."
        )
    _check_target(source, target, layout, info.kind)
    written = dtype or stored_dtype(weights_file(source))
    if info.kind == Kind.SPARSECTRL:
        convert_sparsectrl(source, target, layout, dtype)
    elif info.kind == Kind.MOTION_MODULE:  # built in float32, so brought back to the stored dtype
        save_motion_module(load_motion_module(source).to(written), target, layout)
    elif info.kind == Kind.CAMERACTRL:
        tensors = read_checkpoint(source, Kind.CAMERACTRL)
        save_state_dict({key: value.to(dtype or value.dtype) for key, value in tensors.items()}, target)
    else:
        official = read_checkpoint(source, Kind.MOTION_LORA)
        official = {key: value.to(dtype or value.dtype) for key, value in official.items()}
        save_state_dict(official if layout == Layout.OFFICIAL else official_to_diffusers(official, "unet."), target)
    info.details["dtype"] = str(written).removeprefix("torch.")
    return info


def _check_target(source: Path, target: Path, layout: Layout, kind: Kind) -> None:
    """Refuse a target convert cannot write: not safetensors (nor, where one can be, a model folder), or
    the source itself."""
    folder = layout == Layout.DIFFUSERS and kind in (Kind.MOTION_MODULE, Kind.SPARSECTRL) and not target.suffix
    if target.suffix != ".safetensors" and not folder:
        raise ConfigError(
            f"{target}: convert writes safetensors, so name the target '{target.stem}.safetensors'"
            + (" (or give no extension for a diffusers model folder)." if kind != Kind.MOTION_LORA else ".")
        )
    if target.resolve() == source.resolve():
        raise ConfigError(f"{target}: is the source itself; write the converted file under another name.")
