"""The official repository's prompt configs (`configs/prompts/*.yaml`), read unchanged.

A config is a list of entries. Each names its models (`motion_module`, one path or a list;
`dreambooth_path`, `lora_model_path` + `lora_alpha`, `adapter_lora_path` + `adapter_lora_scale`,
`motion_module_lora_configs`, `inference_config`) and its samples (`prompt`, `n_prompt` one for all
or one per prompt, `seed` one for all or one per prompt, -1 for random, `steps`, `guidance_scale`,
`W`, `H`, `L`), and this package's own keys: `scheduler` and `family` (as the flags; steps and guidance
not given are the family's), the time and control keys. Relative paths resolve against the current
directory first, as the official `animate.py` does, then against the config's folder. Sizes default to
the image model's own (512 for SD1.5); an entry without a motion module takes the default one, where
there is one (the embedded model's), and is refused otherwise. The whole file is checked, and random
seeds drawn, before any weights load.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import get_args

import yaml

from animatediff.errors import ConfigError, one_line
from animatediff.families import FAMILIES, SCHEDULERS, Family
from animatediff.sampling.options import ContextRequest, Fuse, Interpolation, Schedule, Scope
from animatediff.settings import (
    ControlNetSpec,
    ControlSpec,
    Job,
    ModelSpec,
    Sample,
    TimeControls,
    base_frame_size,
    resolve_seed,
)

TIME_KEYS = {  # long videos and prompt travel (animatediff-cli-prompt-travel's `prompt_map` schema)
    "prompt_map",
    "prompt_interpolation",
    "context_length",
    "context_overlap",
    "context_schedule",
    "context_fuse",
    "context_scope",
    "noise_shuffle",
    "loop",
    "free_init",
}
CONTROL_KEYS = {  # video to video, ControlNet, IP-Adapter (the command line's flags, as keys)
    "init_video",
    "strength",
    "stride",
    "controlnet",
    "control_video",
    "control_start",
    "control_end",
    "guess_mode",
    "ip_adapter",
    "ip_image",
    "image_encoder",
    "init_image",
    "init_strength",
    "init_falloff",
    "last_image",
    "sparsectrl",
    "control_image",
    "control_latents",
    "control_frames",
    "normalize_condition_images",
}
SPARSECTRL_KEYS = {  # the official SparseCtrl entries' keys
    "controlnet_path",
    "controlnet_config",
    "controlnet_images",
    "controlnet_image_indexs",
    "controlnet_scale",
}
ENTRY_KEYS = {
    "inference_config",
    "motion_module",
    "motion_module_lora_configs",
    "adapter_lora_path",
    "adapter_lora_scale",
    "dreambooth_path",
    "lora_model_path",
    "lora_alpha",
    "seed",
    "steps",
    "guidance_scale",
    "prompt",
    "n_prompt",
    "W",
    "H",
    "L",
    "scheduler",
    "family",
    *TIME_KEYS,
    *CONTROL_KEYS,
    *SPARSECTRL_KEYS,
}


def brief(value, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: an error quotes what it refused without echoing a whole file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 14] + " … " + text[-11:]


def _load_yaml(path: Path, what: str):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} {path}: cannot be read as text ({one_line(error)}).") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path}: not valid YAML ({one_line(error)}).") from error


class _Entry:
    """Typed access to one config entry, with errors that name the entry and field."""

    def __init__(self, values: dict, index: int, config: Path, base: Path):
        self.values, self.index, self.config, self.base = values, index, config, base

    def fail(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"{self.config}, entry {self.index}, '{field}': {message}")

    def path(self, field: str, value=None) -> Path | None:
        value = self.values.get(field, "") if value is None else value
        if value in ("", None):
            return None
        if not isinstance(value, str):
            raise self.fail(field, f"expected a path, got {brief(value)}.")
        for candidate in (Path(value), self.config.parent / value):
            if candidate.exists():
                return candidate
        raise self.fail(field, f"{value}: no such file or folder (looked in {os.getcwd()} and {self.config.parent}).")

    def number(self, field: str, kind: type, default, value=None):
        """The entry's `field` (or `value`, an item of it) as an int or float; NaN and infinities refused."""
        value = self.values.get(field, default) if value is None else value
        finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not finite or (kind is int and value != int(value)):
            raise self.fail(field, f"expected {'a whole number' if kind is int else 'a number'}, got {brief(value)}.")
        return kind(value)

    def strings(self, field: str, default: list[str]) -> list[str]:
        value = self.values.get(field, default)
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(field, f"expected a string or a list of strings, got {brief(value)}.")
        return value


def _motion_settings(inference: dict, where: str) -> tuple[dict, bool]:
    """MotionModuleConfig fields from an official inference config; and whether a motion module is used."""
    unet = inference.get("unet_additional_kwargs") or {}
    kwargs = unet.get("motion_module_kwargs") or {}
    for flag in ("unet_use_cross_frame_attention", "unet_use_temporal_attention", "motion_module_decoder_only"):
        if unet.get(flag):
            raise ConfigError(f"{where}: '{flag}: true' is not supported (no released model uses it).")
    if unet.get("motion_module_type", "Vanilla") != "Vanilla":
        raise ConfigError(f"{where}: motion_module_type must be 'Vanilla'; got {unet['motion_module_type']!r}.")
    if list(unet.get("motion_module_resolutions", [1, 2, 4, 8])) != [1, 2, 4, 8]:
        raise ConfigError(f"{where}: motion_module_resolutions must be [1, 2, 4, 8] (every level).")
    if list(kwargs.get("attention_block_types", ["Temporal_Self", "Temporal_Self"])) != ["Temporal_Self"] * 2:
        raise ConfigError(f"{where}: attention_block_types must be [Temporal_Self, Temporal_Self].")
    if kwargs.get("temporal_attention_dim_div", 1) != 1:
        raise ConfigError(f"{where}: temporal_attention_dim_div must be 1.")
    settings = {"image_norm_over_frames": not unet.get("use_inflated_groupnorm", False)}
    renames = {
        "num_attention_heads": "num_attention_heads",
        "num_transformer_block": "num_transformer_blocks",
        "temporal_position_encoding": "position_encoding",
        "temporal_position_encoding_max_len": "max_frames",
    }
    settings.update({ours: kwargs[theirs] for theirs, ours in renames.items() if theirs in kwargs})
    if "motion_module_mid_block" in unet:
        settings["mid_block"] = bool(unet["motion_module_mid_block"])
    return settings, unet.get("use_motion_module", True)


def _motion_modules(entry: _Entry, use_motion: bool, default: Path | None) -> list[Path | None]:
    if not use_motion:
        return [None]
    given = entry.values.get("motion_module")
    if not given:
        if default is None:
            raise entry.fail(
                "motion_module",
                "no motion module given, and this base has no default one; name one "
                "(or set use_motion_module: false in an inference_config for independent frames).",
            )
        return [default]
    return [entry.path("motion_module", module) for module in (given if isinstance(given, list) else [given])]


def _motion_loras(entry: _Entry) -> list[tuple[Path, float]]:
    loras = []
    for item in entry.values.get("motion_module_lora_configs") or []:
        if not isinstance(item, dict) or "path" not in item:
            raise entry.fail(
                "motion_module_lora_configs", f"expected entries with 'path' and 'alpha', got {brief(item)}."
            )
        alpha = entry.number("motion_module_lora_configs", float, 1.0, item.get("alpha", 1.0))
        loras.append((entry.path("motion_module_lora_configs", item["path"]), alpha))
    return loras


def _sampler(entry: _Entry) -> str | None:
    name = entry.values.get("scheduler")
    if name is not None and name not in SCHEDULERS:
        raise entry.fail("scheduler", f"expected one of {', '.join(SCHEDULERS)}, got {brief(name)}.")
    return name


def _family(entry: _Entry, override: str | None) -> str | None:
    name = override or entry.values.get("family")
    if name is not None and name not in FAMILIES:
        raise entry.fail("family", f"expected one of {', '.join(FAMILIES)}, got {brief(name)}.")
    return name


def _model_specs(entry: _Entry, default_motion_module: Path | None, family: str | None) -> list[ModelSpec]:
    motion_settings, scheduler, use_motion = {}, {}, True
    inference_path = entry.path("inference_config")
    if inference_path is not None:
        inference = _load_yaml(inference_path, "inference config") or {}
        motion_settings, use_motion = _motion_settings(inference, f"inference config {inference_path}")
        scheduler = inference.get("noise_scheduler_kwargs") or {}
    lora_path = entry.path("lora_model_path")
    shared = dict(
        base=entry.base,
        dreambooth=entry.path("dreambooth_path"),
        loras=[(lora_path, entry.number("lora_alpha", float, 0.8))] if lora_path else [],
        domain_adapter=entry.path("adapter_lora_path"),
        domain_adapter_scale=entry.number("adapter_lora_scale", float, 1.0),
        motion_loras=_motion_loras(entry),
        motion_module_settings=motion_settings,
        sampler=_sampler(entry),
        **({"scheduler": dict(scheduler)} if scheduler else {}),
    )
    return [
        ModelSpec(motion_module=module, **shared).with_family(_family(entry, family))
        for module in _motion_modules(entry, use_motion, default_motion_module)
    ]


def _keyframes(entry: _Entry) -> tuple[tuple[int, str], ...]:
    """`prompt_map: {0: "…", 16: "…"}` (keys numbers or numeric strings; negative ones count from the end)."""
    mapping = entry.values.get("prompt_map")
    if mapping is None:
        return ()
    if not isinstance(mapping, dict) or not mapping:
        raise entry.fail("prompt_map", f"expected a mapping of frame numbers to prompts, got {brief(mapping)}.")
    keyframes = []
    for frame, text in mapping.items():
        try:
            number = int(frame)
        except (TypeError, ValueError):
            raise entry.fail("prompt_map", f"expected whole-number frames, got {brief(frame)}.") from None
        if not isinstance(text, str) or not text.strip():
            raise entry.fail("prompt_map", f"the prompt at frame {number} is {brief(text)}; expected a text.")
        keyframes.append((number, text.strip()))
    return tuple(keyframes)


def _choice(entry: _Entry, field: str, kind) -> str | None:
    value = entry.values.get(field)
    if value is not None and value not in get_args(kind):
        raise entry.fail(field, f"expected one of {', '.join(get_args(kind))}, got {brief(value)}.")
    return value


def _flag(entry: _Entry, field: str) -> bool:
    value = entry.values.get(field, False)
    if not isinstance(value, bool):
        raise entry.fail(field, f"expected true or false, got {brief(value)}.")
    return value


def _time_controls(entry: _Entry) -> TimeControls:
    def whole(field: str) -> int | None:
        return entry.number(field, int, None) if entry.values.get(field) is not None else None

    context = ContextRequest(
        whole("context_length"),
        whole("context_overlap"),
        _choice(entry, "context_schedule", Schedule),
        _choice(entry, "context_fuse", Fuse),
        _choice(entry, "context_scope", Scope),
        _flag(entry, "loop"),
    )
    interpolation = _choice(entry, "prompt_interpolation", Interpolation) or "linear"
    return TimeControls(
        keyframes=_keyframes(entry),
        interpolation=interpolation,
        context=context,
        noise_shuffle=_flag(entry, "noise_shuffle"),
        free_init=whole("free_init"),
    )


def _path_and_scale(entry: _Entry, field: str, text) -> tuple[Path | None, float]:
    """`PATH` or `PATH:SCALE` (a number after the last colon), as on the command line."""
    if not isinstance(text, str):
        raise entry.fail(field, f"expected PATH or PATH:SCALE, got {brief(text)}.")
    path, colon, scale = text.rpartition(":")
    try:
        value = float(scale) if colon else None
    except ValueError:
        value = None
    if value is None:
        return entry.path(field, text), 1.0
    if not math.isfinite(value):
        raise entry.fail(field, f"the scale must be a finite number, got {scale}.")
    return entry.path(field, path), value


def _control(entry: _Entry) -> ControlSpec:
    """`init_video`, `strength`, `stride`, `controlnet` + `control_video` (one each or lists in the same
    order), `control_start`, `control_end`, `guess_mode`, `ip_adapter` (PATH[:SCALE]), `ip_image`,
    `image_encoder`, `init_image`, `init_strength`, `init_falloff`, `last_image`: the command line's flags as keys."""
    values = entry.values
    nets = [_path_and_scale(entry, "controlnet", text) for text in entry.strings("controlnet", [])]
    videos = [entry.path("control_video", text) for text in entry.strings("control_video", [])]
    if len(nets) != len(videos):
        raise entry.fail(
            "control_video",
            f"each controlnet takes one control_video, in the same order; got {len(nets)} and {len(videos)}.",
        )
    ip_adapter, ip_scale = (
        _path_and_scale(entry, "ip_adapter", values["ip_adapter"]) if "ip_adapter" in values else (None, 1.0)
    )
    numbers = {
        name: entry.number(name, float, None)
        for name in ("strength", "control_start", "control_end", "init_strength", "init_falloff")
        if values.get(name) is not None
    }
    numbers.update(_sparsectrl(entry))
    if values.get("stride") is not None:
        numbers["stride"] = entry.number("stride", int, 1)
    try:
        return ControlSpec(
            init_video=entry.path("init_video"),
            guess_mode=_flag(entry, "guess_mode"),
            controlnets=tuple(
                ControlNetSpec(path, scale, video) for (path, scale), video in zip(nets, videos, strict=True)
            ),
            ip_adapter=ip_adapter,
            ip_adapter_scale=ip_scale,
            ip_image=entry.path("ip_image"),
            image_encoder=entry.path("image_encoder"),
            init_image=entry.path("init_image"),
            last_image=entry.path("last_image"),
            **numbers,
        )
    except ConfigError as error:
        raise ConfigError(f"{entry.config}, entry {entry.index}: {error}") from error


def _sparsectrl(entry: _Entry) -> dict:
    """SparseCtrl, by the official keys (`controlnet_path`, `controlnet_config`, `controlnet_images`,
    `controlnet_image_indexs`, `controlnet_scale`, `normalize_condition_images`) or by the command line's
    (`sparsectrl` PATH[:SCALE], `control_image` FRAME:PATH, `control_latents`, `control_frames`)."""
    values = entry.values
    official = values.get("controlnet_path") not in (None, "")
    if official and "sparsectrl" in values:
        raise entry.fail("sparsectrl", "give the SparseCtrl encoder once: as controlnet_path or as sparsectrl.")
    found = {"normalize_condition_images": _flag(entry, "normalize_condition_images")}
    if official:
        found["sparsectrl"] = entry.path("controlnet_path")
        images = [entry.path("controlnet_images", text) for text in entry.strings("controlnet_images", [])]
        indices = _frames(entry, "controlnet_image_indexs", [0])
        if len(indices) > len(images):
            raise entry.fail(
                "controlnet_images",
                f"{len(indices)} keyframe indices (controlnet_image_indexs) but "
                f"{len(images)} images; give one image per index.",
            )
        # as the official pipeline: the first len(indices) images are the keyframes
        found.update(
            sparsectrl_scale=entry.number("controlnet_scale", float, 1.0),
            control_images=tuple(images[: len(indices)]),
            control_frames=indices,
            sparsectrl_settings=_controlnet_settings(entry),
        )
    elif "sparsectrl" in values:
        found["sparsectrl"], found["sparsectrl_scale"] = _path_and_scale(entry, "sparsectrl", values["sparsectrl"])
        pairs = [_frame_and_path(entry, text) for text in entry.strings("control_image", [])]
        found["control_images"] = tuple(path for _, path in pairs)
        found["control_frames"] = tuple(frame for frame, _ in pairs) or _frames(entry, "control_frames", [])
    if "control_latents" in values:
        found["control_latents"] = entry.path("control_latents")
    return found


def _frames(entry: _Entry, field: str, default: list[int]) -> tuple[int, ...]:
    value = entry.values.get(field, default)
    value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise entry.fail(field, f"expected a frame index or a list of them, got {brief(value)}.")
    return tuple(value)


def _frame_and_path(entry: _Entry, text) -> tuple[int, Path]:
    frame, colon, path = text.partition(":") if isinstance(text, str) else ("", "", "")
    if not colon or not frame.lstrip("-").isdigit():
        raise entry.fail("control_image", f"expected FRAME:PATH, got {brief(text)}.")
    return int(frame), entry.path("control_image", path)


def _controlnet_settings(entry: _Entry) -> dict | None:
    """The official `controlnet_config` YAML's `controlnet_additional_kwargs` (None when not given)."""
    path = entry.path("controlnet_config")
    if path is None:
        return None
    loaded = _load_yaml(path, "controlnet_config")
    settings = loaded.get("controlnet_additional_kwargs", {}) if isinstance(loaded, dict) else None
    if not isinstance(settings, dict):
        raise entry.fail("controlnet_config", f"{path}: expected a YAML mapping with controlnet_additional_kwargs.")
    return settings


def _prompts(entry: _Entry) -> list[str]:
    if entry.values.get("prompt_map") is None:
        prompts = entry.strings("prompt", [])
        if not prompts:
            raise entry.fail("prompt", "expected at least one prompt.")
        return prompts
    if "prompt" in entry.values:
        raise entry.fail("prompt", "an entry with a prompt_map takes its prompts from it; leave 'prompt' out.")
    seeds = entry.values.get("seed", -1)
    return [""] * (len(seeds) if isinstance(seeds, list) else 1)  # one clip per seed; frame 0's text is in the map


def _samples(entry: _Entry, release: Family, drawn: list[int] | None = None) -> list[Sample]:
    """The entry's clips; steps and guidance not given are `release`'s; `drawn`: the seeds already resolved."""
    prompts = _prompts(entry)
    negatives = entry.strings("n_prompt", [""])
    if len(negatives) not in (1, len(prompts)):
        raise entry.fail("n_prompt", f"expected 1 or {len(prompts)} negative prompts, got {len(negatives)}.")
    seeds = entry.values.get("seed", -1)
    seeds = seeds if isinstance(seeds, list) else [seeds]
    if len(seeds) not in (1, len(prompts)) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise entry.fail("seed", f"expected one whole number or {len(prompts)} of them, got {brief(seeds)}.")
    negatives = negatives * len(prompts) if len(negatives) == 1 else negatives
    seeds = seeds * len(prompts) if len(seeds) == 1 else seeds
    size = base_frame_size(entry.base)
    shared = dict(
        steps=entry.number("steps", int, release.steps),
        guidance_scale=entry.number("guidance_scale", float, release.guidance_scale),
        frames=entry.number("L", int, 16),
        width=entry.number("W", int, size),
        height=entry.number("H", int, size),
    )
    for name, field in (("steps", "steps"), ("frames", "L"), ("width", "W"), ("height", "H")):
        if shared[name] < 1:
            raise entry.fail(field, f"must be at least 1; got {shared[name]}.")
    samples = []
    seeds = drawn or seeds
    for prompt, negative, seed in zip(prompts, negatives, seeds, strict=True):
        try:
            seed = resolve_seed(seed)
        except ConfigError as error:
            raise entry.fail("seed", str(error)) from error
        samples.append(Sample(prompt=prompt, negative_prompt=negative, seed=seed, **shared))
    return samples


def read_prompt_config(
    path: str | os.PathLike,
    base: str | os.PathLike,
    default_motion_module: Path | None = None,
    family: str | None = None,
) -> list[Job]:
    """Every model and sample an official prompt config asks for, all paths checked; entries without a
    motion module get `default_motion_module` (refused if None); `family` (--family) replaces every
    entry's own."""
    path = Path(path)
    entries = _load_yaml(path, "config")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config {path}: expected a list of entries (official prompt-config format).")
    jobs = []
    for index, values in enumerate(entries):
        if not isinstance(values, dict):
            raise ConfigError(f"{path}, entry {index}: expected a mapping of settings, got {brief(values)}.")
        unknown = sorted(set(values) - ENTRY_KEYS)
        if unknown:
            raise ConfigError(
                f"{path}, entry {index}: unknown field(s) {', '.join(unknown)}; known fields: "
                f"{', '.join(sorted(ENTRY_KEYS))}."
            )
        entry = _Entry(values, index, path, Path(base))
        time, control = _time_controls(entry), _control(entry)
        samples = {}  # per release (its default steps and guidance); one seed drawn for all of them
        for spec in _model_specs(entry, default_motion_module, family):
            spec.check()
            if not samples:
                samples[spec.release.name] = _samples(entry, spec.release)
            first = next(iter(samples.values()))
            if spec.release.name not in samples:
                samples[spec.release.name] = _samples(entry, spec.release, [sample.seed for sample in first])
            jobs.append(Job(spec, tuple(samples[spec.release.name]), time, control))
    return jobs
