"""The official repository's prompt configs (`configs/prompts/*.yaml`), read unchanged, as requests.

A config is a list of entries. Each is read as `Request`s: its keys are the settings' names (the command
line's flags with underscores: `context_length`, `controlnet`, `control_image`, …), and the official keys
stand for them: `motion_module` (one path or a list: one clip per module), `dreambooth_path`,
`lora_model_path` + `lora_alpha` (0.8 by default), `adapter_lora_path` + `adapter_lora_scale`,
`motion_module_lora_configs`, `inference_config`, `prompt` and `n_prompt` (one for all or one per prompt),
`seed` (one for all or one per prompt, -1 for random: drawn here, once for every module), `W`, `H`, `L`,
and SparseCtrl's `controlnet_path`, `controlnet_config`, `controlnet_images`, `controlnet_image_indexs`,
`controlnet_scale`. Relative paths resolve against the current directory first, as the official
`animate.py` does, then against the config's folder. The planner checks the rest before any weights load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from animatediff.errors import ConfigError, one_line
from animatediff.request import Request, brief, check, declarations, from_data
from animatediff.settings import resolve_seed
from animatediff.sources import Sources

OFFICIAL = {  # an official key → the setting it gives
    "W": "width",
    "H": "height",
    "L": "frames",
    "n_prompt": "negative_prompt",
    "dreambooth_path": "dreambooth",
    "adapter_lora_path": "domain_adapter",
    "adapter_lora_scale": "domain_adapter_scale",
    "controlnet_path": "sparsectrl",
}
OFFICIAL_ONLY = {"lora_model_path", "lora_alpha", "motion_module_lora_configs", "controlnet_images"}
OFFICIAL_ONLY |= {"controlnet_image_indexs", "controlnet_scale"}
NOT_PER_ENTRY = {"output", "device", "dtype", "compile", "split_guidance"}  # the run's, not an entry's
LISTED = {"prompt", "negative_prompt", "seed", "motion_module"}  # one value, or a list: one clip per item


def entry_keys() -> set[str]:
    return (set(declarations()) - NOT_PER_ENTRY) | set(OFFICIAL) | OFFICIAL_ONLY


class EntrySources(Sources):
    """Paths of one entry: the current directory first, then the config's folder; embedded models by name.
    Errors name the config, the entry and the key the entry used. Prompts are read as written, as the official
    script reads them (a `prompt_syntax` key says otherwise)."""

    prompt_syntax = "plain"

    def __init__(self, config: Path, index: int, keys: dict[str, str]):
        self.config, self.index, self.keys = config, index, keys

    def name(self, setting: str) -> str:
        return f"{self.config}, entry {self.index}, '{self.keys.get(setting, setting)}'"

    def model(self, setting: str, reference: str) -> Path:
        if (self.config.parent / reference).exists():
            return self.input(setting, reference)
        return super().model(setting, reference)  # a path, an embedded or catalog name, a Hub reference

    def input(self, setting: str, reference: str) -> Path:
        for candidate in (Path(reference), self.config.parent / reference):
            if candidate.exists():
                return candidate
        raise self.fail(
            setting, f"{reference}: no such file or folder (looked in {os.getcwd()} and {self.config.parent})."
        )


@dataclass
class _Entry:
    """One entry's values, with errors that name the config, the entry and the key."""

    values: dict
    index: int
    config: Path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.config}, entry {self.index}, '{key}': {message}")

    def read(self, key: str, setting: str, value=None):
        """The value of `key` (or `value`, an item of it) as `setting` holds it, checked against its bounds."""
        try:
            value = from_data(setting, self.values[key] if value is None else value)
        except ValueError as error:
            raise self.fail(key, f"{error}.") from None
        declared = declarations()[setting]
        try:
            for item in value if declared.repeat else (value,):
                check(setting, declared, item)
        except ConfigError as error:
            raise self.fail(key, str(error).removeprefix(f"{setting}: ")) from None
        return value

    def listed(self, key: str, setting: str, default: list) -> list:
        value = self.values.get(key, default)
        return [self.read(key, setting, item) for item in (value if isinstance(value, list) else [value])]


def _settings(entry: _Entry) -> tuple[dict, dict[str, str]]:
    """The entry's single-valued settings, and the key each came from (for errors)."""
    values, keys = {}, {}
    for key in entry.values:
        setting = OFFICIAL.get(key, key)
        if setting in LISTED or key in OFFICIAL_ONLY or entry.values[key] in (None, ""):
            continue
        values[setting], keys[setting] = entry.read(key, setting), key
    if entry.values.get("lora_model_path"):
        lora = {"path": entry.values["lora_model_path"], "scale": entry.values.get("lora_alpha", 0.8)}
        values["loras"] = entry.read("lora_alpha", "loras", [lora])
        keys["loras"] = "lora_model_path"
    if entry.values.get("motion_module_lora_configs"):
        values["motion_loras"], keys["motion_loras"] = _motion_loras(entry), "motion_module_lora_configs"
    values.update(_official_sparsectrl(entry, keys))
    return values, keys


def _motion_loras(entry: _Entry) -> tuple[tuple[str, float], ...]:
    """`motion_module_lora_configs`: a list of {path, alpha}."""
    loras = []
    for item in entry.values["motion_module_lora_configs"]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise entry.fail(
                "motion_module_lora_configs", f"expected entries with 'path' and 'alpha', got {brief(item)}."
            )
        loras.append({"path": item["path"], "scale": item.get("alpha", 1.0)})
    return entry.read("motion_module_lora_configs", "motion_loras", loras)


def _official_sparsectrl(entry: _Entry, keys: dict[str, str]) -> dict:
    """SparseCtrl by the official keys: the encoder's scale and keyframes (as the official pipeline: the first
    len(indices) images are the keyframes, at `controlnet_image_indexs`)."""
    values = entry.values
    if values.get("controlnet_path") in (None, ""):
        return {}
    if "sparsectrl" in values:
        raise entry.fail("sparsectrl", "give the SparseCtrl encoder once: as controlnet_path or as sparsectrl.")
    encoder = {"path": values["controlnet_path"], "scale": values.get("controlnet_scale", 1.0)}
    encoder = entry.read("controlnet_scale", "sparsectrl", encoder)
    images = [entry.read("controlnet_images", "init_image", text) for text in _strings(entry, "controlnet_images")]
    indices = entry.read("controlnet_image_indexs", "control_frames", values.get("controlnet_image_indexs", [0]))
    if len(indices) > len(images):
        raise entry.fail(
            "controlnet_images",
            f"{len(indices)} keyframe indices (controlnet_image_indexs) but {len(images)} images; give one image per "
            "index.",
        )
    keys.update(sparsectrl="controlnet_path", control_image="controlnet_images")
    return {
        "sparsectrl": encoder,
        "control_image": tuple(zip(indices, images[: len(indices)], strict=True)),
    }


def _strings(entry: _Entry, key: str) -> list:
    value = entry.values.get(key, [])
    return value if isinstance(value, list) else [value]


def _clips(entry: _Entry) -> list[tuple[str, str, int]]:
    """(prompt, negative prompt, seed) of each of the entry's clips; random seeds drawn."""
    if entry.values.get("prompt_map") is None:
        prompts = entry.listed("prompt", "prompt", [])
        if not prompts:
            raise entry.fail("prompt", "expected at least one prompt.")
    elif "prompt" in entry.values:
        raise entry.fail("prompt", "an entry with a prompt_map takes its prompts from it; leave 'prompt' out.")
    seeds = entry.listed("seed", "seed", -1)
    if entry.values.get("prompt_map") is not None:
        prompts = [""] * len(seeds)  # one clip per seed; frame 0's text is in the map
    negatives = entry.listed("n_prompt" if "n_prompt" in entry.values else "negative_prompt", "negative_prompt", "")
    if len(negatives) not in (1, len(prompts)):
        raise entry.fail("n_prompt", f"expected 1 or {len(prompts)} negative prompts, got {len(negatives)}.")
    if len(seeds) not in (1, len(prompts)):
        raise entry.fail("seed", f"expected one whole number or {len(prompts)} of them, got {brief(seeds)}.")
    seeds = [resolve_seed(seed) for seed in seeds]  # each checked against the seed's bounds as it was read
    negatives, seeds = (items * len(prompts) if len(items) == 1 else items for items in (negatives, seeds))
    return list(zip(prompts, negatives, seeds, strict=True))


def read_prompt_config(path: str | os.PathLike) -> list[tuple[Request, EntrySources]]:
    """Every clip an official prompt config asks for, as a request with the sources its paths resolve in:
    entries in order, each entry's motion modules in order, each module's prompts in order."""
    path = Path(path)
    entries = load_yaml(path, "config")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config {path}: expected a list of entries (official prompt-config format).")
    requests = []
    for index, values in enumerate(entries):
        if not isinstance(values, dict):
            raise ConfigError(f"{path}, entry {index}: expected a mapping of settings, got {brief(values)}.")
        unknown = sorted(set(values) - entry_keys())
        if unknown:
            raise ConfigError(
                f"{path}, entry {index}: unknown field(s) {', '.join(unknown)}; known fields: "
                f"{', '.join(sorted(entry_keys()))}."
            )
        entry = _Entry(values, index, path)
        settings, keys = _settings(entry)
        sources = EntrySources(path, index, keys)
        modules = entry.listed("motion_module", "motion_module", [None]) if values.get("motion_module") else [None]
        clips = _clips(entry)  # random seeds drawn once for every module
        for module in modules:
            for prompt, negative, seed in clips:
                try:
                    request = Request(
                        **settings, motion_module=module, prompt=prompt, negative_prompt=negative, seed=seed
                    )
                except ConfigError as error:
                    raise ConfigError(f"{path}, entry {index}: {error}") from error
                requests.append((request, sources))
    return requests


def load_yaml(path: Path, what: str):
    """A YAML file's data, or an error naming the file and what is wrong with it."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} {path}: cannot be read as text ({one_line(error)}).") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path}: not valid YAML ({one_line(error)}).") from error
