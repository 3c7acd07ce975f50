"""The three training stages on tiny models and small mp4 clips made here with PyAV."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDPMScheduler
from PIL import Image
from safetensors.torch import load_file

from animatediff import ConfigError, apply_domain_adapter, apply_motion_lora, load_base, load_motion_module, read_video
from animatediff.cli import main
from animatediff.export import write_video
from animatediff.training.config import load_train_config
from animatediff.training.stages import build_stage
from animatediff.training.trainer import checkpoint_folders, load_checkpoint, train

SINGLE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def moving_square(seed: int, frames: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    video = np.full((frames, 32, 32, 3), rng.integers(0, 120, 3), dtype=np.uint8)
    colour, row = rng.integers(130, 255, 3), int(rng.integers(4, 20))
    for t in range(frames):
        video[t, row : row + 8, 2 * t : 2 * t + 8] = colour
    return video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six clips in both dataset layouts: a captions.jsonl folder and a WebVid-style CSV."""
    folder = tmp_path_factory.mktemp("videos")
    lines, rows = [], ["videoid,name,page_dir"]
    for index in range(6):
        write_video(moving_square(index), folder / f"{index}.mp4", fps=8)
        lines.append(json.dumps({"file": f"{index}.mp4", "caption": f"a square moving right {index}"}))
        rows.append(f"{index},a square moving right {index},")
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "results.csv").write_text("\n".join(rows) + "\n")
    return folder


def write_config(folder, tiny_base, videos, stage, name=None, **overrides):
    config = {
        "stage": stage,
        "output_dir": str(folder / (name or stage)),
        "base": str(tiny_base),
        "data": {"format": "jsonl", "path": str(videos), "frames": 4, "stride": 2, "size": 16},
        "train": {"steps": 3, "batch_size": 2, "checkpoint_every": 2, "learning_rate": 1e-3},
    }
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    path = folder / f"{name or stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_unchanged(model, reference, skip=()):
    reference = reference.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(skip):
            assert torch.equal(value, reference[key]), key


def test_domain_adapter_stage_trains_only_the_lora(tmp_path, tiny_base, videos):
    run = train(load_train_config(write_config(tmp_path, tiny_base, videos, "domain_adapter", lora_rank=4)))
    base = load_base(tiny_base)
    for name in ("unet", "vae", "text_encoder"):
        assert_unchanged(getattr(run.stage.components, name), getattr(base, name))
    saved = load_file(run.result)
    assert all(".processor.to_" in key for key in saved) and len(saved) == 2 * 4 * 2 * 6
    assert max(v.abs().max() for k, v in saved.items() if ".up." in k) > 0  # `up` started at zero
    assert apply_domain_adapter(base.unet, run.result, 1.0) == len(saved) // 2  # the normal loader takes it


def test_image_finetune_stage_trains_the_whole_unet(tmp_path, tiny_base, videos):
    run = train(load_train_config(write_config(tmp_path, tiny_base, videos, "image_finetune")))
    base = load_base(tiny_base)
    assert_unchanged(run.stage.components.vae, base.vae)
    assert_unchanged(run.stage.components.text_encoder, base.text_encoder)
    changed = [
        k for k, v in run.stage.components.unet.state_dict().items() if not torch.equal(v, base.unet.state_dict()[k])
    ]
    assert len(changed) > 100
    assert (run.result / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize("kind", ["transformer", "convolution"])
def test_motion_module_stage_trains_only_the_motion_module(tmp_path, tiny_base, videos, kind):
    config = write_config(tmp_path, tiny_base, videos, "motion_module", motion_module_kind=kind)
    run = train(load_train_config(config))
    base = load_base(tiny_base)
    for name in ("unet", "vae", "text_encoder"):
        assert_unchanged(getattr(run.stage.components, name), getattr(base, name))
    module = load_motion_module(run.result)
    assert module.config.kind == kind and not module.config.mid_block  # v3 placement by default
    last = "temporal_transformer.proj_out" if kind == "transformer" else "temporal_convolution.conv_out"
    moved = [v.abs().max() for k, v in module.state_dict().items() if last in k]
    assert len(moved) == 2 * (2 * 2 + 2 * 3) and min(moved) > 0  # weight and bias of every zero-initialised output


def test_trained_motion_module_loads_in_generate_and_changes_frames(tmp_path, tiny_base, videos):
    run = train(load_train_config(write_config(tmp_path, tiny_base, videos, "motion_module")))
    common = [
        "generate",
        "a square",
        "--base",
        str(tiny_base),
        "--frames",
        "4",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "2",
        "--seed",
        "1",
    ]
    assert main([*common, "--motion-module", str(run.result), "-o", str(tmp_path / "with")]) == 0
    assert main([*common, "--motion-module", "none", "-o", str(tmp_path / "without")]) == 0
    assert np.abs(read_video(tmp_path / "with").astype(int) - read_video(tmp_path / "without")).max() > 0


def test_motion_lora_stage_trains_only_the_lora(tmp_path, tiny_base, videos, tiny_motion_module_file):
    config = write_config(
        tmp_path, tiny_base, videos, "motion_lora", motion_module=str(tiny_motion_module_file), lora_rank=2
    )
    run = train(load_train_config(config))
    assert_unchanged(run.stage.model.video_unet.motion_module, load_motion_module(tiny_motion_module_file))
    assert_unchanged(run.stage.components.unet, load_base(tiny_base).unet, skip=())
    saved = load_file(run.result)
    assert all(".attention_blocks." in k and "_lora." in k for k in saved)
    module = load_motion_module(tiny_motion_module_file)
    assert apply_motion_lora(module, run.result, 1.0) == len(saved) // 2 == 4 * 2 * (2 * 2 + 2 * 3 + 1)


def test_controlnet_stage_trains_only_the_controlnet_on_edges_and_generate_takes_it(tmp_path, tiny_base, videos):
    config = write_config(
        tmp_path, tiny_base, videos, "controlnet", data={"frames": 1}, train={"steps": 4, "learning_rate": 1e-2}
    )
    run = train(load_train_config(config))
    base = load_base(tiny_base)
    for name in ("unet", "vae", "text_encoder"):
        assert_unchanged(getattr(run.stage.components, name), getattr(base, name))
    saved = load_file(run.result / "diffusion_pytorch_model.safetensors")
    zero_convolutions = [v for k, v in saved.items() if k.startswith(("controlnet_down_blocks", "controlnet_mid"))]
    assert zero_convolutions and max(v.abs().max() for v in zero_convolutions) > 0  # they started at zero
    edges = tmp_path / "edges"
    assert (
        main(
            [
                "preprocess",
                "canny",
                str(videos / "0.mp4"),
                "-o",
                str(edges),
                "--frames",
                "4",
                "--width",
                "16",
                "--height",
                "16",
            ]
        )
        == 0
    )
    common = [
        "generate",
        "a square",
        "--base",
        str(tiny_base),
        "--frames",
        "4",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "2",
        "--seed",
        "1",
        "--motion-module",
        "none",
    ]
    controlled = ["--controlnet", str(run.result), "--control-video", str(edges)]
    assert main([*common, *controlled, "-o", str(tmp_path / "a")]) == 0
    assert main([*common, "-o", str(tmp_path / "b")]) == 0
    assert np.abs(read_video(tmp_path / "a").astype(int) - read_video(tmp_path / "b")).max() > 0


def test_distill_stage_trains_the_student_alone_and_generate_runs_it_as_its_family(
    tmp_path, tiny_base, videos, tiny_motion_module_file
):
    config = write_config(
        tmp_path,
        tiny_base,
        videos,
        "distill",
        motion_module=str(tiny_motion_module_file),
        lora_rank=2,
        train={"steps": 3, "solver_steps": 10, "teacher_guidance": 3.0},
    )
    run = train(load_train_config(config))
    stage = run.stage
    assert_unchanged(stage.model.teacher.motion_module, load_motion_module(tiny_motion_module_file))
    for name in ("unet", "vae", "text_encoder"):  # the teacher's image model (the student's is a copy with a LoRA)
        assert_unchanged(getattr(stage.components, name), getattr(load_base(tiny_base), name))
    student = load_motion_module(run.result / "motion_module.safetensors")
    teacher = load_motion_module(tiny_motion_module_file).state_dict()
    assert any(not torch.equal(v, teacher[k]) for k, v in student.state_dict().items())
    lora = load_file(run.result / "image_lora.safetensors")
    assert lora and max(v.abs().max() for k, v in lora.items() if "lora_B" in k) > 0  # B started at zero
    output = tmp_path / "fast"
    assert (
        main(
            [
                "generate",
                "a square",
                "--base",
                str(tiny_base),
                "--frames",
                "4",
                "--width",
                "16",
                "--height",
                "16",
                "--seed",
                "1",
                "--motion-module",
                str(run.result / "motion_module.safetensors"),
                "-o",
                str(output),
            ]
        )
        == 0
    )
    settings = json.loads((tmp_path / "fast.json").read_text())
    assert settings["family"] == {"name": "distilled", "decided_by": "metadata: animatediff.family = distilled"}
    assert (settings["steps"], settings["guidance_scale"], settings["scheduler"]["name"]) == (4, 1.0, "lcm")
    assert [entry["path"] for entry in settings["loras"]] == [str((run.result / "image_lora.safetensors").resolve())]


def test_a_distill_run_cut_after_its_first_checkpoint_resumes_to_the_same_student(
    tmp_path, tiny_base, videos, tiny_motion_module_file
):
    config = write_config(
        tmp_path,
        tiny_base,
        videos,
        "distill",
        motion_module=str(tiny_motion_module_file),
        lora_rank=2,
        train={"steps": 4, "checkpoint_every": 2, "solver_steps": 10},
    )
    run = train(load_train_config(config))
    reference = {name: load_file(run.result / name) for name in ("motion_module.safetensors", "image_lora.safetensors")}
    shutil.rmtree(run.result)  # as if the run had been killed after its step-2 checkpoint
    shutil.rmtree(run.result.parent / "checkpoints" / "step-0000004")
    resumed = train(load_train_config(config), resume=True)
    assert resumed.steps == 2  # from the step-2 checkpoint, not from the start
    for name, expected in reference.items():
        final = load_file(resumed.result / name)
        assert all(torch.equal(final[key], value) for key, value in expected.items()), name


def test_sparsectrl_stage_trains_the_encoder_alone_resumes_and_generate_takes_it(
    tmp_path, tiny_base, videos, tiny_motion_module_file
):
    config = write_config(
        tmp_path,
        tiny_base,
        videos,
        "sparsectrl",
        motion_module=str(tiny_motion_module_file),
        train={"steps": 4, "checkpoint_every": 2, "learning_rate": 1e-2},
    )
    run = train(load_train_config(config))
    assert_unchanged(run.stage.model.video_unet.motion_module, load_motion_module(tiny_motion_module_file))
    for name in ("unet", "vae", "text_encoder"):
        assert_unchanged(getattr(run.stage.components, name), getattr(load_base(tiny_base), name))
    saved = load_file(run.result)
    assert "controlnet_cond_embedding.weight" in saved  # an RGB encoder, in the official layout
    zero = [v for k, v in saved.items() if k.startswith(("controlnet_down", "controlnet_mid", "controlnet_cond"))]
    assert max(v.abs().max() for v in zero) > 0  # they started at zero
    shutil.rmtree(tmp_path / "sparsectrl" / "checkpoints" / "step-0000004")
    run.result.unlink()  # as if the run had been killed after its step-2 checkpoint
    resumed = train(load_train_config(config), resume=True)
    assert resumed.steps == 2 and all(torch.equal(load_file(resumed.result)[k], v) for k, v in saved.items())
    frame = tmp_path / "first.png"
    Image.fromarray(moving_square(0)[0]).resize((16, 16)).save(frame)
    common = [
        "generate",
        "a square",
        "--base",
        str(tiny_base),
        "--frames",
        "4",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "2",
        "--seed",
        "1",
        "--motion-module",
        str(tiny_motion_module_file),
    ]
    keyframe = ["--sparsectrl", str(run.result), "--control-image", f"0:{frame}"]
    assert main([*common, *keyframe, "-o", str(tmp_path / "a")]) == 0
    assert main([*common, "-o", str(tmp_path / "b")]) == 0
    assert np.abs(read_video(tmp_path / "a").astype(int) - read_video(tmp_path / "b")).max() > 0


def test_sparse_keyframes_cover_first_frame_interpolation_and_sparse_frames():
    from animatediff.training.stages import sparse_keyframes

    drawn = [tuple(sparse_keyframes(16, torch.Generator().manual_seed(seed))) for seed in range(400)]
    first, both = drawn.count((0,)), drawn.count((0, 15))
    assert 160 < first < 260 and 70 < both < 140
    assert all(1 <= len(d) <= 3 and list(d) == sorted(set(d)) and 0 <= min(d) and max(d) < 16 for d in drawn)


def test_consistency_loss_is_the_distance_to_the_teachers_next_point(tiny_base):
    from animatediff.training.losses import boundary_scalings, consistency_losses
    from animatediff.training.settings import TrainSettings

    components = load_base(tiny_base)
    scheduler = DDPMScheduler(beta_schedule="linear", beta_start=0.00085, beta_end=0.012)
    batch = {"pixels": torch.rand(2, 3, 3, 16, 16) * 2 - 1, "seeds": [1, 2], "captions": ["a", "b"]}
    calls = []

    class Recording(torch.nn.Module):  # predicts no noise at all, and notes what it was asked
        def forward(self, sample, t, text, teacher=False):
            calls.append((sample.detach().clone(), t.clone(), teacher))
            return torch.full_like(sample, 0.0)

    settings = TrainSettings(solver_steps=10, teacher_guidance=3.0)
    losses = consistency_losses(Recording(), components, scheduler, batch, "cpu", settings)
    (both, starts, teacher), (previous, end, first), (noisy, start, second) = calls
    assert teacher and not first and not second
    assert torch.equal(starts, torch.cat([start, start])) and torch.equal(both[:2], noisy)
    assert all((int(t) + 1) % 100 == 0 for t in start) and torch.equal(end, (start - 100).clamp(min=0))
    alphas = scheduler.alphas_cumprod
    a_start, a_end = (alphas[t].view(-1, 1, 1, 1, 1) for t in (start, end))
    torch.testing.assert_close(previous, a_end.sqrt() / a_start.sqrt() * noisy)  # one DDIM step with ε = 0
    (skip_s, out_s), (skip_e, out_e) = boundary_scalings(start), boundary_scalings(end)
    difference = (skip_s + out_s / a_start.sqrt()) * noisy - (skip_e + out_e / a_end.sqrt()) * previous
    expected = ((difference**2 + 1e-6).sqrt() - 1e-3).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(losses, expected)
    c_skip, c_out = boundary_scalings(torch.tensor([0, 999]))
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0  # the identity at t = 0
    assert float(c_skip[1]) < 1e-6 and abs(float(c_out[1]) - 1) < 1e-6  # a clean-sample predictor at high noise


def test_webvid_csv_layout_trains(tmp_path, tiny_base, videos):
    webvid = {"format": "webvid", "csv": str(videos / "results.csv"), "path": str(videos)}
    config = write_config(tmp_path, tiny_base, videos, "domain_adapter", data=webvid)
    run = train(load_train_config(config))
    assert run.result.is_file() and run.skipped == []


def test_corrupt_and_too_short_videos_are_skipped_and_reported(tmp_path, tiny_base, videos, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for index in range(4):
        (folder / f"{index}.mp4").write_bytes((videos / f"{index}.mp4").read_bytes())
    (folder / "corrupt.mp4").write_bytes(b"\x00not a video" * 100)
    write_video(moving_square(9, frames=3), folder / "short.mp4", fps=8)
    entries = [{"file": f"{i}.mp4", "caption": "a square"} for i in range(4)]
    entries += [{"file": "corrupt.mp4", "caption": "x"}, {"file": "short.mp4", "caption": "y"}]
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(e) for e in entries))
    config = write_config(tmp_path, tiny_base, folder, "motion_module", train={"steps": 6, "checkpoint_every": 10})
    assert main(["train", str(config)]) == 0
    run_line = capsys.readouterr().out
    assert "2 videos skipped" in run_line
    run = train(load_train_config(config))
    assert [p.rsplit("/", 1)[-1] for p in run.skipped] == ["corrupt.mp4", "short.mp4"]


def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_base, videos):
    steps = {"steps": 24, "checkpoint_every": 2, "keep_checkpoints": 50}
    reference = write_config(tmp_path, tiny_base, videos, "motion_module", name="reference", train=steps)
    interrupted = write_config(tmp_path, tiny_base, videos, "motion_module", name="interrupted", train=steps)
    command = [sys.executable, "-m", "animatediff", "train"]
    subprocess.run([*command, str(reference)], check=True, capture_output=True, env=SINGLE_THREAD)
    process = subprocess.Popen(
        [*command, str(interrupted)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SINGLE_THREAD
    )
    checkpoints = tmp_path / "interrupted" / "checkpoints"
    deadline = time.time() + 120
    while not (checkpoints / "step-0000004").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "interrupted" / "motion_module.safetensors").exists(), "the run ended before the kill"
    config = load_train_config(interrupted)
    for folder in checkpoint_folders(config.output_dir):  # every checkpoint left behind loads
        stage = build_stage(config)
        optimizer = torch.optim.AdamW(stage.model.trainable.parameters())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        assert load_checkpoint(folder, stage, optimizer, scheduler) == int(folder.name.removeprefix("step-"))
    subprocess.run([*command, str(interrupted), "--resume"], check=True, capture_output=True, env=SINGLE_THREAD)
    final, expected = (
        load_file(config.output_dir / "motion_module.safetensors"),
        load_file(tmp_path / "reference" / "motion_module.safetensors"),
    )
    for key, value in expected.items():
        assert torch.equal(final[key], value), key


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, tiny_base, videos):
    single = write_config(tmp_path, tiny_base, videos, "motion_module", name="single", train={"batch_size": 2})
    parallel = write_config(tmp_path, tiny_base, videos, "motion_module", name="parallel", train={"batch_size": 1})
    subprocess.run(
        [sys.executable, "-m", "animatediff", "train", str(single)], check=True, capture_output=True, env=SINGLE_THREAD
    )
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "animatediff",
            "train",
            str(parallel),
        ],
        capture_output=True,
        text=True,
        env=SINGLE_THREAD,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert "trained weights identical on all 2 processes" in launched.stderr
    one, two = (
        load_file(tmp_path / "single" / "motion_module.safetensors"),
        load_file(tmp_path / "parallel" / "motion_module.safetensors"),
    )
    change = sum(float((one[k] ** 2).sum()) for k in one if "proj_out" in k) ** 0.5  # proj_out started at zero
    difference = sum(float(((one[k] - two[k]) ** 2).sum()) for k in one) ** 0.5
    # Gradients agree to float rounding; Adam's first steps normalise each gradient element, so an element
    # whose gradient is ~0 can differ by up to 2·lr per step. The whole update must agree to 1%.
    assert difference < 0.01 * change
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 2 * 3 * 1e-3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stage": "stage_4"}, "'stage': expected one of"),
        ({"base": "nowhere"}, "'base': "),
        ({"train": {"steps": 0}}, "'train.steps' must be at least 1"),
        ({"train": {"learning_rate": "fast"}}, "'train.learning_rate': expected a number"),
        ({"data": {"size": 20}}, "'data.size' must be a multiple of 8"),
        ({"data": {"format": "jsonl", "path": "/nonexistent"}}, "'data.path': /nonexistent does not exist"),
        ({"data": {"frames": 40}}, "'data.frames': a v3 module's position table has 32"),
        ({"train": {"mixed_precision": "fp8"}}, "'train.mixed_precision': expected no, fp16 or bf16"),
        ({"train": {"loss": "x0"}}, "'train.loss': expected epsilon or v; got 'x0'"),
        ({"optimizer": "sgd"}, "unknown field(s) optimizer"),
    ],
)
def test_config_errors_name_the_field(tmp_path, tiny_base, videos, change, message):
    change = dict(change)
    path = write_config(tmp_path, tiny_base, videos, change.pop("stage", "motion_module"), **change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_train_config(path)


def test_motion_lora_stage_requires_a_motion_module(tmp_path, tiny_base, videos, capsys):
    assert main(["train", str(write_config(tmp_path, tiny_base, videos, "motion_lora"))]) == 2
    assert "'motion_module' is required" in capsys.readouterr().err


def test_bf16_gradient_checkpointing_and_validation_clips(tmp_path, tiny_base, videos):
    options = {"mixed_precision": "bf16", "gradient_checkpointing": True, "steps": 2, "checkpoint_every": 2}
    validation = {"every": 2, "prompts": ["a square moving right"], "seeds": [3, 4], "steps": 2}
    config = write_config(tmp_path, tiny_base, videos, "motion_module", train=options, validation=validation)
    run = train(load_train_config(config))
    assert run.stage.model.video_unet.unet.is_gradient_checkpointing
    module = load_motion_module(run.result)
    assert all(torch.isfinite(v).all() for v in module.state_dict().values())
    clips = sorted(p.name for p in (tmp_path / "motion_module" / "validation").glob("*.gif"))
    assert clips == ["step-0000002-00-3.gif", "step-0000002-00-4.gif"]
    assert read_video(tmp_path / "motion_module" / "validation" / clips[0]).shape == (4, 16, 16, 3)


def test_shapes_world_datasets_feed_the_stages(tmp_path, tiny_base):
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    render_dataset(
        tmp_path / "images", DatasetSpec(kind="images", count=4, seed=1, size=32)
    )  # the text-to-image domain, PNG files
    render_dataset(tmp_path / "clips", DatasetSpec(kind="clips", count=4, seed=2, size=32, frames=8, layout="webvid"))
    images = write_config(
        tmp_path, tiny_base, tmp_path / "images", "image_finetune", data={"frames": 1, "size": 16}, train={"steps": 1}
    )
    clips = write_config(
        tmp_path,
        tiny_base,
        tmp_path / "clips",
        "motion_module",
        train={"steps": 1},
        data={
            "format": "webvid",
            "csv": str(tmp_path / "clips" / "results.csv"),
            "path": str(tmp_path / "clips" / "videos"),
        },
    )
    for config in (images, clips):
        run = train(load_train_config(config))
        assert run.result.exists() and run.skipped == []


def test_image_lora_stage_saves_a_lora_that_generate_takes(tmp_path, tiny_base, videos, tiny_motion_module_file):
    run = train(
        load_train_config(write_config(tmp_path, tiny_base, videos, "image_lora", lora_rank=4, train={"steps": 2}))
    )
    saved = load_file(run.result)
    assert all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in saved)
    base = load_base(tiny_base)
    layer_name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    before = base.unet.get_submodule(layer_name).weight.detach().clone()
    from animatediff import apply_image_lora

    apply_image_lora(base, run.result, scale=0.5)
    update = saved[f"unet.{layer_name}.lora_B.weight"] @ saved[f"unet.{layer_name}.lora_A.weight"]
    assert update.abs().max() > 0
    torch.testing.assert_close(base.unet.get_submodule(layer_name).weight.detach(), before + 0.5 * update)
    common = [
        "generate",
        "a cat",
        "--base",
        str(tiny_base),
        "--motion-module",
        str(tiny_motion_module_file),
        "--frames",
        "2",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "1",
        "--seed",
        "1",
    ]
    assert main([*common, "--lora", f"{run.result}:1.0", "-o", str(tmp_path / "styled.gif")]) == 0


@pytest.fixture(scope="module")
def class_images(tmp_path_factory):
    """Prior-preservation data: still shapes-world images, unlike the moving squares the stages learn from."""
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    folder = tmp_path_factory.mktemp("class_images")
    render_dataset(folder, DatasetSpec(kind="images", count=8, seed=5, size=32))
    return folder


STILLS = {"frames": 1, "stride": 1}  # the image stages learn from single frames, and so from the class images


def test_prior_preservation_loss_adds_the_weighted_prior_mean():
    from animatediff.training.losses import prior_preservation_loss

    losses = torch.tensor([1.0, 3.0, 10.0, 20.0])  # two personalization samples, then two prior samples
    assert float(prior_preservation_loss(losses, 2, 0.5)) == pytest.approx(2.0 + 0.5 * 15.0)
    assert float(prior_preservation_loss(losses, 2, 0.0)) == pytest.approx(2.0)


def lora_update(result) -> dict[str, torch.Tensor]:
    saved = load_file(result)
    return {key: saved[key] @ saved[key.replace("lora_B", "lora_A")] for key in saved if ".lora_B." in key}


def test_prior_preservation_weight_zero_trains_like_none_and_weight_one_differs(
    tmp_path, tiny_base, videos, class_images
):
    prior = {"format": "jsonl", "path": str(class_images)}
    runs = {}
    for name, extra in [
        ("none", {}),
        ("zero", {"prior_data": prior, "train": {"prior_loss_weight": 0.0}}),
        ("one", {"prior_data": prior, "train": {"prior_loss_weight": 1.0}}),
    ]:
        extra = {**extra, "train": {"steps": 3, **extra.get("train", {})}, "data": STILLS}
        config = load_train_config(
            write_config(tmp_path, tiny_base, videos, "image_lora", name=name, lora_rank=4, **extra)
        )
        runs[name] = lora_update(train(config).result)
    change = sum(float((update**2).sum()) for update in runs["none"].values()) ** 0.5
    difference = {
        name: sum(float(((runs[name][k] - runs["none"][k]) ** 2).sum()) for k in runs["none"]) ** 0.5
        for name in ("zero", "one")
    }
    # λ = 0: the same samples, noise and timesteps, only in a batch twice the size (float rounding apart)
    assert difference["zero"] < 0.01 * change
    assert difference["one"] > 0.1 * change


def test_prior_preservation_resumes_to_the_same_weights(tmp_path, tiny_base, videos, class_images):
    prior = {"format": "jsonl", "path": str(class_images)}
    settings = {"steps": 4, "checkpoint_every": 2, "keep_checkpoints": 5}
    whole = train(
        load_train_config(
            write_config(
                tmp_path,
                tiny_base,
                videos,
                "image_finetune",
                name="whole",
                prior_data=prior,
                train=settings,
                data=STILLS,
            )
        )
    )
    halves = write_config(
        tmp_path,
        tiny_base,
        videos,
        "image_finetune",
        name="halves",
        prior_data=prior,
        train={**settings, "steps": 2},
        data=STILLS,
    )
    train(load_train_config(halves))
    halves = write_config(
        tmp_path, tiny_base, videos, "image_finetune", name="halves", prior_data=prior, train=settings, data=STILLS
    )
    resumed = train(load_train_config(halves), resume=True)
    assert resumed.steps == 2
    expected = load_file(whole.result / "diffusion_pytorch_model.safetensors")
    final = load_file(resumed.result / "diffusion_pytorch_model.safetensors")
    assert sum(not torch.equal(final[key], value) for key, value in expected.items()) == 0


@pytest.mark.parametrize(
    ("stage", "change", "message"),
    [
        ("motion_module", {}, "'prior_data': only the image_finetune and image_lora stages take it; this is motion"),
        (
            "image_lora",
            {"prior_data": {"format": "jsonl", "path": "/nonexistent"}},
            "'prior_data.path': /nonexistent does not exist",
        ),
        ("image_lora", {"train": {"prior_loss_weight": -1.0}}, "'train.prior_loss_weight' must be at least 0"),
    ],
)
def test_prior_data_errors_name_the_field(tmp_path, tiny_base, videos, class_images, stage, change, message):
    change = {"prior_data": {"format": "jsonl", "path": str(class_images)}, **change}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_train_config(write_config(tmp_path, tiny_base, videos, stage, **change))
