"""One request, one planner: every front end fills the same `Request`, every setting is declared once, and
the planner refuses what cannot work before anything loads."""

import argparse
import json

import pytest
import yaml
from fastapi.testclient import TestClient

from animatediff.app.catalog import scan
from animatediff.app.page import PAGE_SETTINGS
from animatediff.app.requests import AppSources, GenerateRequest, Limits, to_request
from animatediff.app.server import ServerOptions, create_app
from animatediff.cli import build_parser, main, request_from_flags
from animatediff.errors import AnimateDiffError
from animatediff.planner import Planner, device_and_dtype, plan_run
from animatediff.prompt_config import entry_keys
from animatediff.request import Request, declarations, flag

RESOLVED = ("sample", "model", "control", "fps", "notes")  # what must agree whichever front end asked


def _flags(tmp_path) -> list[str]:
    return [
        "generate",
        "a red circle moving right",
        "--negative-prompt",
        "blurry",
        "--frames",
        "6",
        "--steps",
        "3",
        "--seed",
        "5",
        "--guidance-scale",
        "6.5",
        "--lora",
        "shapes-striped:0.5",
        "--motion-lora",
        "shapes-zoom-in:0.8",
        "--domain-adapter",
        "shapes-adapter",
        "--domain-adapter-scale",
        "0.7",
        "--scheduler",
        "euler",
        "--prompt-at",
        "3:a blue square",
        "--context-length",
        "4",
        "--context-overlap",
        "1",
        "--fps",
        "12",
        "-o",
        str(tmp_path / "flags.gif"),
    ]


def test_flags_a_prompt_config_and_an_api_request_plan_the_same_clip(tmp_path, monkeypatch):
    (from_flags,) = plan_run(request_from_flags(build_parser().parse_args(_flags(tmp_path))))
    entry = {
        "n_prompt": "blurry",
        "L": 6,
        "steps": 3,
        "seed": 5,
        "guidance_scale": 6.5,
        "lora_model_path": "shapes-striped",
        "lora_alpha": 0.5,
        "motion_module_lora_configs": [{"path": "shapes-zoom-in", "alpha": 0.8}],
        "adapter_lora_path": "shapes-adapter",
        "adapter_lora_scale": 0.7,
        "scheduler": "euler",
        "prompt_map": {0: "a red circle moving right", 3: "a blue square"},
        "context_length": 4,
        "context_overlap": 1,
        "fps": 12,
        "prompt_syntax": "a1111",  # as the command line and the app read prompts; configs read them as written
    }
    config = tmp_path / "prompts.yaml"
    config.write_text(yaml.safe_dump([entry]))
    (from_config,) = plan_run(Request(), config, tmp_path / "config-outputs")
    body = {
        "prompt": "a red circle moving right",
        "negative_prompt": "blurry",
        "frames": 6,
        "steps": 3,
        "seed": 5,
        "guidance_scale": 6.5,
        "loras": [{"name": "shapes-striped", "scale": 0.5}],
        "motion_loras": [{"name": "shapes-zoom-in", "scale": 0.8}],
        "domain_adapter": "shapes-adapter",
        "domain_adapter_scale": 0.7,
        "scheduler": "euler",
        "prompt_map": {"3": "a blue square"},
        "context_length": 4,
        "context_overlap": 1,
        "fps": 12,
        "format": "gif",
    }
    request = to_request(GenerateRequest(**body))
    device, dtype, reason = device_and_dtype("cpu", "auto")  # as the app's worker chooses them
    run = {"device": device, "dtype": dtype, "dtype_reason": reason}
    from_api = Planner(AppSources(scan(None), tmp_path)).plan(request, lambda sample: tmp_path / "api.gif", **run)
    for field in RESOLVED:
        assert getattr(from_flags, field) == getattr(from_config, field) == getattr(from_api, field), field
    assert from_flags.model.loras[0][1] == 0.5 and from_flags.sample.prompt_map == (
        (0, "a red circle moving right"),
        (3, "a blue square"),
    )
    sidecars = [run.sidecar() for run in (from_flags, from_config, from_api)]
    for sidecar in sidecars:
        sidecar.pop("request")
    assert sidecars[0] == sidecars[1] == sidecars[2]


def test_every_setting_is_an_option_a_config_key_an_api_field_and_recorded():
    options = {option for action in _generate_actions() for option in action.option_strings}
    keys, fields = entry_keys(), set(GenerateRequest.model_fields)
    for name, declared in declarations().items():
        if flag(name) is not None:
            assert flag(name) in options, name
        if declared.group != "runtime" and name != "output":
            assert name in keys, name
        assert (name in fields) == declared.api, name
    said = Request(prompt="a", loras=(("x", 0.5),), prompt_map=((0, "a"),), control_image=((2, "k.png"),), loop=True)
    assert said.record() == {
        "prompt": "a",
        "loras": [["x", 0.5]],
        "loop": True,
        "prompt_map": {"0": "a"},
        "control_image": [[2, "k.png"]],
    }
    json.dumps(said.record())  # the sidecar can hold it


def _generate_actions():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["generate"]._actions


def test_the_page_offers_exactly_the_declared_page_settings():
    assert sorted(PAGE_SETTINGS) == sorted(name for name, declared in declarations().items() if declared.page)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loras": (("x", -1e308),)}, "the scale of loras must be a number between -10 and 10"),
        ({"sparsectrl": ("x", 3.0)}, "the scale of sparsectrl must be a number between -2 and 2"),
        ({"frames": 100_000}, "frames must be between 1 and 4096"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number"),
        ({"family": "v9"}, "family: expected one of"),
        ({"width": 0}, "width must be at least 1; got 0"),
    ],
)
def test_a_request_refuses_values_beyond_their_declared_bounds(values, message):
    with pytest.raises(AnimateDiffError, match=message):
        Request(**values)


def test_a_huge_lora_scale_is_refused_on_the_command_line(tmp_path, capsys):
    assert main(["generate", "a cat", "--lora", "shapes-striped:-1e308", "-o", str(tmp_path / "o.gif")]) == 2
    assert "between -10 and 10" in capsys.readouterr().err and not (tmp_path / "o.gif").exists()


def test_a_missing_base_is_reported_before_the_motion_module(tmp_path, capsys):
    assert main(["generate", "a cat", "--base", str(tmp_path / "missing"), "-o", str(tmp_path / "o.gif")]) == 2
    error = capsys.readouterr().err
    assert f"base {tmp_path / 'missing'}: no such file or folder" in error and "motion module" not in error


def test_serve_without_the_app_extra_names_it(monkeypatch, capsys):
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "fastapi" else found(name))
    assert main(["serve"]) == 2
    error = capsys.readouterr().err
    assert "fastapi is not installed" in error and "animatediff[app]" in error and "Traceback" not in error


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    options = ServerOptions(outputs=tmp_path_factory.mktemp("outputs"), limits=Limits(frames=8, size=64, steps=4))
    with TestClient(create_app(options, page=False)) as client:
        yield client


@pytest.mark.parametrize(
    ("field", "text"),
    [("guidance_scale", "NaN"), ("guidance_scale", "Infinity"), ("fps", "1e999"), ("frames", "1e999")],
)
def test_numbers_json_cannot_hold_answer_422_naming_the_field(client, field, text):
    body = f'{{"prompt": "a red circle", "{field}": {text}}}'
    answer = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert [item["loc"][-1] for item in answer.json()["detail"]] == [field]


def test_a_huge_lora_scale_answers_422(client):
    answer = client.post("/api/generate", json={"prompt": "a", "loras": [{"name": "shapes-striped", "scale": -1e308}]})
    assert answer.status_code == 422 and "between -10 and 10" in answer.text


def test_every_option_is_documented():
    from pathlib import Path

    documented = Path(__file__).parents[1].joinpath("docs", "reference.md").read_text()
    assert [flag(name) for name in declarations() if flag(name) and f"`{flag(name)}" not in documented] == []
