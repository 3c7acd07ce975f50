"""Model references on the Hugging Face Hub, resolved to files in the cache `huggingface_hub` manages.

Three forms name a model on the Hub:

- `hf://OWNER/REPO/PATH/IN/REPO[@REVISION]`: one file of a repository (`hf://guoyww/animatediff/mm_sd_v15_v2.ckpt`);
- `hf://OWNER/REPO[@REVISION]`: a whole repository as a folder (a diffusers model, a MotionAdapter);
- `OWNER/REPO[@REVISION]`, bare: the same, when no such local path exists and the last part is no file name.

Downloads go through `huggingface_hub` (its cache under `HF_HUB_CACHE`/`HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`,
its progress bars, resuming an interrupted download); a folder downloads only what loading reads (`needed`).
A resolved file lies under `models--OWNER--REPO/snapshots/COMMIT/`, so its path alone says which id and which
commit it came from (`recorded`): that is what a sidecar records, and a run pinned to that commit repeats exactly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from animatediff.errors import ConfigError

PREFIX = "hf://"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
CONFIG_SUFFIXES = (".json", ".txt", ".model")  # configs, tokenizers' vocabularies and merges
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
_BARE = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


@dataclass(frozen=True)
class HubReference:
    """A repository (`OWNER/REPO`), one file in it (`path`, None: the repository as a folder), and a revision
    (a branch, tag or commit; None: `main`)."""

    repo: str
    path: str | None = None
    revision: str | None = None

    @property
    def id(self) -> str:
        return self.repo if self.path is None else f"{PREFIX}{self.repo}/{self.path}"

    def __str__(self) -> str:
        return self.id + (f"@{self.revision}" if self.revision else "")


def parse(text: str) -> HubReference | None:
    """The Hub reference `text` is, or None when it is none (a local path, a short name). A path that exists is
    never a Hub reference; a malformed `hf://` one is a `ConfigError`."""
    text = str(text)
    if text.startswith(PREFIX):
        return _parse(text)
    if Path(text).exists() or not _BARE.fullmatch(text) or text.partition("@")[0].endswith(WEIGHT_SUFFIXES):
        return None
    return _parse(text)


def _parse(text: str) -> HubReference:
    body, at, revision = text.removeprefix(PREFIX).partition("@")
    parts = body.strip("/").split("/")
    if len(parts) < 2 or not all(parts) or (at and not revision):
        raise ConfigError(
            f"{text}: not a Hub reference; expected hf://OWNER/REPO/PATH/IN/REPO for a file, or hf://OWNER/REPO "
            "(or OWNER/REPO) for a whole repository, each optionally followed by @REVISION."
        )
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo = "/".join(parts[:2])
    try:
        validate_repo_id(repo)
    except HFValidationError as error:
        raise ConfigError(f"{text}: not a Hub reference: {error}") from None
    return HubReference(repo, "/".join(parts[2:]) or None, revision or None)


def cache_dir() -> Path:
    """The Hub cache, as the environment names it now (`huggingface_hub` reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ.get("HF_HUB_CACHE") or os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def offline() -> bool:
    """Whether `HF_HUB_OFFLINE` forbids downloads (read now, as for `cache_dir`)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or constants.HF_HUB_OFFLINE


def fetch(reference: HubReference) -> Path:
    """The local path of `reference`: from the cache, or downloaded into it (with a progress bar)."""
    import huggingface_hub
    from huggingface_hub import errors
    from tqdm.auto import tqdm

    options = dict(revision=reference.revision, cache_dir=cache_dir(), local_files_only=offline(), tqdm_class=tqdm)
    try:
        if reference.path is not None:
            return Path(huggingface_hub.hf_hub_download(reference.repo, reference.path, **options))
        listing = None if options["local_files_only"] else _listing(reference)
        files = None if listing is None else needed(listing)
        return Path(huggingface_hub.snapshot_download(reference.repo, allow_patterns=files, **options))
    except (errors.HTTPError, OSError) as error:  # every error the Hub, the network or the disk gives
        raise _explained(reference, error) from None


def _listing(reference: HubReference) -> list[str] | None:
    """The repository's files; None when the Hub cannot be reached (`snapshot_download` then takes the cache)."""
    from huggingface_hub import HfApi, errors

    try:
        return HfApi().list_repo_files(reference.repo, revision=reference.revision)
    except errors.HfHubHTTPError:
        raise
    except errors.HTTPError:  # no connection, a timeout
        return None


def needed(files: list[str]) -> list[str]:
    """The files of a repository that loading it as a folder reads: configs and tokenizers, and in each folder
    one copy of the weights (safetensors before .bin before anything else; no variant such as
    `*.fp16.safetensors` or `*.non_ema.bin`). A diffusers pipeline (`model_index.json`) keeps only the parts
    an AnimateDiff pipeline loads, without the single-file checkpoints beside them."""
    if "model_index.json" in files:
        files = ["model_index.json", *(f for f in files if PurePosixPath(f).parts[0] in PIPELINE_PARTS)]
    chosen = [file for file in files if file.endswith(CONFIG_SUFFIXES)]
    folders = {str(PurePosixPath(file).parent) for file in files}
    for folder in sorted(folders):
        weights = [
            file
            for file in files
            if str(PurePosixPath(file).parent) == folder
            and file.endswith(WEIGHT_SUFFIXES)
            and "." not in PurePosixPath(file).stem  # `name.variant.ext` is a variant of `name.ext`
        ]
        for suffix in WEIGHT_SUFFIXES[:2]:
            if any(file.endswith(suffix) for file in weights):
                weights = [file for file in weights if file.endswith(suffix)]
                break
        chosen += weights
    return chosen


def cached(reference: HubReference) -> Path | None:
    """The local path of `reference` if the cache holds it, without asking the Hub."""
    import huggingface_hub

    if reference.path is not None:
        found = huggingface_hub.try_to_load_from_cache(
            reference.repo, reference.path, cache_dir=cache_dir(), revision=reference.revision
        )
        return Path(found) if isinstance(found, str) else None
    try:
        options = dict(revision=reference.revision, cache_dir=cache_dir(), local_files_only=True)
        return Path(huggingface_hub.snapshot_download(reference.repo, **options))
    except huggingface_hub.errors.LocalEntryNotFoundError:
        return None


def recorded(path: str | Path) -> tuple[str, str] | None:
    """(the Hub id, the commit) a path in the Hub cache came from; None for any other path."""
    parts = Path(path).parts
    for index in range(1, len(parts) - 1):
        if parts[index] == "snapshots" and parts[index - 1].startswith("models--"):
            repo = parts[index - 1].removeprefix("models--").replace("--", "/")
            inside = "/".join(parts[index + 2 :])
            return (f"{PREFIX}{repo}/{inside}" if inside else repo), parts[index + 1]
    return None


def _explained(reference: HubReference, error: OSError) -> ConfigError:
    """One paragraph for a failed look-up: what was asked, what the Hub or the cache said, what to do."""
    from huggingface_hub import errors

    if isinstance(error, errors.LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE is set" if offline() else "the Hub could not be reached"
        return ConfigError(
            f"{reference}: not in the Hugging Face cache ({cache_dir()}), and {why}, so it cannot be downloaded; "
            f"fill the cache with `animatediff models pull {reference}` while connected (or copy that cache "
            "here), or connect and unset HF_HUB_OFFLINE."
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return ConfigError(f"{reference}: {reference.repo} has no revision '{reference.revision}' on the Hub.")
    if isinstance(error, errors.RepositoryNotFoundError):  # also what a private or gated repo answers without a token
        return ConfigError(
            f"{reference}: the Hub has no repository {reference.repo} that this machine may read; check the id, "
            "and for a private or gated repository log in (`hf auth login`) or set HF_TOKEN to a token with access."
        )
    if isinstance(error, errors.RemoteEntryNotFoundError):
        return ConfigError(f"{reference}: {reference.repo} has no file {reference.path} on the Hub.")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(f"{reference}: the download failed ({first}); run the command again to resume it.")
