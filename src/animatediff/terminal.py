"""The terminal: this package's log records as one line each, and the libraries it builds on kept quiet."""

from __future__ import annotations

import logging
import os
import sys


def quiet_libraries() -> None:
    """Keep the terminal for our own progress bar, warnings and errors (the settings are read when the
    libraries are imported; where one already was, in a running program, it is told directly)."""
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
        if name in sys.modules:
            sys.modules[name].logging.disable_progress_bar()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar


class _Terminal(logging.StreamHandler):
    """Log records as `animatediff: warning: …` lines on whatever `sys.stderr` is when they are emitted."""

    def format(self, record: logging.LogRecord) -> str:
        return f"animatediff: {record.levelname.lower()}: {record.getMessage()}"

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


def log_to_terminal(level: int = logging.WARNING) -> None:
    """Log records (this package's warnings: a prompt the tokenizer cuts, …; with `logging.INFO`, a
    training run's progress notes) go to the terminal, one line each."""
    root = logging.getLogger()
    if not any(isinstance(handler, _Terminal) for handler in root.handlers):
        root.addHandler(_Terminal())
    root.setLevel(level)
