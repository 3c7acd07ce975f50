"""Official and diffusers layouts of motion modules and MotionLoRAs load to the same weights and frames."""

import os

import numpy as np
import pytest
import torch
from diffusers import MotionAdapter
from safetensors.torch import save_file

from animatediff import AnimateDiffPipeline, load_base, load_motion_module, read_state_dict
from animatediff.cli import main
from animatediff.embedded import MODELS
from animatediff.formats import convert_checkpoint, identify, official_to_diffusers
from helpers import GOLDEN, random_motion_module, tiny_config

VERSIONS = {
    "v1": dict(mid_block=False, max_frames=24),
    "v2": dict(mid_block=True, max_frames=32),
    "v3": dict(mid_block=False, max_frames=32),
}


def official_state(version, seed=0):
    return random_motion_module(tiny_config(**VERSIONS[version]), seed=seed).state_dict()


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_official_files_of_every_version_load_with_their_settings(tmp_path, version, suffix):
    state = official_state(version)
    path = tmp_path / f"mm_{version}{suffix}"
    torch.save(state, path) if suffix == ".ckpt" else save_file(state, path)
    module = load_motion_module(path)
    assert module.config.mid_block == VERSIONS[version]["mid_block"]
    assert module.config.max_frames == VERSIONS[version]["max_frames"]
    assert module.config.image_norm_over_frames == (version == "v1")
    assert not module.config.norm_over_frames
    assert_same_weights(module.state_dict(), state)
    assert identify(path).details["version"] == version


def test_diffusers_layout_file_loads_to_the_official_weights(tmp_path):
    state = official_state("v2")
    save_file(official_to_diffusers(state), tmp_path / "diffusers.safetensors")
    info = identify(tmp_path / "diffusers.safetensors")
    assert (info.kind, info.layout, info.details["version"]) == ("motion_module", "diffusers", "v2")
    assert_same_weights(load_motion_module(tmp_path / "diffusers.safetensors").state_dict(), state)


def test_motion_adapter_folder_saved_by_diffusers_loads_to_the_official_weights(tmp_path):
    state = official_state("v3")
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        use_motion_mid_block=False,
        motion_max_seq_length=32,
        motion_norm_num_groups=32,
    )
    adapter.load_state_dict(official_to_diffusers(state))
    adapter.save_pretrained(tmp_path / "adapter")
    module = load_motion_module(tmp_path / "adapter")
    assert not module.config.mid_block
    assert_same_weights(module.state_dict(), state)


def test_both_layouts_give_identical_frames(tmp_path):
    state = read_state_dict(GOLDEN / "mm_tiny_v2.ckpt")
    save_file(official_to_diffusers(state), tmp_path / "diffusers.safetensors")
    settings = dict(num_frames=4, height=32, width=32, steps=2, seed=9, progress=False)
    frames = []
    for path in (GOLDEN / "mm_tiny_v2.ckpt", tmp_path / "diffusers.safetensors"):
        pipeline = AnimateDiffPipeline.from_components(load_base(GOLDEN / "base_model"), load_motion_module(path))
        frames.append(pipeline("a wave", **settings))
    np.testing.assert_array_equal(frames[0], frames[1])


@pytest.mark.parametrize("target", ["mm.safetensors", "adapter_folder"])
def test_convert_round_trip_is_bit_exact(tmp_path, target):
    source = tmp_path / "official.ckpt"
    torch.save(official_state("v2"), source)
    assert main(["convert", str(source), str(tmp_path / target), "--to", "diffusers"]) == 0
    assert identify(tmp_path / target).layout == "diffusers"
    assert main(["convert", str(tmp_path / target), str(tmp_path / "back.safetensors"), "--to", "official"]) == 0
    assert_same_weights(read_state_dict(tmp_path / "back.safetensors"), read_state_dict(source))


def test_converted_folder_is_a_diffusers_motion_adapter(tmp_path):
    source = tmp_path / "official.safetensors"
    save_file(official_state("v2"), source)
    convert_checkpoint(source, tmp_path / "adapter", "diffusers")
    adapter = MotionAdapter.from_pretrained(tmp_path / "adapter")
    assert adapter.config.use_motion_mid_block and adapter.config.motion_max_seq_length == 32
    assert_same_weights(adapter.state_dict(), official_to_diffusers(official_state("v2")))


def motion_lora_state(rank=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in official_state("v2").items():
        if ".attention_blocks." in name and name.endswith(("to_q.weight", "to_out.0.weight")):
            layer, projection = name.rsplit(".to_", 1)
            projection = projection.removesuffix(".weight").removesuffix(".0")
            prefix = f"{layer}.processor.to_{projection}_lora"
            state[f"{prefix}.down.weight"] = torch.randn(rank, value.shape[1], generator=generator)
            state[f"{prefix}.up.weight"] = torch.randn(value.shape[0], rank, generator=generator)
    return state


def test_motion_lora_round_trip_is_bit_exact(tmp_path):
    torch.save(motion_lora_state(), tmp_path / "v2_lora_ZoomIn.ckpt")
    convert_checkpoint(tmp_path / "v2_lora_ZoomIn.ckpt", tmp_path / "diffusers.safetensors", "diffusers")
    diffusers_keys = list(read_state_dict(tmp_path / "diffusers.safetensors"))
    assert all(key.startswith("unet.") and ".temporal_transformer." not in key for key in diffusers_keys)
    assert any(".attn1.processor.to_q_lora.down.weight" in key for key in diffusers_keys)
    convert_checkpoint(tmp_path / "diffusers.safetensors", tmp_path / "back.safetensors", "official")
    assert_same_weights(read_state_dict(tmp_path / "back.safetensors"), motion_lora_state())


def test_inspect_names_each_kind(tmp_path, capsys):
    torch.save(motion_lora_state(rank=4), tmp_path / "motion_lora.ckpt")
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, tmp_path / "image_lora.ckpt")
    expectations = {
        GOLDEN / "mm_tiny_v2.ckpt": [
            "a motion module (official layout)",
            "version: v2",
            "block_out_channels: (32, 32, 32, 64)",
            "dtype: float32",
            "max_frames: 32",
        ],
        tmp_path / "motion_lora.ckpt": [
            "a MotionLoRA (official layout)",
            "rank: 4",
            "projections: to_out_lora, to_q_lora",
        ],
        tmp_path / "image_lora.ckpt": ["an image LoRA (kohya layout)"],
        GOLDEN / "base_model": ["a diffusers image model folder"],
    }
    for path, lines in expectations.items():
        assert main(["inspect", str(path)]) == 0
        printed = capsys.readouterr().out
        for line in lines:
            assert line in printed, (path, line, printed)


def test_convert_refuses_what_it_cannot_convert(tmp_path, capsys):
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(4, 8)}, tmp_path / "image_lora.ckpt")
    assert (
        main(["convert", str(tmp_path / "image_lora.ckpt"), str(tmp_path / "o.safetensors"), "--to", "official"]) == 2
    )
    assert (
        "image_lora.ckpt: this is an image LoRA (kohya layout); convert takes a motion module"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("name", ["shapes-motion", "shapes-zoom-in", "shapes-sparsectrl"])
def test_convert_takes_the_embedded_short_names_as_inspect_does(tmp_path, name):
    target = tmp_path / "converted.safetensors"
    assert main(["inspect", name]) == 0
    assert main(["convert", name, str(target), "--to", "diffusers"]) == 0
    assert identify(target).layout == "diffusers"


def weight_dtypes(path):
    weights = path / "diffusion_pytorch_model.safetensors" if path.is_dir() else path
    return {value.dtype for value in read_state_dict(weights).values()}


@pytest.mark.parametrize("target", ["mm.safetensors", "adapter_folder"])
def test_convert_keeps_the_source_dtype_and_says_which_it_wrote(tmp_path, capsys, target):
    assert main(["convert", "shapes-motion", str(tmp_path / target), "--to", "diffusers"]) == 0
    assert "(float16)" in capsys.readouterr().out
    assert weight_dtypes(tmp_path / target) == {torch.float16}
    assert main(["convert", str(tmp_path / target), str(tmp_path / "back.safetensors"), "--to", "official"]) == 0
    assert_same_weights(read_state_dict(tmp_path / "back.safetensors"), read_state_dict(MODELS["shapes-motion"].path))


@pytest.mark.parametrize(
    ("name", "target", "dtype"),
    [
        ("shapes-motion", "adapter_folder", "bfloat16"),
        ("shapes-zoom-in", "lora.safetensors", "float32"),
        ("shapes-sparsectrl", "sparsectrl_folder", "float32"),
    ],
)
def test_convert_writes_the_dtype_asked_for(tmp_path, capsys, name, target, dtype):
    assert main(["convert", name, str(tmp_path / target), "--to", "diffusers", "--dtype", dtype]) == 0
    assert f"({dtype})" in capsys.readouterr().out
    assert weight_dtypes(tmp_path / target) == {getattr(torch, dtype)}


@pytest.mark.parametrize(("mask", "file_mode", "folder_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_converted_files_and_folders_get_the_users_umask(tmp_path, mask, file_mode, folder_mode):
    previous = os.umask(mask)
    try:
        assert main(["convert", "shapes-motion", str(tmp_path / "mm.safetensors"), "--to", "official"]) == 0
        assert main(["convert", "shapes-motion", str(tmp_path / "adapter"), "--to", "diffusers"]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "mm.safetensors").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "adapter").stat().st_mode & 0o777 == folder_mode
    assert {path.stat().st_mode & 0o777 for path in (tmp_path / "adapter").iterdir()} == {file_mode}
