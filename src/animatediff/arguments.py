"""Argument types and the parser classes of the `animatediff` command: each type refuses a bad value with
one sentence naming what was expected; argument errors are one line and exit status 2."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from animatediff.settings import MAX_FREE_INIT, MAX_SEED, RANDOM_SEED


def _parsed(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def whole_number(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite_number(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_number(text: str) -> float:
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def seed_number(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value != RANDOM_SEED and not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**64 - 1, or -1 for a random seed; got {value}")
    return value


def count(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def iterations(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if not 1 <= value <= MAX_FREE_INIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_FREE_INIT}, got {value}")
    return value


def _leading_frame(text: str, form: str) -> tuple[int, str | None]:
    """`FRAME:REST` → (frame, REST; None without a colon); an argument error naming `form` if FRAME is not a
    whole number."""
    frame, colon, rest = text.partition(":")
    try:
        return int(frame), (rest if colon else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {form} with a whole-number frame, got {text!r}") from None


def frame_and_path(text: str) -> tuple[int, str]:
    """`FRAME:PATH` → (frame, path); a negative frame counts from the clip's end."""
    number, path = _leading_frame(text, "FRAME:PATH")
    if not path:
        raise argparse.ArgumentTypeError(f"the image of keyframe {number} is missing; expected FRAME:PATH")
    return number, path


def frame_list(text: str) -> tuple[int, ...]:
    """`0,8,15` → the frames (negative ones count from the clip's end)."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole-number frames separated by commas, got {text!r}") from None


def keyframe(text: str) -> tuple[int, str]:
    """`FRAME:TEXT` → (frame, prompt); a negative frame counts from the clip's end."""
    number, prompt = _leading_frame(text, "FRAME:TEXT")
    if not prompt or not prompt.strip():
        raise argparse.ArgumentTypeError(f"the prompt at keyframe {number} is empty; expected FRAME:TEXT")
    return number, prompt.strip()


def path_and_scale(text: str) -> tuple[str, float]:
    """`PATH[:SCALE]` → (path, scale); the scale defaults to 1. A path that exists as given is taken
    whole (it may contain a colon)."""
    path, colon, scale = text.rpartition(":")
    if not colon or Path(text).exists() or not path or "/" in scale or "\\" in scale:
        return text, 1.0
    try:
        value = float(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the scale after the last ':' must be a number, got {scale!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: the scale must be a finite number, got {scale}")
    return path, value


class Parser(argparse.ArgumentParser):
    """Argument errors in one line, exit status 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def command(commands, name: str, help: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
