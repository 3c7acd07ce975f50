import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from animatediff import MotionModule, MotionModuleConfig, read_video, save_motion_module
from animatediff.cli import busy_cpu_wait_policy, main
from helpers import assert_bfloat16_close, random_motion_module

SMALL = ["--frames", "5", "--width", "32", "--height", "24", "--steps", "2", "--device", "cpu"]


def generate(tiny_base, motion_module, output, *extra):
    args = [
        "generate",
        "a red circle moving right",
        "--base",
        str(tiny_base),
        "--motion-module",
        str(motion_module),
        *SMALL,
        "-o",
        str(output),
        *extra,
    ]
    return main(args)


@pytest.mark.parametrize("name", ["out.gif", "out.mp4", "out.webm", "out.webp", "out"])
def test_generate_writes_every_format(tmp_path, tiny_base, tiny_motion_module_file, name):
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / name, "--seed", "1") == 0
    frames = read_video(tmp_path / name)
    assert frames.shape == (5, 24, 32, 3)
    sidecar = json.loads((tmp_path / f"{name}.json").read_text())
    assert sidecar["seed"] == 1 and sidecar["frames"] == 5 and sidecar["width"] == 32
    assert sidecar["motion_module"] == str(tiny_motion_module_file.resolve())


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.host_dtype
def test_auto_dtype_is_bfloat16_where_the_cpu_runs_it_natively(
    tmp_path, monkeypatch, tiny_base, tiny_motion_module_file, native
):
    monkeypatch.setattr("animatediff.planner.fast_bfloat16", lambda: native)
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "auto", "--seed", "2") == 0
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "fp32", "--seed", "2", "--dtype", "float32") == 0
    auto, fp32 = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("auto", "fp32"))
    if native:
        assert (auto["dtype"], auto["dtype_chosen_by"]) == (
            "bfloat16",
            "auto: bfloat16 on a CPU with AMX or AVX-512 BF16 (--dtype float32: parity)",
        )
        assert_bfloat16_close(read_video(tmp_path / "fp32"), read_video(tmp_path / "auto"))
    else:
        assert (auto["dtype"], auto["dtype_chosen_by"]) == ("float32", "auto: float32 on a CPU without native bfloat16")
        np.testing.assert_array_equal(read_video(tmp_path / "auto"), read_video(tmp_path / "fp32"))
    assert (fp32["dtype"], fp32["dtype_chosen_by"]) == ("float32", "--dtype")


@pytest.mark.host_dtype
def test_native_bfloat16_is_what_torch_reports_for_this_cpu():
    from animatediff.planner import fast_bfloat16

    reported = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert fast_bfloat16() is reported  # the rule asks torch, not the CPU's name


def test_same_seed_gives_identical_frames(tmp_path, tiny_base, tiny_motion_module_file):
    generate(tiny_base, tiny_motion_module_file, tmp_path / "a", "--seed", "5")
    generate(tiny_base, tiny_motion_module_file, tmp_path / "b", "--seed", "5")
    np.testing.assert_array_equal(read_video(tmp_path / "a"), read_video(tmp_path / "b"))


def test_different_seed_gives_different_frames(tmp_path, tiny_base, tiny_motion_module_file):
    generate(tiny_base, tiny_motion_module_file, tmp_path / "a", "--seed", "5")
    generate(tiny_base, tiny_motion_module_file, tmp_path / "b", "--seed", "6")
    difference = np.abs(read_video(tmp_path / "a").astype(int) - read_video(tmp_path / "b"))
    assert difference.mean() > 1


def test_unset_seed_is_drawn_and_recorded_so_the_run_repeats(tmp_path, tiny_base, tiny_motion_module_file):
    generate(tiny_base, tiny_motion_module_file, tmp_path / "a")
    seed = json.loads((tmp_path / "a.json").read_text())["seed"]
    generate(tiny_base, tiny_motion_module_file, tmp_path / "b", "--seed", str(seed))
    np.testing.assert_array_equal(read_video(tmp_path / "a"), read_video(tmp_path / "b"))


def test_motion_module_changes_the_frames(tmp_path, tiny_base, tiny_motion_module_file):
    generate(tiny_base, tiny_motion_module_file, tmp_path / "with", "--seed", "5")
    generate(tiny_base, "none", tmp_path / "without", "--seed", "5")
    difference = np.abs(read_video(tmp_path / "with").astype(int) - read_video(tmp_path / "without"))
    assert difference.mean() > 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--base": "missing-folder"}, "base missing-folder: no such file or folder"),
        ({"--motion-module": "missing.ckpt"}, "motion module missing.ckpt: no such file or folder"),
        ({"--width": "33"}, "multiples of 2"),
        ({"--frames": "0"}, "argument --frames: must be between 1 and 4096; got 0"),
        ({"--context-length": "40"}, "the context length 40 is longer than the motion module's position table (32"),
        ({"-o": "out.avi"}, "unknown output format"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(tmp_path, tiny_base, tiny_motion_module_file, capsys, change, message):
    options = {
        "--base": str(tiny_base),
        "--motion-module": str(tiny_motion_module_file),
        "--frames": "5",
        "--width": "32",
        "--height": "24",
        "--steps": "1",
        "-o": str(tmp_path / "o.gif"),
    }
    options.update(change)
    args = ["generate", "a cat", *[item for pair in options.items() for item in pair]]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert error.count("\n") == 1


def test_mismatched_base_and_motion_module_exits_2(tmp_path, tiny_base, capsys):
    golden_module = "tests/data/official-v2/mm_tiny_v2.ckpt"
    assert generate(tiny_base, golden_module, tmp_path / "o.gif") == 2
    assert "block widths (32, 32, 32, 64) and 2 layers per block, but the base model's UNet has widths (32, 64)" in (
        capsys.readouterr().err
    )


# output through a pipe is block-buffered, as a shell gives it; PYTHONUNBUFFERED would hide a missing flush
BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


def test_installed_command_runs(tmp_path, tiny_base, tiny_motion_module_file):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "animatediff",
            "generate",
            "a cat",
            "--base",
            str(tiny_base),
            "--motion-module",
            str(tiny_motion_module_file),
            *SMALL,
            "--seed",
            "2",
            "-o",
            str(tmp_path / "c.gif"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=BUFFERED,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert read_video(tmp_path / "c.gif").shape == (5, 24, 32, 3)


def test_installed_command_reports_an_error_and_exits_2(tmp_path, tiny_motion_module_file):
    missing = tmp_path / "no-such-model"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "animatediff",
            "generate",
            "a cat",
            "--base",
            str(missing),
            "--motion-module",
            str(tiny_motion_module_file),
            "-o",
            str(tmp_path / "c.gif"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert not (tmp_path / "c.gif").exists()


def test_image_lora_given_as_motion_module_exits_2(tmp_path, tiny_base, capsys):
    torch.save(
        {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)}, tmp_path / "style.ckpt"
    )
    assert generate(tiny_base, tmp_path / "style.ckpt", tmp_path / "o.gif") == 2
    error = capsys.readouterr().err
    assert "style.ckpt: this file is an image LoRA (kohya layout), not a motion module" in error


def test_sdxl_motion_module_with_sd15_base_exits_2(tmp_path, tiny_base, capsys):
    sdxl_shaped = MotionModule(MotionModuleConfig(block_out_channels=(32, 64, 96), layers_per_block=2, mid_block=False))
    save_motion_module(sdxl_shaped, tmp_path / "mm_sdxl.safetensors")
    assert generate(tiny_base, tmp_path / "mm_sdxl.safetensors", tmp_path / "o.gif") == 2
    error = capsys.readouterr().err
    assert "an SDXL motion module (three levels) on an SD1.x base: the motion module was made for" in error


def test_truncated_motion_module_exits_2(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    data = tiny_motion_module_file.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 3])
    assert generate(tiny_base, tmp_path / "cut.safetensors", tmp_path / "o.gif") == 2
    assert "cut.safetensors: not a readable safetensors file" in capsys.readouterr().err


def test_channel_mismatch_exits_2(tmp_path, tiny_base, capsys):
    state = random_motion_module().state_dict()
    key = "up_blocks.1.motion_modules.0.temporal_transformer.proj_in.weight"
    state[key] = torch.zeros(32, 48)
    torch.save(state, tmp_path / "bad.ckpt")
    assert generate(tiny_base, tmp_path / "bad.ckpt", tmp_path / "o.gif") == 2
    error = capsys.readouterr().err
    assert "bad.ckpt: the weights do not fit a motion module" in error and "proj_in.weight" in error


def test_malicious_pickle_exits_2_without_running(tmp_path, tiny_base, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"down_blocks.0.motion_modules.0.x": Payload()}, tmp_path / "evil.ckpt")
    assert generate(tiny_base, tmp_path / "evil.ckpt", tmp_path / "o.gif") == 2
    assert "evil.ckpt: refused to load" in capsys.readouterr().err
    assert not marker.exists()


def test_motion_module_version_overrides_what_the_weights_suggest(tmp_path, tiny_base, tiny_motion_module_file):
    generate(tiny_base, tiny_motion_module_file, tmp_path / "inferred", "--seed", "3")
    generate(tiny_base, tiny_motion_module_file, tmp_path / "v1", "--seed", "3", "--motion-module-version", "v1")
    sidecar = json.loads((tmp_path / "v1.json").read_text())
    assert sidecar["motion_module_settings"]["image_norm_over_frames"] is True
    assert np.abs(read_video(tmp_path / "v1").astype(int) - read_video(tmp_path / "inferred")).mean() > 0.5


def test_openmp_threads_sleep_only_when_every_core_is_taken_and_the_user_chose_nothing():
    assert busy_cpu_wait_policy({}, load=2.0, cores=2) == "PASSIVE"
    assert busy_cpu_wait_policy({}, load=7.5, cores=2) == "PASSIVE"
    assert busy_cpu_wait_policy({}, load=1.9, cores=2) is None
    assert busy_cpu_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, load=7.5, cores=2) is None
