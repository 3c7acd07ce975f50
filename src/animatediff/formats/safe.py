"""Reading and writing tensors safely.

A `.ckpt` is a pickle and may carry code; it is only ever read with `torch.load(weights_only=True)`,
which refuses anything but tensors and plain containers, and a refused pickle is named by what it asked
to import (read from its opcodes, never executed). `.safetensors` is preferred everywhere: its header
alone tells a file's keys, shapes and dtypes. Any failure to read a user's file ends in a
`CheckpointError` that names the file and what was expected.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from animatediff.errors import CheckpointError, first_line
from animatediff.files import atomic_path, holds_only

DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")  # a model folder's
DIFFUSERS_MODEL_FILES = holds_only("config.json", *DIFFUSERS_WEIGHTS)  # a model folder a new one may replace
_WRAPPERS = ("state_dict", "controlnet")  # what checkpoints nest their tensors under (official SparseCtrl: controlnet)


def read_state_dict(path: str | os.PathLike, wrappers: tuple[str, ...] = _WRAPPERS) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or `.ckpt`/`.pt`/`.pth` file, never running pickled code.

    The format is told from the bytes, not the extension. A checkpoint nested under one of `wrappers` (by
    default `state_dict` or `controlnet`, as the official SparseCtrl files) is unwrapped; non-tensor entries
    (such as an `animatediff_config`) are dropped.
    """
    path = checkpoint_file(path)
    content = _read_safetensors(path) if is_safetensors(path) else _read_pickle(path)
    if not isinstance(_unwrapped(content, wrappers), dict):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, found {type(content).__name__}.")
    return _tensors(content, wrappers)


def mapped_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A zip `.ckpt`'s tensors memory-mapped (read only where used), else read whole; safely, as always.
    For reading a large file's keys and shapes without loading it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint (or a damaged one): the full, checked reader says what it is
        return read_state_dict(path)
    return _tensors(content)


def _unwrapped(content: object, wrappers: tuple[str, ...] = _WRAPPERS) -> object:
    for wrapper in wrappers:
        if isinstance(content, dict) and isinstance(content.get(wrapper), dict):
            content = content[wrapper]
    return content


# CameraCtrl's release file keeps two dictionaries side by side; read as one, the encoder's keys prefixed
_JOINED = {"pose_encoder_state_dict": "pose_encoder.", "attention_processor_state_dict": ""}


def _joined(content: object) -> object:
    """A checkpoint of side-by-side dictionaries (`_JOINED`) as one dictionary; anything else as it is."""
    if not isinstance(content, dict) or not any(isinstance(content.get(name), dict) for name in _JOINED):
        return content
    joined = {}
    for name, prefix in _JOINED.items():
        joined.update({f"{prefix}{key}": value for key, value in content.get(name, {}).items() if isinstance(key, str)})
    return joined


def _tensors(content: object, wrappers: tuple[str, ...] = _WRAPPERS) -> dict[str, torch.Tensor]:
    """The named tensors of an unpickled checkpoint (unwrapped, joined), or {} when it holds no dictionary."""
    content = _joined(_unwrapped(content, wrappers))
    if not isinstance(content, dict):
        return {}
    return {key: value for key, value in content.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}


def checkpoint_file(path: str | os.PathLike) -> Path:
    """`path` if it is a file, else an error saying a checkpoint file was expected there."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected a .safetensors or .ckpt checkpoint file here.")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected a .safetensors or .ckpt checkpoint.")
    return path


def weights_file(path: Path) -> Path:
    """A checkpoint file itself, or a diffusers model folder's weights file (its safetensors name when it
    has neither, so that reading it names the file that was expected)."""
    if not path.is_dir():
        return path
    files = [path / name for name in DIFFUSERS_WEIGHTS]
    return next((file for file in files if file.is_file()), files[0])


def is_safetensors(path: Path) -> bool:
    """A safetensors file starts with its header's length (8 bytes) and the header's JSON."""
    with open(path, "rb") as handle:
        start = handle.read(9)
    return path.suffix == ".safetensors" or start[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def _read_pickle(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        refused = [refused[1]] if refused is not None else _pickle_globals(path)
        if refused:
            raise CheckpointError(
                f"{path}: refused to load. This pickle asks for {', '.join(refused[:3])} when loaded, more than "
                "tensors: loading it could run code or build arbitrary objects, which is unsafe. Only tensors and "
                "plain containers are read from a .ckpt; convert it to .safetensors with a tool you trust."
            ) from error
        raise CheckpointError(_unreadable(path)) from error
    except Exception as error:  # a damaged file makes the unpickler fail in many ways (IndexError, KeyError, …)
        raise CheckpointError(_unreadable(path)) from error


_TENSOR_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")  # what a pickle of tensors asks for
_STRINGS = ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING")


def _pickle_globals(path: Path) -> list[str]:
    """The functions and classes a pickle (or a PyTorch zip checkpoint's `data.pkl`) would import when
    loaded, other than those a pickle of tensors uses: read from its opcodes, nothing executed."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
        else:
            data = path.read_bytes()
    except (OSError, StopIteration, zipfile.BadZipFile, RuntimeError, ValueError):
        return []
    names, strings = [], []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in _STRINGS:
                strings.append(str(argument))
            elif opcode.name == "GLOBAL":
                names.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged pickle: what was read up to the damage
        pass
    return [name for name in names if not name.startswith(_TENSOR_GLOBALS)]


def _unreadable(path: Path) -> str:
    return (
        f"{path}: not a readable checkpoint: neither a PyTorch checkpoint of tensors nor a safetensors file "
        "(it may be truncated, damaged, or another kind of file)."
    )


# ---------------------------------------------------------------------------------------------------
# Headers: what a file holds, without reading its tensors


def checkpoint_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a checkpoint file; a safetensors file is not read beyond its header."""
    path = checkpoint_file(path)
    if not is_safetensors(path):
        return list(read_state_dict(path))
    try:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from a safetensors file's header."""
    try:
        with safe_open(path, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header ({} when it has none)."""
    try:
        with safe_open(path, framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def stored_dtype(path: str | os.PathLike) -> torch.dtype:
    """The floating-point dtype that holds most of a checkpoint file's numbers (float32 when it holds
    none): a safetensors file's header says it, a `.ckpt` is memory-mapped."""
    path = checkpoint_file(path)
    counts: Counter[torch.dtype] = Counter()
    if is_safetensors(path):
        try:
            with safe_open(path, framework="pt") as handle:
                for key in handle.keys():
                    tensor = handle.get_slice(key)
                    counts[_SAFETENSORS_DTYPES.get(tensor.get_dtype())] += math.prod(tensor.get_shape())
        except Exception as error:  # the parser's own error type, or an OS error
            raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error
    else:
        for tensor in mapped_state_dict(path).values():
            counts[tensor.dtype] += tensor.numel()
    floating = [(count, dtype) for dtype, count in counts.items() if dtype is not None and dtype.is_floating_point]
    return max(floating, key=lambda pair: pair[0])[1] if floating else torch.float32


_SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


# ---------------------------------------------------------------------------------------------------
# Writing


def save_state_dict(state_dict: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None):
    """Write tensors as safetensors, atomically; the same tensors and metadata always give the same bytes."""
    path = Path(path)
    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
        _sort_header(temporary)
    return path


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys in sorted order. The writer orders the metadata as a hash
    map iterates, which changes from run to run; the data offsets do not depend on the header's order."""
    with open(path, "r+b") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = handle.read(length)
        ordered = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
        if len(ordered) <= length:
            handle.seek(8)
            handle.write(ordered.ljust(length))  # safetensors pads its header with spaces
