"""Writing files so that nothing a user made is lost or left half-written.

Every output (video, frame folder, checkpoint, model folder, config) is written under a hidden
temporary name beside its target and renamed into place in one step, so a crash leaves either the old
file or the new one. An existing folder is replaced only when it holds nothing but what this program
writes there (a frame folder's PNGs, a model folder's weights and configs); any other folder is refused
before any work starts. A temporary left behind by a process that was killed outright (`kill -9`, power
loss) names that process, and the next write of the same target removes it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from glob import escape
from pathlib import Path

import psutil

from animatediff.errors import ConfigError, OutputError

Replaceable = Callable[[Path], bool]  # does an existing folder hold only what this program writes there?
_PARTIAL = ".partial"


def holds_only(*patterns: str) -> Replaceable:
    """A `Replaceable` for folders whose every file, by its path inside the folder, matches a pattern."""

    def check(folder: Path) -> bool:
        files = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir())
        return all(any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) for name in files)

    return check


def _is_empty(folder: Path) -> bool:
    return not any(folder.iterdir())


def check_output(path: str | os.PathLike, directory: bool = False, replaceable: Replaceable | None = None) -> Path:
    """Fail now, naming `path`, if an output cannot be written there: a folder in the way that holds files
    of someone else's, a file where a folder goes (or the reverse), a parent that is a file or cannot be
    written to. Nothing is created or changed."""
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise OutputError(f"{path}: names a folder that holds other things, not a new output; give it a name.")
    if target.is_dir():
        if not directory:
            raise OutputError(f"{target}: is a folder; the output is a single file here, so choose another name.")
        if not (_is_empty(target) or (replaceable is not None and replaceable(target))):
            raise OutputError(
                f"{target}: this folder holds files this program did not write there, so it is not replaced; "
                "choose another output name, or move those files away."
            )
    elif target.exists() and directory:
        raise OutputError(f"{target}: is a file; the output is a folder (no extension), so choose another name.")
    _check_writable_parent(target)
    return target


def _check_writable_parent(target: Path) -> None:
    parent = target.parent
    while not parent.exists():  # the nearest folder that exists is where the new ones will be made
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: {parent} is a file, so nothing can be written under it.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".animatediff-write-check.", dir=parent)
    except OSError as error:
        raise OutputError(f"{target}: cannot write in {parent} ({error.strerror}).") from error
    os.close(handle)
    os.unlink(probe)


def _temporary_name(target: Path) -> str:
    return f".{target.name}.{os.getpid()}-"


def remove_leftovers(target: Path) -> None:
    """Remove temporaries of `target` left by processes that no longer run."""
    for leftover in target.parent.glob(escape(f".{target.name}.") + f"*-*{_PARTIAL}*"):
        pid = leftover.name[len(target.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(
    path: str | os.PathLike, directory: bool = False, replaceable: Replaceable | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    With `directory=True` the temporary path is an empty folder, and an existing folder at `path` is
    replaced only if it is empty or `replaceable` says it holds nothing but this program's files
    (`check_output`). On failure, or Ctrl-C, the temporary is removed and whatever was at `path`
    is left untouched."""
    target = check_output(path, directory, replaceable)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target)
        if directory:
            temporary = Path(tempfile.mkdtemp(prefix=_temporary_name(target), suffix=_PARTIAL, dir=target.parent))
        else:
            suffix = _PARTIAL + target.suffix
            handle, name = tempfile.mkstemp(prefix=_temporary_name(target), suffix=suffix, dir=target.parent)
            os.close(handle)
            temporary = Path(name)
    except OSError as error:
        raise OutputError(f"{target}: cannot be written ({error.strerror}).") from error
    try:
        yield temporary
        check_output(target, directory, replaceable)  # nothing of someone else's appeared meanwhile
        _replace(temporary, target)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True) if temporary.is_dir() else temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{target}: could not be written ({error.strerror or error}).") from error
        raise


def _default_mode(directory: bool) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _give_default_modes(temporary: Path) -> None:
    """The temporary and everything in it get the modes a plain `open` or `mkdir` would have given them
    (0666 or 0777 less the umask): the temporary itself was made private (0600, 0700) by `tempfile`, and
    some writers inside a folder make their files private too (safetensors writes 0600)."""
    os.chmod(temporary, _default_mode(temporary.is_dir()))
    if temporary.is_dir():
        for path in temporary.rglob("*"):
            if not path.is_symlink():
                os.chmod(path, _default_mode(path.is_dir()))


def _replace(source: Path, target: Path) -> None:
    _give_default_modes(source)
    if not (source.is_dir() and target.is_dir()):
        os.replace(source, target)
        return
    # A folder cannot be renamed over a non-empty one: move the old one (ours, as checked) aside first.
    old = Path(tempfile.mkdtemp(prefix=_temporary_name(target), suffix=_PARTIAL, dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(source, target)
    shutil.rmtree(old)


def read_json(path: Path, what: str = "config") -> dict:
    """A JSON object from `path`, or an error naming the file and saying it should be `what`."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: the {what} is not readable JSON ({str(error).splitlines()[0]}).") from error
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: the {what} must be a JSON object of settings, found {type(value).__name__}.")
    return value
