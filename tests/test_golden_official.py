"""The official implementation's own outputs for a tiny v2 model (tests/data/official-v2), reproduced."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from animatediff import AnimateDiffPipeline, initial_noise, load_base, load_motion_module, read_video
from animatediff.cli import main
from helpers import GOLDEN

CASE = json.loads((GOLDEN / "case.json").read_text())
TOLERANCE = CASE["suggested_tolerances"]


@pytest.fixture(scope="module")
def pipeline():
    motion_module = load_motion_module(GOLDEN / CASE["motion_module"])
    return AnimateDiffPipeline.from_components(load_base(GOLDEN / CASE["base_model"]), motion_module)


def golden_frames():
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((GOLDEN / "frames").glob("*.png"))])


def test_motion_module_version_is_read_from_the_checkpoint(pipeline):
    config = pipeline.unet.motion_module.config
    assert config.mid_block and config.max_frames == 32 and not config.image_norm_over_frames
    assert not config.norm_over_frames


def test_initial_noise_matches(pipeline):
    noise = initial_noise(tuple(CASE["latent_shape"]), torch.Generator("cpu").manual_seed(CASE["seed"]))
    np.testing.assert_array_equal(noise.numpy(), np.load(GOLDEN / "init_latents.npy"))
    assert pipeline.vae_scale_factor == CASE["vae_scale_factor"]


def test_text_embeddings_match(pipeline):
    states = pipeline.encode_prompt(CASE["prompt"], CASE["n_prompt"], guidance=True)
    expected = np.load(GOLDEN / "text_embeddings.npy")
    np.testing.assert_allclose(states.numpy(), expected, atol=TOLERANCE["text_embeddings"], rtol=0)


def test_timesteps_match(pipeline):
    pipeline.scheduler.set_timesteps(CASE["steps"])
    assert pipeline.scheduler.timesteps.tolist() == CASE["timesteps"]


@torch.no_grad()
def test_first_unet_output_matches(pipeline):
    noise = torch.from_numpy(np.load(GOLDEN / "init_latents.npy"))
    states = torch.from_numpy(np.load(GOLDEN / "text_embeddings.npy"))
    eps = pipeline.unet(torch.cat([noise] * 2), torch.tensor(CASE["timesteps"][0]), states)
    np.testing.assert_allclose(eps.numpy(), np.load(GOLDEN / "eps_step0.npy"), atol=TOLERANCE["eps_step0"], rtol=0)


def test_video_matches_through_the_python_api(pipeline):
    video = pipeline.generate(
        CASE["prompt"],
        negative_prompt=CASE["n_prompt"],
        num_frames=CASE["L"],
        height=CASE["H"],
        width=CASE["W"],
        steps=CASE["steps"],
        guidance_scale=CASE["guidance_scale"],
        seed=CASE["seed"],
        progress=False,
    )
    expected = np.load(GOLDEN / "video.npy")[0].transpose(1, 0, 2, 3)  # (3, f, h, w) -> (f, 3, h, w)
    np.testing.assert_allclose(video.numpy(), expected, atol=TOLERANCE["video"], rtol=0)


def test_every_step_latent_matches(pipeline):
    states = pipeline.encode_prompt(CASE["prompt"], CASE["n_prompt"], guidance=True)
    noise = torch.from_numpy(np.load(GOLDEN / "init_latents.npy"))
    steps = pipeline.denoising_steps(noise, states, CASE["steps"], CASE["guidance_scale"], progress=False)
    latents = torch.stack(list(steps))
    expected = np.load(GOLDEN / "step_latents.npy")
    np.testing.assert_allclose(latents.numpy(), expected, atol=TOLERANCE["step_latents"], rtol=0)


def test_frames_match_through_the_cli(tmp_path):
    output = tmp_path / "frames"
    code = main(
        [
            "generate",
            CASE["prompt"],
            "--negative-prompt",
            CASE["n_prompt"],
            "--base",
            str(GOLDEN / CASE["base_model"]),
            "--motion-module",
            str(GOLDEN / CASE["motion_module"]),
            "--frames",
            str(CASE["L"]),
            "--width",
            str(CASE["W"]),
            "--height",
            str(CASE["H"]),
            "--steps",
            str(CASE["steps"]),
            "--guidance-scale",
            str(CASE["guidance_scale"]),
            "--seed",
            str(CASE["seed"]),
            "--output",
            str(output),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    frames = read_video(output).astype(int)
    assert frames.shape == (CASE["L"], CASE["H"], CASE["W"], 3)
    assert np.abs(frames - golden_frames()).max() <= 1


def test_frames_match_through_the_official_prompt_config(tmp_path, monkeypatch):
    monkeypatch.chdir(GOLDEN)  # the config's paths are relative to the working directory, as officially
    code = main(
        [
            "generate",
            "--config",
            "configs/prompt-v2.yaml",
            "--base",
            "base_model",
            "--output-dir",
            str(tmp_path),
            "--format",
            "png",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.name == f"000-waves-crashing-on-a-rocky-coastline-{CASE['seed']}"
    assert np.abs(read_video(folder).astype(int) - golden_frames()).max() <= 1
    sidecar = json.loads((tmp_path / f"{folder.name}.json").read_text())
    assert sidecar["negative_prompt"] == CASE["n_prompt"] and sidecar["steps"] == CASE["steps"]
