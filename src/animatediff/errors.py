"""Errors a user can cause. The CLI prints their message as one paragraph and exits with code 2."""


class AnimateDiffError(Exception):
    """Base class for every mistake in user input: files, settings, sizes."""


class CheckpointError(AnimateDiffError):
    """A weights file is missing, unreadable, unsafe, or not the kind that was expected."""


class ConfigError(AnimateDiffError):
    """A setting or prompt config value is invalid."""


class InputError(AnimateDiffError):
    """An input file that is not a checkpoint (a video, an image) cannot be read."""


class OutputError(AnimateDiffError):
    """An output cannot be written where it was asked for, or would replace something of the user's."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name if it has none), for quoting in an error."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's whole message on one line (whitespace runs joined), for quoting in an error."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
