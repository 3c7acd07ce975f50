"""The models the app offers, by name: the embedded ones (`shapes`, `shapes-motion`, …) and every checkpoint
of one models folder, named by its path inside that folder. A name is a key of these lists, never a path:
nothing a client sends is joined to a folder, so no request reaches a file outside them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from animatediff.embedded import MODELS

log = logging.getLogger(__name__)

# the kinds of model the page offers, keyed by the `generate` flag that takes them
FLAGS = {
    "base": "--base",
    "dreambooth": "--dreambooth",
    "lora": "--lora",
    "motion_module": "--motion-module",
    "motion_lora": "--motion-lora",
    "domain_adapter": "--domain-adapter",
    "sparsectrl": "--sparsectrl",
    "controlnet": "--controlnet",
    "camera_ctrl": "--camera-ctrl",
}
SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


class UnknownModel(LookupError):
    """A model name that is not in the app's lists."""

    def __init__(self, kind: str, name: str):
        super().__init__(f"{kind} {name!r} is not one of the models this app offers")
        self.kind, self.name = kind, name


@dataclass
class Catalog:
    """Model names by kind (the keys of `FLAGS`), each with its path."""

    models: dict[str, dict[str, Path]] = field(default_factory=lambda: {kind: {} for kind in FLAGS})

    def names(self, kind: str) -> list[str]:
        return list(self.models[kind])

    def path(self, kind: str, name: str) -> Path:
        try:
            return self.models[kind][name]
        except KeyError:
            raise UnknownModel(kind, name) from None

    def listing(self) -> dict[str, list[str]]:
        return {kind: self.names(kind) for kind in FLAGS}


def _kinds_of(path: Path) -> list[str]:
    """The catalog kinds a file or folder can serve as (none for what is not a model this package loads)."""
    from animatediff.formats import Kind, kind_of

    return {
        Kind.MOTION_MODULE: ["motion_module"],
        Kind.MOTION_LORA: ["motion_lora"],
        Kind.DOMAIN_ADAPTER: ["domain_adapter"],
        Kind.SD_CHECKPOINT: ["base", "dreambooth"],
        Kind.IMAGE_LORA: ["lora"],
        Kind.IMAGE_MODEL: ["base"],
        Kind.IMAGE_UNET: ["dreambooth"],
        Kind.SPARSECTRL: ["sparsectrl"],
        Kind.CONTROLNET: ["controlnet"],
        Kind.CAMERACTRL: ["camera_ctrl"],
    }.get(kind_of(path), [])


def _linked_within(path: Path, root: Path) -> bool:
    """Whether a link stays inside `root` (a Hugging Face snapshot's files link to its repository's blobs)."""
    return path.resolve().is_relative_to(root.resolve())


def _candidates(folder: Path, root: Path | None = None) -> list[Path]:
    """Checkpoint files and model folders in `folder` and its subfolders (a model folder is not entered); links
    are followed only where they stay inside `root` (the models folder, or a Hub snapshot's repository)."""
    if root is None:
        root = folder.parents[1] if folder.parent.name == "snapshots" else folder
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or (path.is_symlink() and not _linked_within(path, root)):
            continue
        if path.is_dir():
            model = (path / "config.json").is_file() or (path / "model_index.json").is_file()
            found += [path] if model else _candidates(path, root)
        elif path.suffix in SUFFIXES:
            found.append(path)
    return found


def scan(models_folder: Path | None) -> Catalog:
    """The embedded models, then those of `models_folder` (None: the embedded ones alone)."""
    catalog = Catalog()
    for model in MODELS.values():
        kind = next(kind for kind, flag in FLAGS.items() if flag == model.flag)
        if model.path.exists():
            catalog.models[kind][model.name] = model.path
    if models_folder is None:
        return catalog
    for path in _candidates(Path(models_folder)):
        try:
            kinds = _kinds_of(path)
        except Exception as error:  # an unreadable file is left out of the lists, not fatal
            log.warning("models folder: %s left out (%s)", path, error)
            continue
        name = path.relative_to(models_folder).as_posix()
        for kind in kinds:
            catalog.models[kind][name] = Path(models_folder).resolve() / name  # a link keeps its name and suffix
    return catalog
