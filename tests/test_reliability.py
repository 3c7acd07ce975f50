"""Nothing a user made is lost, no traceback reaches the terminal, nothing misbehaves silently.

Each test is one defect found by trying the command as a new user would; each failed before its fix."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from animatediff import read_video, write_video
from animatediff.cli import build_parser, main
from animatediff.embedded import MODELS
from animatediff.export import frame_durations
from helpers import random_motion_module

SMALL = ["--frames", "3", "--width", "16", "--height", "16", "--steps", "1", "--device", "cpu"]


def generate(tiny_base, motion_module, *extra):
    return main(
        ["generate", "a red circle", "--base", str(tiny_base), "--motion-module", str(motion_module), *SMALL, *extra]
    )


def one_error_line(capsys) -> str:
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1, error
    return error


@pytest.fixture
def no_generation(monkeypatch):
    """Fails the test if any weights are loaded: the error had to come before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the models were loaded before the bad input was found")

    monkeypatch.setattr("animatediff.generation.build_pipeline", refuse)


def leftovers(folder):
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


# ---------------------------------------------------------------------------------------------------
# 1. Data loss


def test_generate_never_replaces_a_folder_holding_the_users_files(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    folder = tmp_path / "holiday"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"precious")
    assert generate(tiny_base, tiny_motion_module_file, "-o", str(folder)) == 2
    assert f"{folder}: this folder holds files this program did not write" in one_error_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["photo.jpg"] and (folder / "photo.jpg").read_bytes() == b"precious"
    assert leftovers(tmp_path) == []


def test_generate_replaces_a_frame_folder_it_wrote_itself(tmp_path, tiny_base, tiny_motion_module_file):
    folder = tmp_path / "frames"
    assert generate(tiny_base, tiny_motion_module_file, "-o", str(folder), "--seed", "1") == 0
    first = read_video(folder)
    assert generate(tiny_base, tiny_motion_module_file, "-o", str(folder), "--seed", "2") == 0
    assert not np.array_equal(read_video(folder), first) and leftovers(tmp_path) == []


def test_convert_never_replaces_a_folder_holding_the_users_files(tmp_path, tiny_motion_module_file, capsys):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["convert", str(tiny_motion_module_file), str(folder), "--to", "diffusers"]) == 2
    assert "holds files this program did not write" in one_error_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert main(["convert", str(tiny_motion_module_file), str(tmp_path / "ours"), "--to", "diffusers"]) == 0
    assert main(["convert", str(tiny_motion_module_file), str(tmp_path / "ours"), "--to", "diffusers"]) == 0


# ---------------------------------------------------------------------------------------------------
# 3. Tracebacks: bad output paths are found before any work


@pytest.mark.parametrize("case", ["under a file", "existing file as a folder", "current folder", "read-only"])
def test_an_output_path_that_cannot_be_written_fails_before_any_work(
    tmp_path, tiny_base, tiny_motion_module_file, capsys, monkeypatch, no_generation, case
):
    (tmp_path / "file.txt").write_text("x")
    output = {
        "under a file": tmp_path / "file.txt" / "out.gif",
        "existing file as a folder": tmp_path / "file",
        "current folder": ".",
        "read-only": tmp_path / "locked" / "out.gif",
    }[case]
    (tmp_path / "file").write_text("not a folder")
    if case == "read-only":
        (tmp_path / "locked").mkdir()

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("animatediff.files.tempfile.mkstemp", denied)
    monkeypatch.chdir(tmp_path)
    assert generate(tiny_base, tiny_motion_module_file, "-o", str(output)) == 2
    error = one_error_line(capsys)
    assert str(output) in error
    assert (tmp_path / "file.txt").read_text() == "x" and (tmp_path / "file").read_text() == "not a folder"


def test_a_write_that_fails_midway_is_reported_naming_the_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("animatediff.export._write_png_folder", full)
    with pytest.raises(Exception, match="frames: could not be written .No space left on device"):
        write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "frames")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# 3-4. Bad numbers end with exit 2 naming the option; none is used silently


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seed", str(2**64)], "argument --seed"),
        (["--fps", "nan"], "argument --fps"),
        (["--fps", "inf"], "argument --fps"),
        (["--guidance-scale", "nan"], "argument --guidance-scale"),
        (["--domain-adapter-scale", "inf"], "argument --domain-adapter-scale"),
        (["--lora", "style.safetensors:nan"], "argument --lora"),
        (["--motion-lora", "zoom.ckpt:abc"], "the scale after the last ':' must be a number"),
        (["--frames", "many"], "argument --frames"),
        (["--steps", "100000"], "steps must be at most 999 (the noise schedule's length less its timestep offset)"),
        (["--steps", "1000"], "steps must be at most 999"),  # DDIM's offset timesteps would reach past the table
        (["--fps", "60", "-o", "fast.gif"], "a GIF plays at most 50 fps"),
        (["--fps", "0.00001", "-o", "slow.mp4"], "cannot be stored in mp4"),
    ],
)
def test_bad_numbers_exit_2_naming_the_option(
    tmp_path, tiny_base, tiny_motion_module_file, capsys, no_generation, flags, named
):
    flags = ["-o", str(tmp_path / "o.gif"), *flags]
    assert generate(tiny_base, tiny_motion_module_file, *flags) == 2
    assert named in one_error_line(capsys)


def test_nan_in_a_prompt_config_is_refused_naming_the_field(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    for values, field in (
        ({"guidance_scale": float("nan")}, "'guidance_scale'"),
        (
            {"motion_module_lora_configs": [{"path": "mm.safetensors", "alpha": "abc"}]},
            "'motion_module_lora_configs': expected a number, got 'abc'",
        ),
    ):
        config = tmp_path / "prompts.yaml"
        config.write_text(yaml.safe_dump([{"motion_module": str(tiny_motion_module_file), "prompt": ["a"], **values}]))
        assert main(["generate", "--config", str(config), "--base", str(tiny_base)]) == 2
        assert field in one_error_line(capsys)


def test_seed_minus_one_draws_a_random_seed_and_records_it(tmp_path, tiny_base, tiny_motion_module_file):
    assert generate(tiny_base, tiny_motion_module_file, "--seed", "-1", "-o", str(tmp_path / "a.gif")) == 0
    seed = json.loads((tmp_path / "a.gif.json").read_text())["seed"]
    assert seed >= 0
    assert generate(tiny_base, tiny_motion_module_file, "--seed", str(seed), "-o", str(tmp_path / "b.gif")) == 0
    np.testing.assert_array_equal(read_video(tmp_path / "a.gif"), read_video(tmp_path / "b.gif"))


def test_flags_given_with_a_config_override_its_entries_and_are_recorded(tmp_path, tiny_base, tiny_motion_module_file):
    config = tmp_path / "prompts.yaml"
    entry = {"motion_module": str(tiny_motion_module_file), "prompt": ["a cat"], "seed": 5, "steps": 3, "L": 4}
    config.write_text(yaml.safe_dump([entry]))
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
                "--steps",
                "1",
                "--frames",
                "2",
                "--seed",
                "9",
                "--width",
                "8",
                "--height",
                "8",
            ]
        )
        == 0
    )
    (sidecar,) = out.glob("*.json")
    settings = json.loads(sidecar.read_text())
    assert (settings["steps"], settings["frames"], settings["seed"], settings["width"]) == (1, 2, 9, 8)
    assert settings["overridden_by_flags"] == ["frames", "height", "seed", "steps", "width"]
    assert read_video(sidecar.with_name(sidecar.name.removesuffix(".json"))).shape == (2, 8, 8, 3)


def test_a_config_entry_without_size_or_motion_module_uses_the_models_own(tmp_path, capsys):
    config = tmp_path / "prompts.yaml"
    config.write_text(
        yaml.safe_dump([{"prompt": ["a red circle moving right on a blue background"], "seed": 1, "steps": 1, "L": 2}])
    )
    assert main(["generate", "--config", str(config), "--output-dir", str(tmp_path / "out")]) == 0  # embedded
    (sidecar,) = (tmp_path / "out").glob("*.json")
    settings = json.loads(sidecar.read_text())
    assert (settings["width"], settings["height"]) == (32, 32)
    assert settings["motion_module"] == str(MODELS["shapes-motion"].path.resolve())
    capsys.readouterr()
    assert main(["generate", "--config", str(config), "--base", str(MODELS["shapes"].path)]) == 2
    assert "no motion module given" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        (" ".join(["red"] * 10_000), "the first 30 of its 10000 words are kept, and 'red' and the 9969 words after"),
        (
            "a red circle " + "very " * 40 + "slowly moving right",
            "the first 9 of its 46 words are kept, and 'very' and the 36 words after it are dropped",
        ),
        ("a red circle 🟥", "no token for '🟥'"),
    ],
)
def test_prompt_words_the_text_encoder_never_sees_are_warned_about(tmp_path, capsys, prompt, said):
    plain = ["--prompt-syntax", "plain"]  # as the official scripts read prompts: cut at the encoder's length
    assert main(["generate", prompt, *plain, "--frames", "2", "--steps", "1", "-o", str(tmp_path / "o.gif")]) == 0
    error = capsys.readouterr().err
    assert said in error and "<|" not in error


# ---------------------------------------------------------------------------------------------------
# 3, 6, 10. Files that are not what they claim: one paragraph naming the file


def test_a_model_folder_whose_config_is_not_a_json_object_is_named(
    tmp_path, tiny_base, tiny_motion_module_file, capsys
):
    import shutil

    for content in ("[1, 2]", "{not json"):
        base = tmp_path / "base"
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(tiny_base, base)
        (base / "unet" / "config.json").write_text(content)
        assert generate(base, tiny_motion_module_file, "-o", str(tmp_path / "o.gif")) == 2
        assert str(base / "unet" / "config.json") in one_error_line(capsys)


def test_motion_module_keys_without_their_norms_are_named(tmp_path, tiny_base, capsys):
    state = {k: v for k, v in random_motion_module().state_dict().items() if ".norm." not in k}
    torch.save(state, tmp_path / "no_norms.ckpt")
    assert generate(tiny_base, tmp_path / "no_norms.ckpt", "-o", str(tmp_path / "o.gif")) == 2
    assert "no_norms.ckpt: has motion-module keys but is not a complete motion module" in one_error_line(capsys)


@pytest.mark.parametrize("content", [b"hello, this is a text file\n", bytes(range(256)) * 4])
def test_a_ckpt_that_is_not_a_checkpoint_is_called_unreadable_not_unsafe(tmp_path, tiny_base, capsys, content):
    (tmp_path / "x.ckpt").write_bytes(content)
    assert generate(tiny_base, tmp_path / "x.ckpt", "-o", str(tmp_path / "o.gif")) == 2
    error = one_error_line(capsys)
    assert "x.ckpt: not a readable checkpoint" in error
    assert "run code" not in error and "weights_only" not in error


def test_convert_writes_safetensors_only_under_a_safetensors_name(tmp_path, tiny_motion_module_file, capsys):
    assert main(["convert", str(tiny_motion_module_file), str(tmp_path / "x.ckpt"), "--to", "official"]) == 2
    assert "name the target 'x.safetensors'" in one_error_line(capsys)
    assert not (tmp_path / "x.ckpt").exists()


def test_a_refused_config_value_is_quoted_briefly(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    config = tmp_path / "prompts.yaml"
    entry = {"motion_module": str(tiny_motion_module_file), "prompt": ["a", "b"], "seed": list(range(1000))}
    config.write_text(yaml.safe_dump([entry]))
    assert main(["generate", "--config", str(config), "--base", str(tiny_base)]) == 2
    error = one_error_line(capsys)
    assert "'seed': expected one whole number or 2 of them" in error and "999" in error and len(error) < 300


# ---------------------------------------------------------------------------------------------------
# 3. Interrupted runs leave nothing behind


def test_ctrl_c_exits_130_with_one_line_and_no_partial_output(tmp_path, tiny_base, tiny_motion_module_file):
    command = [
        sys.executable,
        "-m",
        "animatediff",
        "generate",
        "a cat",
        "--base",
        str(tiny_base),
        "--motion-module",
        str(tiny_motion_module_file),
        "--frames",
        "4",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "999",
        "-o",
        str(tmp_path / "out.gif"),
    ]
    # as from a shell: Ctrl-C delivered (another test's worker pool may have left this process ignoring it,
    # and an ignored signal stays ignored in a child)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    seen = ""
    while not re.search(r"\| *[1-9]\d*/999", seen):  # a step done: under way, past every first-call setup
        seen += process.stderr.read(1)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130, rest[-2000:]
    assert "Traceback" not in rest and "animatediff generate: interrupted" in rest.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_final_write_leaves_no_temporary(tmp_path, tiny_base, tiny_motion_module_file, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("animatediff.export._write_pillow", interrupted)
    assert generate(tiny_base, tiny_motion_module_file, "-o", str(tmp_path / "out.gif")) == 130
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_left_by_a_killed_write_is_removed_by_the_next(tmp_path):
    script = (
        "import sys, time\nfrom animatediff.files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as temporary:\n    temporary.write_text('half')\n"
        "    print('writing', flush=True)\n    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "out.gif")], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(leftovers(tmp_path)) == 1  # what kill -9 leaves: nothing can clean up inside the killed process
    write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "out.gif")
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out.gif"]


# ---------------------------------------------------------------------------------------------------
# 5. Resources


def test_frames_beyond_the_bound_are_refused_naming_it(tmp_path, capsys):
    assert main(["generate", "a red circle", "--frames", "100000", "-o", str(tmp_path / "o.gif")]) == 2
    assert "--frames: must be between 1 and 4096; got 100000" in capsys.readouterr().err
    assert not (tmp_path / "o.gif").exists()


def test_a_clip_that_cannot_fit_in_memory_is_refused_before_loading(tmp_path, capsys, no_generation):
    started = time.perf_counter()
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--motion-module",
                "none",
                "--frames",
                "4096",
                "--width",
                "2048",
                "--height",
                "2048",
                "--seed",
                "1",
                "-o",
                str(tmp_path / "o.gif"),
            ]
        )
        == 2
    )
    error = one_error_line(capsys)
    assert "4096 frames at 2048×2048 need about" in error and "GiB free" in error
    assert time.perf_counter() - started < 30  # refused at once, not after climbing through the memory


def test_a_config_run_counts_its_clips(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    config = tmp_path / "prompts.yaml"
    entry = {"motion_module": str(tiny_motion_module_file), "prompt": ["a", "b"], "seed": 1, "steps": 1, "L": 2}
    config.write_text(yaml.safe_dump([entry]))
    assert (
        main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(tmp_path / "o")]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["[1/2]", "[2/2]"]


# ---------------------------------------------------------------------------------------------------
# 7. inspect knows what generate knows


def test_inspect_names_the_shipped_models_by_short_name_and_unet_weights(capsys):
    assert main(["inspect", "shapes-outlined"]) == 0
    assert "an image UNet" in capsys.readouterr().out
    assert main(["inspect", "shapes-motion"]) == 0
    out = capsys.readouterr().out
    assert "a motion module (official layout)" in out and "detected_by: weights: mid block False" in out
    assert main(["inspect", str(MODELS["shapes"].path / "unet" / "diffusion_pytorch_model.safetensors")]) == 0
    assert "an image UNet (a personalized model's or a base's) (diffusers layout)" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------
# 8. Help


def test_every_option_has_help_text():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    shapes = commands["shapes"]._subparsers._group_actions[0].choices
    for name, command in [*commands.items(), *shapes.items()]:
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]}"


# ---------------------------------------------------------------------------------------------------
# 9. Honest outputs


def test_gif_frame_times_add_up_to_the_requested_rate(tmp_path):
    frames = (np.random.default_rng(0).random((16, 8, 8, 3)) * 255).astype(np.uint8)
    write_video(frames, tmp_path / "clip.gif", fps=8)
    with Image.open(tmp_path / "clip.gif") as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    assert sum(durations) == 2000 and set(durations) == {120, 130}  # 16 frames at 8 fps: 2 s exactly
    assert frame_durations(3, 30, 10) == [30, 40, 30]


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_users_umask(tmp_path, mask, mode):
    previous = os.umask(mask)
    try:
        path = write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "clip.gif", settings={"seed": 1})
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode
    assert (tmp_path / "clip.gif.json").stat().st_mode & 0o777 == mode


def test_eval_says_which_formats_change_the_scores(tmp_path, capsys):
    frames = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    write_video(frames, tmp_path / "a.gif", settings={"prompt": "a red circle moving right"})
    write_video(frames, tmp_path / "b", settings={"prompt": "a red circle moving right"})
    assert main(["eval", str(tmp_path), "--json", str(tmp_path / "scores.json")]) == 0
    assert "1 of 2 videos are GIF, MP4 or WebM" in capsys.readouterr().err
    assert [row["lossless"] for row in json.loads((tmp_path / "scores.json").read_text())] == [False, True]
