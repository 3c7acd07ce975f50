"""`--scheduler`: every sampler users pick, on the release's own noise schedule; a seed repeats."""

import json

import numpy as np
import pytest

from animatediff import read_video
from animatediff.cli import main
from animatediff.families import SCHEDULERS, make_scheduler

SMALL = ["--frames", "3", "--width", "16", "--height", "16", "--steps", "4", "--device", "cpu"]


def run(tiny_base, motion_module, output, *extra):
    return main(
        [
            "generate",
            "a red circle",
            "--base",
            str(tiny_base),
            "--motion-module",
            str(motion_module),
            *SMALL,
            "-o",
            str(output),
            *extra,
        ]
    )


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_samples_and_repeats_its_seed(tmp_path, tiny_base, tiny_motion_module_file, name):
    for copy in ("a", "b"):
        assert run(tiny_base, tiny_motion_module_file, tmp_path / copy, "--scheduler", name, "--seed", "7") == 0
    first, second = read_video(tmp_path / "a"), read_video(tmp_path / "b")
    assert np.array_equal(first, second) and first.std() > 1
    settings = json.loads((tmp_path / "a.json").read_text())["scheduler"]
    assert settings["name"] == name and settings["class"] == SCHEDULERS[name][0]
    assert (settings["beta_start"], settings["beta_end"], settings["beta_schedule"]) == (0.00085, 0.012, "linear")


def test_schedulers_are_the_named_samplers_on_the_official_betas():
    schedule = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "linear",
        "steps_offset": 1,
        "clip_sample": False,
    }
    karras = make_scheduler("dpm++2m-karras", schedule)
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert make_scheduler("dpm++sde-karras", schedule).config.algorithm_type == "sde-dpmsolver++"
    for name in SCHEDULERS:
        config = make_scheduler(name, schedule).config
        assert (config.beta_start, config.beta_end, config.beta_schedule) == (0.00085, 0.012, "linear"), name


def test_samplers_differ_and_an_unknown_one_is_refused(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    assert run(tiny_base, tiny_motion_module_file, tmp_path / "ddim", "--seed", "7") == 0
    assert run(tiny_base, tiny_motion_module_file, tmp_path / "euler", "--seed", "7", "--scheduler", "euler") == 0
    assert np.abs(read_video(tmp_path / "ddim").astype(int) - read_video(tmp_path / "euler")).mean() > 0.5
    capsys.readouterr()
    assert run(tiny_base, tiny_motion_module_file, tmp_path / "x", "--scheduler", "plms") == 2
    assert "argument --scheduler: invalid choice: 'plms'" in capsys.readouterr().err
