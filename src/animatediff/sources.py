"""How a front end's references become files, and how its errors name a setting.

The command line takes a path or an embedded model's short name for each model and a path for each input;
a prompt config also looks beside itself (`prompt_config.EntrySources`); the web app takes names from its
own lists (`app.requests.AppSources`). The planner asks the front end's `Sources` and never guesses.
"""

from __future__ import annotations

from pathlib import Path

from animatediff.embedded import resolve
from animatediff.errors import ConfigError
from animatediff.request import flag


class Sources:
    """How a front end's references become files, and how its errors name a setting. This one is the
    command line's: a model is a path or an embedded model's short name; an input is a path."""

    prompt_syntax = "a1111"  # how its prompts are read unless told: as users write them for A1111

    def name(self, setting: str) -> str:
        return flag(setting) or setting

    def model(self, setting: str, reference: str) -> Path:
        return resolve(reference, flag(setting) or setting)

    def input(self, setting: str, reference: str) -> Path:
        return Path(reference)

    def fail(self, setting: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name(setting)}: {message}")
