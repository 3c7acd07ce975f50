"""Frame interpolation, scored against the shapes world's own in-between frames."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from animatediff.cli import main
from animatediff.export import read_video, write_video
from animatediff.finishing.interpolation import blend_between, flow_between, interpolate
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import prompt_clip
from test_cli import generate


def full_rate(prompt: str, factor: int, frames: int, size: int = 64) -> np.ndarray:
    """The world's clip of `prompt` rendered at `factor` times its frame rate: every factor-th frame is the clip."""
    spec = prompt_clip(prompt, seed=1)
    return render_clip(replace(spec, speed=spec.speed / factor), frames=(frames - 1) * factor + 1, size=size)


def psnr(made: np.ndarray, truth: np.ndarray) -> float:
    error = ((made.astype(np.float64) - truth) ** 2).mean()
    return float(10 * np.log10(255**2 / error))


def test_flow_beats_blending_the_dropped_frames_of_a_rendered_clip():
    truth = full_rate("a red triangle moving right on a white background", factor=2, frames=5)
    new = slice(1, None, 2)  # the frames interpolation makes
    flow = interpolate(truth[::2], 2, between=flow_between, progress=False)
    blend = interpolate(truth[::2], 2, between=blend_between, progress=False)
    assert np.array_equal(flow[::2], truth[::2])  # the given frames are kept exactly
    assert psnr(flow[new], truth[new]) > psnr(blend[new], truth[new]) + 6


def centre_x(frame: np.ndarray) -> float:
    """The x centroid of the pixels that differ from the corner's (the background)."""
    _, xs = np.nonzero(np.abs(frame.astype(int) - frame[0, 0]).sum(-1) > 60)
    return float(xs.mean())


def test_a_looped_interpolation_flows_from_the_last_frame_back_to_the_first():
    clip = full_rate("a yellow circle moving right on a black background", factor=1, frames=4)
    made = interpolate(clip, 3, loop=True, progress=False)
    assert made.shape == (12, *clip.shape[1:])
    assert np.array_equal(made[::3], clip)
    last, first = centre_x(clip[-1]), centre_x(clip[0])
    assert last - first > 4  # the object jumps back by three steps (1.5 pixels each)
    for index, t in ((10, 1 / 3), (11, 2 / 3)):  # the new frames after the last: on the way back to the first
        assert centre_x(made[index]) == pytest.approx(last + t * (first - last), abs=0.25)  # a cross-fade: 0.7 off


def test_interpolate_command_writes_k_times_the_frames_and_refuses_a_bad_factor(tmp_path, capsys):
    clip = full_rate("a blue square moving up on a white background", factor=1, frames=4, size=32)
    write_video(clip, tmp_path / "in.mp4", fps=8, lossless=True)
    assert main(["interpolate", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out"), "--factor", "3"]) == 0
    made = read_video(tmp_path / "out")
    assert made.shape == (10, 32, 32, 3) and np.array_equal(made[::3], clip)
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["fps"] == 24 and sidecar["interpolation_factor"] == 3 and sidecar["interpolate"]["input_frames"] == 4
    for factor in ("0", "17"):
        assert main(["interpolate", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "bad.gif"), "--factor", factor]) == 2
        assert f"from 2 to 16 (output frames per input frame); got {factor}." in capsys.readouterr().err
    assert not (tmp_path / "bad.gif").exists()


def test_generate_interpolate_multiplies_the_frames_and_the_frame_rate(tmp_path, tiny_base, tiny_motion_module_file):
    plain, finished = tmp_path / "plain", tmp_path / "finished"
    assert generate(tiny_base, tiny_motion_module_file, plain, "--seed", "3") == 0
    assert generate(tiny_base, tiny_motion_module_file, finished, "--seed", "3", "--interpolate", "2") == 0
    frames, made = read_video(plain), read_video(finished)
    assert made.shape == (9, *frames.shape[1:]) and np.array_equal(made[::2], frames)
    sidecar = json.loads((tmp_path / "finished.json").read_text())
    assert (sidecar["interpolate"], sidecar["fps"], sidecar["frames"], sidecar["output_frames"]) == (2, 16, 5, 9)
    assert sidecar["request"]["interpolate"] == 2


def rife_weights(blocks=((39, 16, 13), (52, 8, 13)), head=(4, 16), seed=0) -> dict:
    """Random weights in Practical-RIFE 4.25's key layout (a `flownet.pkl` as its training saves it: `module.`
    prefixed), at a tiny width."""
    from animatediff.finishing.rife import IFNet, Layout

    torch.manual_seed(seed)
    net = IFNet(Layout(blocks, head))
    return {f"module.{key}": value for key, value in net.state_dict().items()}


def test_rife_weights_load_through_interpolator_and_keep_identical_frames(tmp_path, capsys):
    torch.save(rife_weights(), tmp_path / "flownet.pkl")
    frame = np.full((1, 30, 36, 3), (200, 90, 40), np.uint8)  # any flow warps a plain frame to itself
    write_video(np.concatenate([frame, frame]), tmp_path / "still", fps=8)
    args = ["interpolate", str(tmp_path / "still"), "-o", str(tmp_path / "out"), "--factor", "4"]
    assert main([*args, "--interpolator", str(tmp_path / "flownet.pkl")]) == 0
    made = read_video(tmp_path / "out")
    assert made.shape == (5, 30, 36, 3)  # padded to the network's multiple and cropped back
    assert np.abs(made.astype(int) - frame[0]).max() <= 1  # the two frames fused by the mask: that frame
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["interpolate"]["interpolation_method"].startswith("RIFE 4.x IFNet (2 blocks, with feature head)")
    torch.save({"down_blocks.0.motion_modules.0.weight": torch.zeros(2)}, tmp_path / "mm.ckpt")
    assert main([*args, "--interpolator", str(tmp_path / "mm.ckpt")]) == 2
    assert "not RIFE 4.x weights" in capsys.readouterr().err
