"""CameraCtrl: camera poses → Plücker embeddings → pose encoder → pose layers in the motion module.

The reference is the release's own code (hehao13/CameraCtrl, run by `data/cameractrl/make_reference.py` on
tiny random weights): its dataset's Plücker embedding of `poses.txt`, its pose encoder's features and its
camera-conditioned video UNet's noise prediction.
"""

import json
import math

import numpy as np
import pytest
import torch

from animatediff.camera_poses import PRESETS, check_frame_count, parse_poses, preset_poses
from animatediff.cameractrl import CameraPoseEncoder, PoseEncoderConfig, pose_attentions
from animatediff.cli import main
from animatediff.conditioning import load_cameractrl
from animatediff.control.camera import plucker_embedding, pose_embedding, relative_poses
from animatediff.errors import CheckpointError, ConfigError
from animatediff.families import FAMILIES
from animatediff.formats import Kind, identify, kind_of, load_motion_module
from animatediff.inflation import inflate
from helpers import DATA, random_motion_module, tiny_config, tiny_unet

CAMERA = DATA / "cameractrl"
POSES, CKPT, MODULE = CAMERA / "poses.txt", CAMERA / "cameractrl.ckpt", CAMERA / "motion_module.ckpt"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(CAMERA / "reference.npz"))


def test_plucker_embedding_is_the_releases(reference):
    poses = parse_poses(POSES.read_text(), "poses.txt")
    embedding = pose_embedding(poses, 16, 24)
    np.testing.assert_allclose(embedding.numpy(), reference["plucker"], atol=1e-5)


def test_plucker_embedding_of_a_known_pose_by_hand():
    """A camera at (1, 2, 3) looking down +z: the centre pixel's ray is (0, 0, 1), its moment o × d = (2, -1, 0);
    a pixel one focal length to the right looks along (1, 0, 1)/√2."""
    camera_to_world = torch.eye(4)[None].clone()
    camera_to_world[0, :3, 3] = torch.tensor([1.0, 2.0, 3.0])
    intrinsics = torch.tensor([[2.0, 2.0, 1.5, 1.5]])  # fx fy cx cy in pixels of a 3×5 image
    plucker = plucker_embedding(intrinsics, camera_to_world, 3, 5)[0]  # 6 h w
    torch.testing.assert_close(plucker[:, 1, 1], torch.tensor([2.0, -1.0, 0.0, 0.0, 0.0, 1.0]))
    d = torch.tensor([1.0, 0.0, 1.0]) / math.sqrt(2)
    moment = torch.linalg.cross(torch.tensor([1.0, 2.0, 3.0]), d, dim=0)
    torch.testing.assert_close(plucker[:, 1, 3], torch.cat([moment, d]))


def test_poses_are_made_relative_to_the_first_camera():
    poses = preset_poses("orbit-left", 5)
    shifted = type(poses)(poses.intrinsics, poses.world_to_camera @ torch.linalg.inv(_turned()))  # another world
    relative = relative_poses(shifted)
    torch.testing.assert_close(relative[0], torch.eye(4))
    torch.testing.assert_close(relative, relative_poses(poses), atol=1e-6, rtol=0)


def _turned() -> torch.Tensor:
    """A rigid move of the world: turned about z and shifted."""
    move = torch.eye(4, dtype=torch.float64)
    move[:3, :3] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    move[:3, 3] = torch.tensor([4.0, -2.0, 0.5], dtype=torch.float64)
    return move


def test_a_tiny_camera_ctrl_predicts_the_releases_noise(reference):
    motion_module = load_motion_module(MODULE)
    camera = load_cameractrl(CKPT, motion_module)
    unet = inflate(tiny_unet(0), motion_module)
    latents, text = torch.from_numpy(reference["latents"]), torch.from_numpy(reference["text"])
    with torch.no_grad():
        features = camera.encode(torch.from_numpy(reference["plucker"]))
        for level, feature in enumerate(features):
            np.testing.assert_allclose(feature.numpy(), reference[f"feature_{level}"], atol=1e-4)
        with camera.conditioned(features):
            eps = unet(latents, torch.tensor([500]), text)
        without_poses = unet(latents, torch.tensor([500]), text)
    np.testing.assert_allclose(eps.numpy(), reference["eps"], atol=1e-4)
    assert np.abs(without_poses.numpy() - reference["eps"]).max() > 0.1  # the pose layers do act


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("https://example\n", "holds no poses"),
        ("url\n0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1\n", "line 2: has 18 values"),
        ("url\n0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 x\n", "line 2: could not convert"),
        (
            "url\n0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n\n1 0.5 0.9 0.5 0.5 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            "line 4",
        ),
        ("0 0 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n", "line 1: the focal lengths"),
        ("0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 nan\n", "NaN"),
    ],
)
def test_a_bad_pose_file_is_refused_with_its_line(text, said):
    with pytest.raises(ConfigError, match="camera poses p.txt") as error:
        parse_poses(text, "p.txt")
    assert said in str(error.value)


def test_presets_fit_any_frame_count_and_start_at_the_first_camera():
    for name in PRESETS:
        for frames in (1, 8, 16):
            poses = preset_poses(name, frames)
            assert len(poses) == frames
            torch.testing.assert_close(relative_poses(poses)[0], torch.eye(4))
    from animatediff.request import declarations

    documented = (DATA.parents[1] / "docs" / "reference.md").read_text()
    assert all(name in declarations()["camera_poses"].help and f"`{name}`" in documented for name in PRESETS)
    last = relative_poses(preset_poses("pan-left", 8))[-1]
    assert last[0, 3] < -0.9  # moved left (−x in OpenCV axes)
    check_frame_count(preset_poses("zoom-in", 8), 8, "zoom-in")
    with pytest.raises(ConfigError, match="8 poses for a clip of 6 frames"):
        check_frame_count(preset_poses("zoom-in", 8), 6, "zoom-in")


def test_a_camera_ctrl_file_is_told_from_its_keys():
    assert kind_of(CKPT) == Kind.CAMERACTRL and kind_of(MODULE) == Kind.MOTION_MODULE
    details = identify(CKPT).details
    assert (details["version"], details["block_out_channels"], details["pose_layers"]) == ("cameractrl", (32, 64), 10)
    assert identify(MODULE).details["version"] == "v3"
    assert FAMILIES["cameractrl"].guidance_scale == 14.0
    with pytest.raises(CheckpointError, match="is a CameraCtrl pose encoder"):
        load_motion_module(CKPT)
    with pytest.raises(
        CheckpointError,
        match=r"pose layers do not fit this motion module \(1 of its attentions without one, e.g. mid_block",
    ):
        load_cameractrl(CKPT, random_motion_module(tiny_config(mid_block=True)))  # a v2 layout: a mid block


def test_convert_writes_the_release_file_as_safetensors_that_loads_the_same(tmp_path):
    from animatediff.formats import convert_checkpoint
    from animatediff.formats.layouts import Layout

    target = tmp_path / "CameraCtrl.safetensors"
    assert convert_checkpoint(CKPT, target, Layout.OFFICIAL).kind == Kind.CAMERACTRL
    plucker = torch.zeros(2, 6, 8, 8)
    plucker[:, :, 2] = 1.0
    encodings = [load_cameractrl(path, load_motion_module(MODULE)).encode(plucker) for path in (CKPT, target)]
    for ours, theirs in zip(*encodings, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="one key layout"):
        convert_checkpoint(CKPT, tmp_path / "x.safetensors", Layout.DIFFUSERS)


def _generate(tiny_base, output, *extra):
    common = ["generate", "a red circle", "--base", tiny_base, "--motion-module", MODULE, "--camera-ctrl", CKPT]
    common += ["--frames", "8", "--width", "24", "--height", "16", "--steps", "2", "--seed", "3", "-o", output]
    return main([*map(str, common), *map(str, extra)])


def test_generate_follows_camera_poses_and_records_them(tiny_base, tmp_path, capsys):
    assert _generate(tiny_base, tmp_path / "file", "--camera-poses", POSES) == 0
    assert _generate(tiny_base, tmp_path / "pan", "--camera-poses", "pan-left") == 0
    settings = json.loads((tmp_path / "file.json").read_text())
    assert settings["camera_poses"] == str(POSES.resolve()) and settings["camera_ctrl"] == str(CKPT.resolve())
    assert settings["family"]["name"] == "cameractrl" and settings["guidance_scale"] == 14.0
    frames = [np.stack([np.asarray(_png(p)) for p in sorted((tmp_path / n).glob("*.png"))]) for n in ("file", "pan")]
    assert frames[0].shape == (8, 16, 24, 3) and np.abs(frames[0].astype(int) - frames[1]).mean() > 0.5
    assert _generate(tiny_base, tmp_path / "short", "--camera-poses", POSES, "--frames", "6") == 2
    assert "8 poses for a clip of 6 frames" in capsys.readouterr().err


def _png(path):
    from PIL import Image

    return Image.open(path)


def release_file(motion_module, downscale: int, path, seed: int = 0):
    """A CameraCtrl file in the release's layout for `motion_module` (random weights; the pose layers small)."""
    torch.manual_seed(seed)
    config = PoseEncoderConfig(channels=motion_module.config.block_out_channels, downscale=downscale)
    merges = {}
    for name, (attention, _) in pose_attentions(motion_module).items():
        width = attention.to_q.in_features
        merges[f"{name}.processor.qkv_merge.weight"] = torch.randn(width, width) * 0.02
        merges[f"{name}.processor.qkv_merge.bias"] = torch.zeros(width)
    encoder = CameraPoseEncoder(config).state_dict()
    torch.save({"pose_encoder_state_dict": encoder, "attention_processor_state_dict": merges}, path)
    return path


def test_the_api_takes_a_camera_ctrl_from_the_models_folder_and_a_preset(tiny_base, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from animatediff.app.server import ServerOptions, create_app
    from test_app import wait

    folder = tmp_path / "models"
    shutil.copytree(tiny_base, folder / "tiny")
    (folder / "tiny" / "model_index.json").write_text("{}")  # what makes a folder a model in the app's lists
    for path in (CKPT, MODULE):
        shutil.copy(path, folder / path.name)
    app = create_app(ServerOptions(outputs=tmp_path / "out", models=folder), page=False)
    request = {"prompt": "a red circle", "base": "tiny", "motion_module": MODULE.name, "camera_ctrl": CKPT.name}
    request |= {"camera_poses": "orbit-right", "frames": 8, "width": 24, "height": 16, "steps": 2, "seed": 1}
    with TestClient(app) as client:
        assert client.get("/api/models").json()["models"]["camera_ctrl"] == [CKPT.name]
        record = wait(client, client.post("/api/generate", json=request).json()["id"])
    assert record["state"] == "done", record["error"]
    assert record["settings"]["camera_poses"] == "orbit-right"
    assert record["settings"]["family"]["name"] == "cameractrl"
