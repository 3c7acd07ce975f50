"""How a front end's references become files, and how its errors name a setting.

The command line takes, for each model, a path, an embedded model's short name, a catalog name
(`animatediff.releases`) or a Hugging Face Hub reference (`animatediff.hub`), and a path for each input; a
prompt config also looks beside itself (`prompt_config.EntrySources`); the web app takes names from its own
lists (`app.requests.AppSources`). A path that exists is never looked up elsewhere. The planner asks the front
end's `Sources` and never guesses.
"""

from __future__ import annotations

from pathlib import Path

from animatediff import hub, releases
from animatediff.embedded import MODELS, resolve
from animatediff.errors import ConfigError
from animatediff.request import flag
from animatediff.settings import ControlSpec, ModelSpec


class Sources:
    """How a front end's references become files, and how its errors name a setting. This one is the
    command line's: a model is a path, an embedded model's short name, a catalog name or a Hub reference; an
    input is a path."""

    prompt_syntax = "a1111"  # how its prompts are read unless told: as users write them for A1111

    def name(self, setting: str) -> str:
        return flag(setting) or setting

    def model(self, setting: str, reference: str) -> Path:
        if Path(reference).exists():
            return self.input(setting, reference)
        option = flag(setting) or setting
        if reference in MODELS:
            return resolve(reference, option)
        try:
            found = releases.locate(reference, option)
        except ConfigError as error:
            raise self.fail(setting, str(error)) from None
        return self.input(setting, reference) if found is None else found

    def input(self, setting: str, reference: str) -> Path:
        return Path(reference)

    def fail(self, setting: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name(setting)}: {message}")

    def references(self, model: ModelSpec, control: ControlSpec) -> tuple[tuple[str, str, str], ...]:
        """(path, Hub id, commit) of each model file that came from the Hub cache, for the sidecar."""
        paths = [path for _, path in model.files()] + [controlnet.path for controlnet in control.controlnets]
        others = (control.ip_adapter, control.sparsectrl, control.image_encoder, control.camera_ctrl)
        paths += [path for path in others if path is not None]
        found = {str(path): hub.recorded(path) for path in paths}
        return tuple((path, *origin) for path, origin in found.items() if origin is not None)
