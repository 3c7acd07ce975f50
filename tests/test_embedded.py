"""The models shipped inside the package: they load, generate from short names, are in the official
layouts, and the recipe that made them runs end to end (a smoke retrain with a tiny fraction of it)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from animatediff import read_video
from animatediff.cli import main
from animatediff.embedded import FOLDER, MODELS, resolve
from animatediff.errors import ConfigError
from animatediff.formats import identify
from animatediff.shapes.recipe import (
    DATASETS,
    EXPORT,
    GPU_DATASETS,
    GPU_PLAN,
    PLAN,
    PLANS,
    folder_recipe,
    render_datasets,
    retrain,
    stage_result,
)
from lab import ablations


def test_every_embedded_model_is_present_and_listed(capsys):
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for name, model in MODELS.items():
        assert model.path.exists(), name
        assert name in listed and model.flag in listed
    assert "[missing]" not in listed
    assert sorted({model.file.split("/")[0] for model in MODELS.values()}) == sorted(EXPORT.values())


def test_shipped_configs_name_no_path_of_the_machine_that_trained_them():
    configs = list(FOLDER.rglob("config.json"))
    assert len(configs) == 5  # the text encoder, the base's UNet and VAE, the DreamBooth UNet, the ControlNet
    assert all("_name_or_path" not in json.loads(path.read_text()) for path in configs)


def test_the_shipped_weights_fit_the_size_budget():
    total = sum(path.stat().st_size for path in FOLDER.rglob("*") if path.is_file())
    assert total <= 40 * 2**20, f"{total / 2**20:.1f} MiB"


def test_shipped_files_are_in_the_layouts_real_checkpoints_use():
    expected = {
        "shapes-motion": "motion_module",
        "shapes-adapter": "domain_adapter",
        "shapes-zoom-in": "motion_lora",
        "shapes-pan-left": "motion_lora",
        "shapes-striped": "image_lora",
    }
    for name, kind in expected.items():
        info = identify(MODELS[name].path)
        assert info.kind == kind, (name, info.description)
    motion = identify(MODELS["shapes-motion"].path)
    assert motion.description == "a motion module (official layout)" and motion.details["version"] == "v3"
    base = MODELS["shapes"].path
    assert {p.name for p in base.iterdir()} >= {"unet", "vae", "text_encoder", "tokenizer", "model_index.json"}
    assert (MODELS["shapes-outlined"].path / "config.json").is_file()  # a diffusers UNet folder


def test_default_generate_needs_no_flags(tmp_path, capsys):
    output = tmp_path / "out.gif"
    assert (
        main(
            [
                "generate",
                "a red circle moving right on a blue background",
                "-o",
                str(output),
                "--steps",
                "2",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    frames = read_video(output)
    assert frames.shape == (16, 32, 32, 3)
    settings = json.loads(output.with_name("out.gif.json").read_text())
    assert settings["base"] == str(MODELS["shapes"].path.resolve())
    assert settings["motion_module"] == str(MODELS["shapes-motion"].path.resolve())


def test_personalized_models_and_motion_loras_by_short_name(tmp_path):
    runs = {
        "dreambooth": ["--dreambooth", "shapes-outlined"],
        "lora": ["--lora", "shapes-striped:0.8"],
        "motion_lora": ["--motion-lora", "shapes-zoom-in", "--motion-lora", "shapes-pan-left:0.5"],
        "adapter": ["--domain-adapter", "shapes-adapter", "--domain-adapter-scale", "0.5"],
    }
    for name, flags in runs.items():
        output = tmp_path / f"{name}.gif"
        assert (
            main(
                [
                    "generate",
                    "a green star on a white background",
                    "-o",
                    str(output),
                    "--steps",
                    "2",
                    "--frames",
                    "4",
                    "--seed",
                    "2",
                    *flags,
                ]
            )
            == 0
        )
        assert read_video(output).shape == (4, 32, 32, 3)


def test_short_name_given_to_the_wrong_flag_is_refused(tmp_path, capsys):
    code = main(["generate", "a red circle", "-o", str(tmp_path / "x.gif"), "--lora", "shapes-motion"])
    assert code == 2
    assert "'shapes-motion' is the embedded motion module" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="goes with --base"):
        resolve("shapes", "--dreambooth")
    assert resolve("some/file.safetensors", "--lora").name == "file.safetensors"


SMOKE = ["--steps-scale", "0.002", "--data-scale", "0.002"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """A smoke retrain: every stage of the recipe for a step or a few, on a few images and clips."""
    folder = tmp_path_factory.mktemp("retrain")
    work, models = folder / "work", folder / "models"
    assert main(["shapes", "retrain", str(work), *SMOKE, "--export", str(models)]) == 0
    return work, models


def test_smoke_retrain_runs_every_stage_and_its_export_generates(smoke, tmp_path, capsys):
    work, models = smoke
    assert sorted(p.name for p in models.iterdir()) == sorted([*EXPORT.values(), "recipe.json"])
    recipe = json.loads((models / "recipe.json").read_text())
    assert set(recipe) == {plan.name for plan in PLAN}
    assert all(entry["seconds"] > 0 and entry["steps"] >= 1 for entry in recipe.values())
    outlined = load_file(models / "outlined" / "diffusion_pytorch_model.safetensors")
    assert {value.dtype for value in outlined.values()} == {torch.float16}  # every weight ships in half
    base_unet = load_file(models / "base" / "unet" / "diffusion_pytorch_model.safetensors")
    assert {value.dtype for value in base_unet.values()} == {torch.float16}
    for config in models.rglob("config.json"):  # no path of the machine that trained them
        assert "_name_or_path" not in json.loads(config.read_text()), config
    output = tmp_path / "smoke.gif"
    assert (
        main(
            [
                "generate",
                "a red circle moving right on a blue background",
                "-o",
                str(output),
                "--base",
                str(models / "base"),
                "--motion-module",
                str(models / "motion_module.safetensors"),
                "--dreambooth",
                str(models / "outlined"),
                "--lora",
                str(models / "striped.safetensors"),
                "--motion-lora",
                str(models / "motion_lora_zoom_in.safetensors"),
                "--frames",
                "4",
                "--steps",
                "2",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert read_video(output).shape == (4, 32, 32, 3)
    # a second run resumes: every stage is done, nothing trains again
    capsys.readouterr()
    assert main(["shapes", "retrain", str(work), "--resume", *SMOKE]) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="holds an earlier retrain"):
        retrain(work)


def test_results_and_ablations_reports_run_on_a_retrain(smoke, tmp_path, monkeypatch):
    from lab.report import write_results

    work, models = smoke
    monkeypatch.setattr(ablations, "MODULE_STEPS", 1)
    monkeypatch.setattr(ablations, "LORA_STEPS", 1)
    monkeypatch.setattr(ablations, "CLIP_COUNTS", (5, 8))
    monkeypatch.setattr(ablations, "RANKS", (2, 4))
    output = tmp_path / "ablations.json"
    ablations.run_ablations(work, output, seeds=[1], steps=2, max_prompts=1, only=["modules"])
    modules = json.loads(output.read_text())
    assert set(modules) == {"budgets", "models", "modules"}
    assert modules["models"]["motion_module"] is not None and len(set(modules["models"].values())) == 3
    with pytest.raises(ConfigError, match="lacks the tables adapter, motion_lora"):
        ablations.format_ablations(modules)
    tables = ablations.run_ablations(work, output, seeds=[1], steps=2, max_prompts=1)  # makes the other two
    data = json.loads(tables.read_text())
    assert data["modules"] == modules["modules"]  # kept, not made again
    assert data["budgets"]["shipped_motion_module"] == "4000 steps × 4 clips"  # the cpu recipe's module
    assert [row["arm"] for row in data["adapter"]][-2:] == [
        "transformer (short budget), α = 0",
        "transformer, no adapter (short budget), α = 0",
    ]
    assert [row["arm"] for row in data["modules"]] == [arm.name for arm in ablations.module_arms()]
    assert len(data["motion_lora"]) == 1 + 2 * 2 and data["motion_lora"][1]["bytes"] > 0
    sizes = {(row["rank"], row["clips"]): row["bytes"] for row in data["motion_lora"][1:]}
    assert sizes[(4, 5)] > sizes[(2, 5)]  # storage grows with the rank
    alphas = [row for row in data["adapter"] if row["arm"].startswith("shipped")]
    assert len(alphas) == 3 and all(0 <= row["watermark"][0] <= 1 for row in alphas)
    parameters = {row["arm"]: row["parameters"] for row in data["modules"]}
    assert parameters["transformer, no position encoding"] == parameters["transformer"]  # the table is a buffer
    report = write_results(
        tmp_path / "results.md", tmp_path / "media", [1], ablations=tables, steps=2, models=models, max_prompts=1
    )
    text = report.read_text()
    for heading in (
        "| base + motion module",
        "## 2. Domain adapter",
        "## 3. Motion module design",
        "## 4. MotionLoRA",
        "## 5. Position encoding",
        "## Training",
        "## Video to video",
        "| LoRA 'striped', strength 0.6 | style |",
        "## ControlNet on edges",
        "| ControlNet 'shapes-edges' | edge F1 |",
        "| no ControlNet, for contrast | edge F1 |",
        "## Image to video (SparseCtrl)",
        "| SparseCtrl, keyframe 0 | first text |",
        "| keyframes through the autoencoder alone, the ceiling | last text |",
        "| SparseCtrl, keyframes 0 and 15 | last diff |",
    ):
        assert heading in text, heading
    assert "strength 0.3" not in text  # 2 steps at strength 0.3 would run none of them: that row is left out
    assert "## Frame interpolation" in text
    # grid, 64 frames, v2v, ControlNet, interpolation (its input and ×4),
    assert len(list((tmp_path / "media").glob("*.gif"))) == 5 + 3 + 2 + 2 + 2 + 2
    assert (tmp_path / "media" / "sparsectrl-keyframe.png").is_file()  # SparseCtrl (its keyframe, two clips)
    assert "measured on an earlier retrain" not in text  # the smoke retrain's own base
    data["models"]["motion_module"] = "0" * 16  # measured with another motion module than the shipped one
    data["budgets"]["shipped_motion_module"] = "1 steps × 1 clips"  # and a shorter one: only stated, not used
    data["modules"][0]["motion"] = data["adapter"][0]["motion"] = [-1.0, 0.0]  # marks: kept or made again?
    tables.write_text(json.dumps(data))
    from lab.report import BENCH_MARK

    measured = f"{BENCH_MARK}\n\n## Step caching\n\n| setting | speed |\n|---|---|\n| fast | 2.13× |\n"
    report.write_text(report.read_text() + measured)  # what a bench script adds below the mark
    report = write_results(
        tmp_path / "results.md", tmp_path / "media", [1], ablations=tables, steps=2, models=models, max_prompts=1
    )
    assert "measured on an earlier retrain" in report.read_text()
    assert report.read_text().endswith(measured) and report.read_text().count(BENCH_MARK) == 1  # kept, once
    ablations.run_ablations(work, output, seeds=[1], steps=2, max_prompts=1, only=["adapter"])
    remade = json.loads(output.read_text())
    assert remade["modules"][0]["motion"] == [-1.0, 0.0]  # the short-budget modules use no shipped module
    assert remade["adapter"][0]["motion"][0] >= 0 and "motion_lora" not in remade  # these use it: remade
    assert remade["models"] == modules["models"]
    assert remade["budgets"]["shipped_motion_module"] == "4000 steps × 4 clips"  # the budget stated now


def test_ablation_arms_made_on_other_models_are_kept_but_not_reused(smoke, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(smoke[0], work, ignore=shutil.ignore_patterns("ablation-*"))  # the retrain, no arms yet
    monkeypatch.setattr(ablations, "MODULE_STEPS", 1)
    output = tmp_path / "ablations.json"

    def arms():
        return {path: path.read_bytes() for path in (work / "runs").glob("ablation-*/motion_module.safetensors")}

    ablations.run_ablations(work, output, seeds=[1], steps=2, max_prompts=1, only=["modules"])
    first = arms()
    assert len(first) == len(ablations.module_arms())
    adapter = stage_result(work, PLANS["adapter"])  # a retrain's new adapter, in the same folder
    save_file({name: value * 0.5 for name, value in load_file(adapter).items()}, adapter)
    ablations.run_ablations(work, output, seeds=[1], steps=2, max_prompts=1, only=["modules"])
    second = arms()
    assert len(second.keys() - first.keys()) == len(ablations.module_arms())  # trained anew on the new adapter
    assert all(second[path] == content for path, content in first.items())  # the earlier arms are untouched


def ground_truth(work, name):
    """The ground-truth entries of dataset `name` of the retrain in `work`."""
    return [json.loads(line) for line in (work / "data" / name / "ground_truth.jsonl").read_text().splitlines()]


def stage_config_of(work, name):
    """The training config the retrain in `work` wrote for stage `name`."""
    return yaml.safe_load((work / "configs" / f"{name}.yaml").read_text())


def dataset_styles(work, name):
    """The styles in dataset `name` of the retrain in `work`."""
    return {entry.get("style") for entry in ground_truth(work, name)}


def autoencoder_styles(work):
    """The styles the autoencoder of the retrain in `work` learned from."""
    assert Path(stage_config_of(work, "vae")["data"]["path"]).name == "autoencoder"
    return dataset_styles(work, "autoencoder")


def test_both_recipes_learn_the_autoencoder_from_every_style(smoke):
    # the personalized styles have to survive the latents, so the autoencoder sees them (the base does not)
    assert autoencoder_styles(smoke[0]) == {None, "outlined", "striped"}
    assert dataset_styles(smoke[0], "images") == {None}


def test_the_shipped_base_is_the_base_fine_tuned_on_the_same_scenes_with_shadow_coloured_trails(smoke):
    work = smoke[0]

    assert Path(stage_config_of(work, "shadow_trails")["base"]) == stage_result(work, PLANS["base"])
    fine_tuned = stage_result(work, PLANS["shadow_trails"])
    for name in ("outlined", "striped", "adapter", "motion", "zoom_in", "pan_left"):
        assert Path(stage_config_of(work, name)["base"]) == fine_tuned, name

    bright, dark = ground_truth(work, "images"), ground_truth(work, "shadow_images")
    assert [entry["caption"] for entry in bright] == [entry["caption"] for entry in dark]
    assert {entry["trail_colour"] for entry in bright} == {"object"}
    assert {entry["trail_colour"] for entry in dark} == {"shadow"}

    def differs(file):
        pixels = [np.asarray(Image.open(work / "data" / name / file)) for name in ("images", "shadow_images")]
        return not np.array_equal(*pixels)

    # only a translation's trail changes colour; every other picture is the same
    moving = {entry["file"] for entry in bright if (entry["motion"] or "").startswith("moving")}
    changed = {entry["file"] for entry in bright if differs(entry["file"])}
    assert changed and changed <= moving
    for name in ("clips", "outlined", "striped"):
        assert {entry["trail_colour"] for entry in ground_truth(work, name)} == {"shadow"}, name


def test_the_dreambooth_stage_keeps_the_base_prior_with_the_base_images(smoke):
    work = smoke[0]

    assert Path(stage_config_of(work, "outlined")["prior_data"]["path"]) == work / "data" / "shadow_images"
    assert dataset_styles(work, Path(stage_config_of(work, "outlined")["data"]["path"]).name) == {"outlined"}
    assert dataset_styles(work, "shadow_images") == {None}  # the class images: plain shapes, as the base drew them
    for name in ("striped", "adapter"):  # the LoRA keeps its style better without it (docs/shapes-model.md)
        assert "prior_data" not in stage_config_of(work, name), name


def test_datasets_rendered_in_parallel_are_the_ones_rendered_one_after_another(tmp_path):
    def files(folder: Path) -> dict[str, bytes]:
        return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    render_datasets(tmp_path / "one", data_scale=0.002, processes=1)
    render_datasets(tmp_path / "two", data_scale=0.002, processes=2)
    one = files(tmp_path / "one" / "data")
    assert {name.split("/")[0] for name in one} == set(DATASETS)
    assert files(tmp_path / "two" / "data") == one


def test_a_moved_retrain_resumes_but_one_begun_on_other_inputs_is_refused(smoke, tmp_path):
    work = tmp_path / "moved"
    shutil.copytree(smoke[0], work)
    assert retrain(work, resume=True, steps_scale=0.002, data_scale=0.002) == {}  # every stage done
    config = work / "configs" / "adapter.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["base"] = str(stage_result(smoke[0], PLANS["base"]))  # as before the shadow_trails stage
    config.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match="stage adapter of .* was trained on other inputs"):
        retrain(work, resume=True, steps_scale=0.002, data_scale=0.002)


def test_a_retrain_whose_data_were_rendered_otherwise_is_refused(smoke, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(smoke[0], work)
    rescaled = r"dataset images of .* rendered with other settings .*\(data_scale 0\.002, not 0\.004\)"
    with pytest.raises(ConfigError, match=rescaled):
        retrain(work, resume=True, steps_scale=0.002, data_scale=0.004)  # resumed at another scale
    render_datasets(work, data_scale=None)  # at the scale it was rendered with: nothing to do
    monkeypatch.setitem(DATASETS, "clips", {**DATASETS["clips"], "trail_colour": "object"})  # the recipe changed
    with pytest.raises(ConfigError, match=r"dataset clips of .* \(see .*clips.settings\.json\)"):
        retrain(work, resume=True, steps_scale=0.002, data_scale=0.002)
    with pytest.raises(ConfigError, match="dataset clips"):
        ablations.run_ablations(work, tmp_path / "ablations.json", seeds=[1], steps=2, max_prompts=1)


def test_gpu_recipe_trains_on_more_clips_and_keeps_its_folder_to_itself(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["shapes", "retrain", str(work), "--recipe", "gpu", *SMOKE]) == 0
    assert autoencoder_styles(work) == {None, "outlined", "striped"}
    clips = (work / "data" / "clips" / "captions.jsonl").read_text().splitlines()
    assert len(clips) == round(GPU_DATASETS["clips"]["count"] * 0.002)  # the gpu recipe's larger clip set
    timings = json.loads((work / "timings.json").read_text())
    assert set(timings) == {plan.name for plan in GPU_PLAN}
    with pytest.raises(ConfigError, match="begun with the gpu recipe"):
        retrain(work, resume=True)
    shipped = ablations.table_budgets(folder_recipe(work))["shipped_motion_module"]
    assert shipped == "1200 steps × 32 clips"  # the ablation tables state the module this folder trained
