"""Errors a user can cause. The CLI prints their message as one paragraph and exits with code 2."""


class AnimateDiffError(Exception):
    """Base class for every mistake in user input: files, settings, sizes."""


class CheckpointError(AnimateDiffError):
    """A weights file is missing, unreadable, unsafe, or not the kind that was expected."""


class ConfigError(AnimateDiffError):
    """A setting or prompt config value is invalid."""
