"""Checkpoint files: reading them safely, telling what they are, and converting between layouts.

A `.ckpt` is a pickle and may carry code; it is only ever read with `torch.load(weights_only=True)`,
which refuses anything but tensors and plain containers. `.safetensors` is preferred everywhere. Any
failure to read a user's file ends in a `CheckpointError` that names the file and what was expected.

Motion modules and MotionLoRAs exist in two key layouts: the official release's
(`down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q`)
and diffusers' (`…motion_modules.0.transformer_blocks.0.attn1.to_q`, MotionLoRAs prefixed `unet.`).
Everything in this package works in the official layout; diffusers files are renamed on the way in.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from animatediff.errors import CheckpointError, ConfigError, first_line
from animatediff.families import FAMILIES, METADATA_KEY, Family, detect, resolve
from animatediff.files import atomic_path, holds_only, read_json
from animatediff.motion_module import MotionModule, MotionModuleConfig, sinusoidal_table

MOTION_MODULE_FORMAT = "animatediff-motion-module"
IMAGE_LORA_KEY = "animatediff.image_lora"  # a motion module's metadata: the image LoRA beside it that it runs with
DIFFUSERS_MODEL_FILES = holds_only("config.json", "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_MODULE_KEY = re.compile(r"^(down_blocks\.(\d+)|up_blocks\.(\d+)|mid_block)\.motion_modules\.(\d+)\.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or `.ckpt`/`.pt`/`.pth` file, never running pickled code.

    The format is told from the bytes, not the extension. A checkpoint nested under `state_dict` (or
    `controlnet`, as the official SparseCtrl files) is unwrapped; non-tensor entries (such as an
    `animatediff_config`) are dropped.
    """
    path = _checkpoint_file(path)
    content = _read_safetensors(path) if _is_safetensors(path) else _read_pickle(path)
    for wrapper in ("state_dict", "controlnet"):
        if isinstance(content, dict) and isinstance(content.get(wrapper), dict):
            content = content[wrapper]
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, found {type(content).__name__}.")
    return {key: value for key, value in content.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}


def _checkpoint_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected a .safetensors or .ckpt checkpoint file here.")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; expected a .safetensors or .ckpt checkpoint.")
    return path


def _is_safetensors(path: Path) -> bool:
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
# Official ↔ diffusers key layouts (diffusers' own conversion rules, kept reversible)

_TO_DIFFUSERS = (
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
)
_TEMPORAL = re.compile(r"(motion_modules\.\d+\.)temporal_transformer\.")
_UNTEMPORAL = re.compile(r"(motion_modules\.\d+\.)(?!temporal_transformer\.)")


def official_to_diffusers(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename official motion-module (or MotionLoRA) keys to diffusers' layout.

    The position table, which diffusers keeps once per transformer block, is taken from the first
    attention. MotionLoRAs use `prefix="unet."` as diffusers' LoRA loader expects.
    """
    converted = {}
    for key, value in state_dict.items():
        if key.endswith("attention_blocks.1.pos_encoder.pe"):
            continue
        key = _TEMPORAL.sub(r"\1", key).replace(".attention_blocks.0.pos_encoder.pe", ".pos_embed.pe")
        for old, new in _TO_DIFFUSERS:
            key = key.replace(old, new)
        converted[prefix + key] = value
    return converted


def diffusers_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `official_to_diffusers` (a leading `unet.` is dropped)."""
    converted = {}
    for key, value in state_dict.items():
        key = _UNTEMPORAL.sub(r"\1temporal_transformer.", key.removeprefix("unet."))
        for old, new in _TO_DIFFUSERS:
            key = key.replace(new, old)
        if key.endswith(".pos_embed.pe"):
            block = key.removesuffix("pos_embed.pe")
            converted[block + "attention_blocks.0.pos_encoder.pe"] = value
            converted[block + "attention_blocks.1.pos_encoder.pe"] = value.clone()
        else:
            converted[key] = value
    return converted


# ---------------------------------------------------------------------------------------------------
# Telling what a file is


class Kind(StrEnum):
    """What a checkpoint file or folder holds."""

    MOTION_MODULE = "motion_module"
    MOTION_LORA = "motion_lora"
    DOMAIN_ADAPTER = "domain_adapter"
    SD_CHECKPOINT = "sd_checkpoint"
    IMAGE_LORA = "image_lora"
    IMAGE_MODEL = "image_model"
    IMAGE_UNET = "image_unet"
    SPARSECTRL = "sparsectrl"
    CONTROLNET = "controlnet"
    UNKNOWN = "unknown"


class Layout(StrEnum):
    """How a checkpoint names its tensors."""

    OFFICIAL = "official"
    DIFFUSERS = "diffusers"
    KOHYA = "kohya"
    LDM = "ldm"
    UNKNOWN = "unknown"


KIND_NAMES = {
    Kind.MOTION_MODULE: "a motion module",
    Kind.MOTION_LORA: "a MotionLoRA",
    Kind.DOMAIN_ADAPTER: "a domain adapter",
    Kind.SD_CHECKPOINT: "a single-file Stable Diffusion checkpoint",
    Kind.IMAGE_LORA: "an image LoRA",
    Kind.IMAGE_MODEL: "a diffusers image model folder",
    Kind.IMAGE_UNET: "an image UNet (a personalized model's or a base's)",
    Kind.SPARSECTRL: "a SparseCtrl encoder",
    Kind.CONTROLNET: "a ControlNet",
    Kind.UNKNOWN: "not a checkpoint kind this package knows",
}


@dataclass
class CheckpointInfo:
    """What a checkpoint is, for `inspect` and for plain-language errors."""

    kind: Kind
    layout: Layout
    details: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        name = KIND_NAMES[self.kind]
        return f"{name} ({self.layout} layout)" if self.kind != Kind.UNKNOWN else name


_UNET_KEYS = ("conv_in.weight", "time_embedding.linear_1.weight")


def classify_keys(keys: list[str]) -> CheckpointInfo:
    """Name the kind and layout of a state dict from its keys alone."""
    joined = "\n".join(keys)
    is_lora = "_lora.down." in joined or ".lora_down." in joined or ".lora_A." in joined or ".lora.down." in joined
    if "controlnet_cond_embedding." in joined or "control_model.input_hint_block." in joined:
        official = "motion_modules." not in joined or "temporal_transformer." in joined
        kind = Kind.SPARSECTRL if "motion_modules." in joined else Kind.CONTROLNET
        return CheckpointInfo(kind, Layout.OFFICIAL if official else Layout.DIFFUSERS)
    if "motion_modules." in joined:
        official = "temporal_transformer." in joined or "temporal_convolution." in joined
        layout = Layout.OFFICIAL if official else Layout.DIFFUSERS
        return CheckpointInfo(Kind.MOTION_LORA if is_lora else Kind.MOTION_MODULE, layout)
    if is_lora and any(key.startswith(("unet.", "text_encoder.")) for key in keys):
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.DIFFUSERS)
    if "processor.to_q_lora." in joined or "processor.to_out_lora." in joined:
        return CheckpointInfo(Kind.DOMAIN_ADAPTER, Layout.OFFICIAL)
    if "lora_unet_" in joined or "lora_te_" in joined:
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.KOHYA)
    if is_lora:
        return CheckpointInfo(Kind.IMAGE_LORA, Layout.DIFFUSERS)
    if "model.diffusion_model." in joined:
        family = (
            "sdxl" if "conditioner.embedders." in joined else "sd2" if "cond_stage_model.model." in joined else "sd1"
        )
        return CheckpointInfo(Kind.SD_CHECKPOINT, Layout.LDM, {"family": family})
    if all(key in keys for key in _UNET_KEYS):
        return CheckpointInfo(Kind.IMAGE_UNET, Layout.DIFFUSERS)
    return CheckpointInfo(Kind.UNKNOWN, Layout.UNKNOWN)


def checkpoint_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a checkpoint file; a safetensors file is not read beyond its header."""
    path = _checkpoint_file(path)
    if not _is_safetensors(path):
        return list(read_state_dict(path))
    try:
        with safe_open(path, framework="pt") as handle:
            return list(handle.keys())
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def require_kind(path: str | os.PathLike, keys: list[str], kind: Kind, hint: str = "") -> CheckpointInfo:
    """The file's kind and layout from its keys, or an error saying what it is instead of `kind`."""
    info = classify_keys(keys)
    if info.kind != kind:
        raise CheckpointError(f"{path}: this file is {info.description}, not {KIND_NAMES[kind]}.{hint}")
    return info


def read_checkpoint(path: str | os.PathLike, kind: Kind, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a file that must be of `kind`; motion modules and MotionLoRAs in the official layout."""
    state_dict = read_state_dict(path)
    info = require_kind(path, list(state_dict), kind, hint)
    if info.layout == Layout.DIFFUSERS and kind in (Kind.MOTION_MODULE, Kind.MOTION_LORA):
        return diffusers_to_official(state_dict)
    return state_dict


def identify(path: str | os.PathLike) -> CheckpointInfo:
    """What a file or folder holds, with the details `animatediff inspect` shows."""
    path = Path(path)
    if path.is_dir():
        return _identify_folder(path)
    state_dict = read_state_dict(path)
    info = classify_keys(list(state_dict))
    info.details.update(_tensor_summary(state_dict))
    if info.kind == Kind.MOTION_MODULE:
        official = state_dict if info.layout == Layout.OFFICIAL else diffusers_to_official(state_dict)
        config = _inferred_config(path, official)
        release, rule = motion_module_family(path)
        info.details.update(version=release.name, detected_by=rule, sampling=release.sampling(), **config.to_dict())
    elif info.kind in (Kind.MOTION_LORA, Kind.DOMAIN_ADAPTER):
        info.details.update(_lora_summary(state_dict))
    return info


def _identify_folder(path: Path) -> CheckpointInfo:
    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json(config_file, "model folder's config")
        if config.get("_class_name") == "MotionAdapter":
            return CheckpointInfo(Kind.MOTION_MODULE, Layout.DIFFUSERS, {"folder": True})
        if config.get("_class_name") == "SparseControlNetModel":
            return CheckpointInfo(Kind.SPARSECTRL, Layout.DIFFUSERS, {"folder": True})
        if config.get("_class_name") == "ControlNetModel":
            return CheckpointInfo(Kind.CONTROLNET, Layout.DIFFUSERS, {"folder": True})
        if config.get("_class_name") == "UNet2DConditionModel":
            widths = config.get("block_out_channels")
            return CheckpointInfo(Kind.IMAGE_UNET, Layout.DIFFUSERS, {"folder": True, "block_out_channels": widths})
    if (path / "unet").is_dir() or (path / "model_index.json").is_file():
        return CheckpointInfo(Kind.IMAGE_MODEL, Layout.DIFFUSERS, {"folder": True})
    return CheckpointInfo(Kind.UNKNOWN, Layout.UNKNOWN)


def _tensor_summary(state_dict: dict[str, torch.Tensor]) -> dict:
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state_dict.values()})
    return {
        "tensors": len(state_dict),
        "parameters": sum(t.numel() for t in state_dict.values()),
        "bytes": sum(t.numel() * t.element_size() for t in state_dict.values()),
        "dtype": ", ".join(dtypes),
    }


def _lora_summary(state_dict: dict[str, torch.Tensor]) -> dict:
    downs = {key: value for key, value in state_dict.items() if ".down." in key}
    ranks = sorted({value.shape[0] for value in downs.values()})
    projections = sorted({re.search(r"to_(q|k|v|out)_lora", key).group(0) for key in downs})
    return {"rank": ", ".join(map(str, ranks)), "targets": len(downs), "projections": ", ".join(projections)}


# ---------------------------------------------------------------------------------------------------
# Motion modules


def infer_motion_module_config(state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    """Work out a motion module's layout from its official-layout weights.

    Widths come from the GroupNorm sizes, the position-table length from `pe`, the mid block from its
    keys; the release these match (`families.detect`) says how the module ran (its GroupNorms).
    Raises `ValueError` when no temporal module's GroupNorm is found.
    """
    down: dict[int, dict[int, int]] = {}
    mid = False
    for key, value in state_dict.items():
        match = _MODULE_KEY.match(key)
        if match is None:
            continue
        if match.group(1) == "mid_block":
            mid = True
        elif match.group(2) is not None and key.endswith(
            (".temporal_transformer.norm.weight", ".temporal_convolution.norm.weight")
        ):
            down.setdefault(int(match.group(2)), {})[int(match.group(4))] = value.shape[0]
    if not down or 0 not in down or 0 not in down[0]:
        raise ValueError("no GroupNorm weights of the temporal modules (down_blocks.0.motion_modules.0.….norm.weight)")
    widths = tuple(down[i][0] for i in sorted(down))
    first = "down_blocks.0.motion_modules.0.temporal_transformer."
    blocks = {key[len(first) :].split(".")[1] for key in state_dict if key.startswith(first + "transformer_blocks.")}
    pe_key = next((key for key in state_dict if key.startswith(first) and key.endswith("pos_encoder.pe")), None)
    table = state_dict[pe_key].shape[1] if pe_key else None
    release = detect(levels=len(widths), mid_block=mid, max_frames=table)
    max_frames = table or release.max_frames  # a file without its table (AnimateLCM's): the release's length
    values = dict(
        block_out_channels=widths,
        layers_per_block=len(down[0]),
        mid_block=mid,
        num_transformer_blocks=max(len(blocks), 1),
        max_frames=max_frames,
        kind="convolution" if any(".temporal_convolution." in key for key in state_dict) else "transformer",
        **release.module_settings(),
    )
    values.update(overrides)
    return MotionModuleConfig(**values)


def module_family(config: MotionModuleConfig) -> Family:
    """The release whose layout a motion module has (v1, v2, v3, or the SDXL beta)."""
    return detect(levels=len(config.block_out_channels), mid_block=config.mid_block, max_frames=config.max_frames)


@dataclass(frozen=True)
class ModuleHeader:
    """What a motion module file says about its release, read without loading its weights."""

    levels: int
    mid_block: bool
    max_frames: int | None  # None: no position table stored
    metadata: str | None  # the release its metadata names (`families.METADATA_KEY`)
    image_lora: str | None = None  # the image LoRA file beside it that its metadata names (`IMAGE_LORA_KEY`)


def module_header(path: str | os.PathLike) -> ModuleHeader:
    """The layout facts of a motion module file (a safetensors header, a memory-mapped `.ckpt`) or a
    MotionAdapter folder (its config)."""
    path = Path(path)
    if path.is_dir():
        config = read_json(path / "config.json", "MotionAdapter's config")
        return ModuleHeader(
            len(config.get("block_out_channels", (320, 640, 1280, 1280))),
            bool(config.get("use_motion_mid_block", True)),
            int(config.get("motion_max_seq_length", MotionModuleConfig.max_frames)),
            None,
        )
    metadata = {}
    if _is_safetensors(path):
        shapes = _safetensors_shapes(path)
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    else:
        shapes = {key: tuple(value.shape) for key, value in _mapped_checkpoint(path).items()}
    levels = {match.group(2) for key in shapes if (match := _MODULE_KEY.match(key)) and match.group(2) is not None}
    tables = [shape[1] for key, shape in shapes.items() if key.endswith(("pos_encoder.pe", "pos_embed.pe"))]
    mid_block = any(key.startswith("mid_block.") for key in shapes)
    lora = metadata.get(IMAGE_LORA_KEY)
    if lora is not None and (Path(lora).name != lora or not (path.parent / lora).is_file()):
        raise CheckpointError(
            f"{path}: its metadata names the image LoRA {lora!r}, which should be a file beside it "
            f"({path.parent / Path(lora).name} is missing)."
        )
    return ModuleHeader(len(levels), mid_block, tables[0] if tables else None, metadata.get(METADATA_KEY), lora)


def motion_module_family(
    path: str | os.PathLike, override: str | None = None, header: ModuleHeader | None = None
) -> tuple[Family, str]:
    """A motion module's release and the rule that decided it (`families.resolve`)."""
    path = Path(path)
    header = header or module_header(path)
    if header.metadata is not None and header.metadata not in FAMILIES:
        raise CheckpointError(
            f"{path}: its metadata names the release {header.metadata!r}; expected one of {', '.join(FAMILIES)}."
        )
    return resolve(path.name, header.levels, header.mid_block, header.max_frames, header.metadata, override)


def release_settings(name: str) -> dict:
    """The `MotionModuleConfig` settings that run a module as the release `name` did."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown motion-module release {name!r}; expected one of {', '.join(FAMILIES)}.")
    return FAMILIES[name].module_settings()


def _inferred_config(path: Path, state_dict: dict[str, torch.Tensor], **overrides) -> MotionModuleConfig:
    try:
        return infer_motion_module_config(state_dict, **overrides)
    except (ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path}: has motion-module keys but is not a complete motion module ({error}); the file may be "
            "damaged or cut short."
        ) from error


def _check_position_tables(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    for key, value in state_dict.items():
        if key.endswith("pos_encoder.pe"):
            expected = sinusoidal_table(value.shape[1], value.shape[2])
            if not torch.allclose(value.float(), expected, atol=1e-3):
                raise CheckpointError(
                    f"{path}: the position table {key} is not the sinusoidal table a motion module uses "
                    "(the file may be corrupt or not a motion module)."
                )


def _read_motion_adapter_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from diffusers import MotionAdapter

    try:
        adapter = MotionAdapter.from_pretrained(path)
    except Exception as error:  # diffusers' loaders raise many kinds for a damaged folder
        raise CheckpointError(
            f"{path}: not a loadable diffusers MotionAdapter folder (config.json and its weights): {first_line(error)}"
        ) from error
    config = adapter.config
    settings = dict(
        num_attention_heads=config.motion_num_attention_heads,
        norm_num_groups=config.motion_norm_num_groups,
        max_frames=config.motion_max_seq_length,
    )
    return diffusers_to_official(adapter.state_dict()), settings


def read_motion_module_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Official-layout weights of a motion module file or diffusers `MotionAdapter` folder, plus any
    settings the file states (a config saved by this package, a MotionAdapter's config)."""
    path = Path(path)
    if path.is_dir():
        info = _identify_folder(path)
        if info.kind != Kind.MOTION_MODULE:
            raise CheckpointError(f"{path}: this folder is {info.description}, not a motion module.")
        return _read_motion_adapter_folder(path)
    hint = " A motion module has keys such as 'down_blocks.0.motion_modules.0.temporal_transformer.norm.weight'."
    return read_checkpoint(path, Kind.MOTION_MODULE, hint), _saved_config(path)


def load_motion_module(path: str | os.PathLike, **overrides) -> MotionModule:
    """Build a `MotionModule` from an official- or diffusers-layout file, or a MotionAdapter folder.

    The layout is read from the file itself (a config saved by this package, else inferred from the
    weights); keyword arguments override single `MotionModuleConfig` fields.
    """
    path = Path(path)
    state_dict, stated = read_motion_module_weights(path)
    _check_position_tables(path, state_dict)
    try:
        if "block_out_channels" in stated:
            config = MotionModuleConfig.from_dict({**stated, **overrides})
        else:
            config = _inferred_config(path, state_dict, **{**stated, **overrides})
        module = MotionModule(config)
    except (ValueError, TypeError, KeyError) as error:  # settings no motion module can have
        raise CheckpointError(f"{path}: its settings do not make a motion module ({first_line(error)}).") from error
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise CheckpointError(
            f"{path}: the weights do not fit a motion module with settings {config}: {str(error).splitlines()[-1]}"
        ) from error
    missing = [key for key in missing if not key.endswith("pos_encoder.pe")]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the weights do not fit a motion module of widths {config.block_out_channels} "
            f"({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})."
        )
    return module


def motion_module_table(path: str | os.PathLike) -> int:
    """The length of a motion module's position table (the most frames one pass can take), read without
    loading the module (`module_header`); a file that stores no table has its release's length, as loading
    gives it (AnimateLCM's 64)."""
    path = Path(path)
    stated = {} if path.is_dir() else _saved_config(path)
    if "max_frames" in stated:
        return int(stated["max_frames"])
    header = module_header(path)
    return header.max_frames or detect(header.levels, header.mid_block, None).max_frames


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(path, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error


def _mapped_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A zip `.ckpt`'s tensors memory-mapped (read only where used), else read whole; safely, as always."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        content = content.get("state_dict", content) if isinstance(content, dict) else content
        return {k: v for k, v in content.items() if isinstance(v, torch.Tensor)} if isinstance(content, dict) else {}
    except Exception:  # not a zip checkpoint (or a damaged one): the full, checked reader says what it is
        return read_state_dict(path)


def _saved_config(path: Path) -> dict:
    """The `MotionModuleConfig` this package saved in a safetensors file's metadata, or {}."""
    if not _is_safetensors(path):
        return {}
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # the parser's own error type, or an OS error
        raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(error)}).") from error
    if metadata.get("format") != MOTION_MODULE_FORMAT:
        return {}
    try:
        config = json.loads(metadata["config"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path}: its motion-module config (metadata) is not readable ({first_line(error)})."
        ) from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its motion-module config (metadata) is not a JSON object.")
    return config


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


def save_motion_module(
    module: MotionModule,
    path: str | os.PathLike,
    layout: Layout = Layout.OFFICIAL,
    family: str | None = None,
    image_lora: str | None = None,
) -> Path:
    """Write `module` as safetensors in the official (default) or diffusers layout; `family` names its
    release in the metadata (for a release its weights do not tell, such as a distilled one), `image_lora`
    the image LoRA file beside it that it runs with (loading applies it at scale 1).

    A diffusers-layout path without the `.safetensors` extension becomes a `MotionAdapter` folder that
    diffusers' `MotionAdapter.from_pretrained` loads.
    """
    path = Path(path)
    metadata = {"format": MOTION_MODULE_FORMAT, "config": json.dumps(module.config.to_dict())}
    if family is not None:
        metadata[METADATA_KEY] = FAMILIES[family].name
    if image_lora is not None:
        metadata[IMAGE_LORA_KEY] = image_lora
    if layout == Layout.OFFICIAL:
        return save_state_dict(module.state_dict(), path, metadata)
    if path.suffix == ".safetensors":
        return save_state_dict(official_to_diffusers(module.state_dict()), path, metadata)
    return _save_motion_adapter_folder(module, path)


def to_motion_adapter(module: MotionModule):
    """The same weights as a diffusers `MotionAdapter` (for diffusers' `AnimateDiffPipeline`)."""
    from diffusers import MotionAdapter

    config = module.config
    adapter = MotionAdapter(
        block_out_channels=config.block_out_channels,
        motion_layers_per_block=config.layers_per_block,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_block=config.num_transformer_blocks,
        motion_num_attention_heads=config.num_attention_heads,
        motion_norm_num_groups=config.norm_num_groups,
        motion_max_seq_length=config.max_frames,
        use_motion_mid_block=config.mid_block,
    )
    adapter.load_state_dict(official_to_diffusers(module.state_dict()))
    return adapter


def _save_motion_adapter_folder(module: MotionModule, path: Path) -> Path:
    adapter = to_motion_adapter(module)
    with atomic_path(path, directory=True, replaceable=DIFFUSERS_MODEL_FILES) as temporary:
        adapter.save_pretrained(temporary)
    return path


def convert_checkpoint(
    source: str | os.PathLike, target: str | os.PathLike, layout: Layout, convert_sparsectrl=None
) -> CheckpointInfo:
    """Rewrite a motion module, MotionLoRA or SparseCtrl encoder in the `official` or `diffusers` layout, as
    safetensors (a motion module or SparseCtrl in the diffusers layout may also become a `MotionAdapter` or
    `SparseControlNetModel` folder: a target without an extension). SparseCtrl encoders are written by
    `convert_sparsectrl(source, target, layout)` (`control.sparsectrl`'s, which the caller hands over)."""
    if layout not in (Layout.OFFICIAL, Layout.DIFFUSERS):
        raise ConfigError(f"--to must be 'official' or 'diffusers'; got {layout!r}.")
    source, target = Path(source), Path(target)
    info = _identify_folder(source) if source.is_dir() else classify_keys(checkpoint_keys(source))
    if info.kind not in (Kind.MOTION_MODULE, Kind.MOTION_LORA, Kind.SPARSECTRL):
        raise CheckpointError(
            f"{source}: this is {info.description}; convert takes a motion module, a MotionLoRA "
            "or a SparseCtrl encoder."
        )
    folder = layout == Layout.DIFFUSERS and info.kind in (Kind.MOTION_MODULE, Kind.SPARSECTRL) and not target.suffix
    if info.kind == Kind.SPARSECTRL and convert_sparsectrl is None:
        raise CheckpointError(
            f"{source}: a SparseCtrl encoder; convert it with animatediff.control.sparsectrl's "
            "convert_sparsectrl (as `animatediff convert` does)."
        )
    if target.suffix != ".safetensors" and not folder:
        raise ConfigError(
            f"{target}: convert writes safetensors, so name the target '{target.stem}.safetensors'"
            + (" (or give no extension for a diffusers model folder)." if info.kind != Kind.MOTION_LORA else ".")
        )
    if target.resolve() == source.resolve():
        raise ConfigError(f"{target}: is the source itself; write the converted file under another name.")
    if info.kind == Kind.SPARSECTRL:
        convert_sparsectrl(source, target, layout)
    elif info.kind == Kind.MOTION_MODULE:
        save_motion_module(load_motion_module(source), target, layout)
    else:
        official = read_checkpoint(source, Kind.MOTION_LORA)
        save_state_dict(official if layout == Layout.OFFICIAL else official_to_diffusers(official, "unet."), target)
    return info
