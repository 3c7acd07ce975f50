"""The repository stops growing: shipped weights in float16, and a retrain that changes nothing rewrites nothing."""

import os

import torch
from safetensors.torch import load_file

from animatediff.cli import main
from animatediff.embedded import FOLDER
from animatediff.shapes.recipe import export

SMOKE = ["--steps-scale", "0.002", "--data-scale", "0.002"]


def test_every_shipped_weight_is_stored_in_float16():
    files = list(FOLDER.rglob("*.safetensors"))
    assert len(files) == 13
    for path in files:
        dtypes = {value.dtype for value in load_file(path).values() if value.is_floating_point()}
        assert dtypes == {torch.float16}, path


def test_the_same_recipe_and_seed_export_byte_identical_models_and_nothing_is_rewritten(tmp_path):
    for name in ("one", "two"):
        assert (
            main(["shapes", "retrain", str(tmp_path / name), *SMOKE, "--export", str(tmp_path / f"{name}-models")]) == 0
        )

    def files(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    one, two = files(tmp_path / "one-models"), files(tmp_path / "two-models")
    assert one.keys() == two.keys() and len(one) == 23
    assert [name for name in one if name != "recipe.json" and one[name] != two[name]] == []
    assert one["recipe.json"] != two["recipe.json"]  # the timings differ; they are not part of the models

    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (tmp_path / "one-models").rglob("*")}
    export(tmp_path / "two", tmp_path / "one-models")  # the same models again: nothing is rewritten
    after = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (tmp_path / "one-models").rglob("*")}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_an_export_target_holding_other_files_is_refused(tmp_path, capsys):
    target = tmp_path / "models"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    work = tmp_path / "work"
    assert main(["shapes", "retrain", str(work), *SMOKE, "--export", str(target)]) == 2
    assert "holds files this program did not write" in capsys.readouterr().err
    assert (target / "notes.txt").read_text() == "mine" and os.listdir(target) == ["notes.txt"]
