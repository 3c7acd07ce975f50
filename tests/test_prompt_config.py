"""Official prompt configs: the schema unchanged, list-or-scalar fields, paths, validation before loading."""

import json
import shutil

import pytest
import yaml

from animatediff import ConfigError
from animatediff.cli import main
from animatediff.planner import plan_run
from animatediff.request import Request
from helpers import GOLDEN


def planned(config, base):
    """Every output the config's clips make on `base`, planned as `generate --config` plans them."""
    return plan_run(Request(base=str(base)), config, output_dir=config.parent / "outputs")


def write_config(folder, entries, name="prompts.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(entries))
    return path


@pytest.fixture
def files(tmp_path, tiny_motion_module_file):
    """A config folder with a motion module, and an unrelated working directory."""
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(tiny_motion_module_file, folder / "mm.safetensors")
    return folder


def test_scalars_and_lists_broadcast_like_the_official_script(files, tiny_base):
    config = write_config(
        files,
        [
            {
                "motion_module": "mm.safetensors",
                "prompt": ["a cat", "a dog", "a fox"],
                "n_prompt": ["blurry"],
                "seed": [1, 2, 3],
                "steps": 4,
                "guidance_scale": 6.0,
                "W": 32,
                "H": 24,
                "L": 5,
            }
        ],
    )
    samples = [run.sample for run in planned(config, tiny_base)]
    assert [(s.prompt, s.negative_prompt, s.seed) for s in samples] == [
        ("a cat", "blurry", 1),
        ("a dog", "blurry", 2),
        ("a fox", "blurry", 3),
    ]
    assert {(s.steps, s.guidance_scale, s.width, s.height, s.frames) for s in samples} == {(4, 6.0, 32, 24, 5)}


def test_one_seed_for_all_and_minus_one_for_random(files, tiny_base):
    config = write_config(files, [{"motion_module": "mm.safetensors", "prompt": ["a", "b"], "seed": -1}])
    samples = [run.sample for run in planned(config, tiny_base)]
    seeds = [s.seed for s in samples]
    assert all(0 <= seed < 2**31 for seed in seeds) and seeds != [run.sample.seed for run in planned(config, tiny_base)]
    assert len(set(seeds)) == 1  # one seed for every prompt
    assert samples[0].steps == 25  # the official default
    assert (samples[0].width, samples[0].height) == (16, 16)  # the tiny base's own size, as with flags


def test_a_list_of_motion_modules_makes_one_job_each(files, tiny_base):
    shutil.copy(files / "mm.safetensors", files / "mm2.safetensors")
    config = write_config(files, [{"motion_module": ["mm.safetensors", "mm2.safetensors"], "prompt": ["a"]}])
    runs = planned(config, tiny_base)
    assert [run.model.motion_module.name for run in runs] == ["mm.safetensors", "mm2.safetensors"]
    assert runs[0].sample.seed == runs[1].sample.seed  # a random seed is drawn once for every module


def test_paths_resolve_against_the_working_directory_first(files, tiny_base, tmp_path, monkeypatch):
    working = tmp_path / "work"
    working.mkdir()
    (working / "mm.safetensors").write_bytes((files / "mm.safetensors").read_bytes())
    config = write_config(files, [{"motion_module": "mm.safetensors", "prompt": ["a"]}])
    monkeypatch.chdir(working)
    assert planned(config, tiny_base)[0].model.motion_module.resolve() == working / "mm.safetensors"
    (working / "mm.safetensors").unlink()
    assert planned(config, tiny_base)[0].model.motion_module == files / "mm.safetensors"


def test_models_and_scales_are_read(files, tiny_base):
    for name in ("adapter.ckpt", "zoom.ckpt", "style.safetensors", "personal.safetensors"):
        (files / name).write_bytes(b"")
    config = write_config(
        files,
        [
            {
                "motion_module": "mm.safetensors",
                "prompt": ["a"],
                "adapter_lora_path": "adapter.ckpt",
                "adapter_lora_scale": 0.5,
                "motion_module_lora_configs": [{"path": "zoom.ckpt", "alpha": 0.7}],
                "lora_model_path": "style.safetensors",
                "lora_alpha": 0.6,
                "dreambooth_path": "personal.safetensors",
            }
        ],
    )
    model = planned(config, tiny_base)[0].model
    assert (model.domain_adapter.name, model.domain_adapter_scale) == ("adapter.ckpt", 0.5)
    assert [(p.name, a) for p, a in model.motion_loras] == [("zoom.ckpt", 0.7)]
    assert [(p.name, a) for p, a in model.loras] == [("style.safetensors", 0.6)]
    assert model.dreambooth.name == "personal.safetensors"


def test_inference_config_sets_motion_module_and_scheduler(monkeypatch):
    monkeypatch.chdir(GOLDEN)
    (run,) = planned(GOLDEN / "configs" / "prompt-v2.yaml", GOLDEN / "base_model")
    settings = run.model.motion_module_settings
    assert settings == {
        "image_norm_over_frames": False,
        "num_attention_heads": 8,
        "num_transformer_blocks": 1,
        "position_encoding": True,
        "max_frames": 32,
        "mid_block": True,
    }
    assert run.model.scheduler["steps_offset"] == 1 and run.model.scheduler["clip_sample"] is False


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"motion_module": "missing.ckpt", "prompt": ["a"]}, "entry 0, 'motion_module': missing.ckpt: no such file"),
        (
            {"motion_module": "mm.safetensors", "prompt": ["a", "b"], "n_prompt": ["x", "y", "z"]},
            "'n_prompt': expected 1 or 2 negative prompts, got 3",
        ),
        (
            {"motion_module": "mm.safetensors", "prompt": ["a", "b"], "seed": [1, 2, 3]},
            "'seed': expected one whole number or 2 of them",
        ),
        ({"motion_module": "mm.safetensors", "prompt": ["a"], "W": "wide"}, "'W': expected a whole number"),
        ({"motion_module": "mm.safetensors", "prompt": []}, "'prompt': expected at least one prompt"),
        ({"motion_module": "mm.safetensors", "prompt": ["a"], "sampler": "ddim"}, "unknown field(s) sampler"),
        (
            {
                "motion_module": "mm.safetensors",
                "prompt": ["a"],
                "controlnet_path": "mm.safetensors",
                "controlnet_image_indexs": [0, -1],
            },
            "2 keyframe indices (controlnet_image_indexs) but 0 images",
        ),
    ],
)
def test_bad_entries_are_named(files, tiny_base, entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        planned(write_config(files, [entry]), tiny_base)


def test_whole_config_is_checked_before_any_weights_load(files, tiny_base, tmp_path, capsys):
    config = write_config(
        files,
        [
            {"motion_module": "mm.safetensors", "prompt": ["a"], "W": 16, "H": 16, "L": 2, "steps": 1},
            {"motion_module": "missing.ckpt", "prompt": ["b"]},
        ],
    )
    code = main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(tmp_path / "o")])
    assert code == 2
    assert "entry 1, 'motion_module': missing.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was generated for entry 0


def test_config_run_writes_one_output_per_sample(files, tiny_base, tmp_path):
    config = write_config(
        files,
        [
            {
                "motion_module": "mm.safetensors",
                "prompt": ["a red cat", "a blue dog"],
                "seed": [5, 6],
                "W": 16,
                "H": 16,
                "L": 3,
                "steps": 2,
            }
        ],
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "generate",
                "--config",
                str(config),
                "--base",
                str(tiny_base),
                "--output-dir",
                str(out),
                "--format",
                "webp",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "000-a-red-cat-5.webp",
        "000-a-red-cat-5.webp.json",
        "001-a-blue-dog-6.webp",
        "001-a-blue-dog-6.webp.json",
    ]
    assert json.loads((out / "001-a-blue-dog-6.webp.json").read_text())["prompt"] == "a blue dog"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"lora_model_path": "mm.safetensors", "lora_alpha": 11},
            "'lora_alpha': the scale of loras must be a number between -10 and 10",
        ),
        (
            {"motion_module_lora_configs": [{"path": "mm.safetensors", "alpha": float("nan")}]},
            "'motion_module_lora_configs': expected a number",
        ),
        (
            {"controlnet_path": "mm.safetensors", "controlnet_scale": 3},
            "'controlnet_scale': the scale of sparsectrl must be a number between -2 and 2",
        ),
        (
            {"adapter_lora_path": "mm.safetensors", "adapter_lora_scale": -1e308},
            "'adapter_lora_scale': domain_adapter_scale must be between -2 and 2",
        ),
    ],
)
def test_official_scales_are_bounded_as_the_flags_are(files, tiny_base, keys, message):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], **keys}
    with pytest.raises(ConfigError, match=message):
        planned(write_config(files, [entry]), tiny_base)


def test_a_lora_alpha_within_the_lora_bound_is_taken(files, tiny_base):
    entry = {"motion_module": "mm.safetensors", "prompt": ["a"], "lora_model_path": "mm.safetensors", "lora_alpha": 3}
    (run,) = planned(write_config(files, [entry]), tiny_base)  # planning reads no LoRA; loading would
    assert [(path.name, scale) for path, scale in run.model.loras] == [("mm.safetensors", 3.0)]
