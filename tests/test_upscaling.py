"""Upscaling and the hires fix: tiles that overlap enough give one tile's pixels, the latent upscalers resize as
A1111's do, strength 0 returns the upscaled frames, and the second pass is the package's own video-to-video of
the upscaled clip at the new size (from the command line both ways)."""

import json

import numpy as np
import pytest
import torch
from einops import repeat
from PIL import Image
from torch import nn

from animatediff import read_video
from animatediff.cli import main
from animatediff.errors import CheckpointError
from animatediff.finishing.upscaling import (
    SR_WRAPPERS,
    lanczos,
    load_model_upscaler,
    model_upscale,
    upscale_latents,
)
from animatediff.formats.safe import read_state_dict

SMALL = ["--frames", "4", "--width", "32", "--height", "24", "--steps", "4", "--device", "cpu", "--seed", "3"]


def esrgan_shaped(scale: int = 2, width: int = 8) -> nn.Module:
    """ESRGAN's layout at toy width: a first convolution, a residual trunk, nearest-neighbour ×2 upsampling
    each followed by a convolution, then two convolutions at the output size (random, seeded)."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Conv2d(3, width, 3, padding=1)
            self.trunk = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2))
            self.ups = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(scale // 2))
            self.hr = nn.Conv2d(width, width, 3, padding=1)
            self.last = nn.Conv2d(width, 3, 3, padding=1)

        def forward(self, x):
            x = self.first(x)
            x = x + self.trunk(x)
            for up in self.ups:
                x = nn.functional.leaky_relu(up(nn.functional.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
            return torch.sigmoid(self.last(nn.functional.leaky_relu(self.hr(x), 0.2)))

    return Net().eval()


def real_esrgan_file(path, width: int = 8, growth: int = 32, blocks: int = 1):
    """A tiny random file in Real-ESRGAN x4plus's published layout: its keys (`conv_first`, `body.N.rdbK.convJ`,
    `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`) nested under `params_ema`, as its .pth is; the
    growth of 32 channels is the release's, which spandrel assumes."""
    generator = torch.Generator().manual_seed(0)

    def conv(name, into, out_of):
        state[f"{name}.weight"] = torch.randn(into, out_of, 3, 3, generator=generator) * 0.05
        state[f"{name}.bias"] = torch.zeros(into)

    state = {}
    conv("conv_first", width, 3)
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for index in range(1, 6):
                conv(f"body.{block}.rdb{rdb}.conv{index}", growth if index < 5 else width, width + (index - 1) * growth)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, width, width)
    conv("conv_last", 3, width)
    torch.save({"params_ema": state}, path)
    return state


def test_a_super_resolution_release_nested_under_params_ema_is_read_whole(tmp_path):
    state = real_esrgan_file(tmp_path / "x4.pth")
    read = read_state_dict(tmp_path / "x4.pth", SR_WRAPPERS)
    assert read.keys() == state.keys() and torch.equal(read["conv_last.weight"], state["conv_last.weight"])
    assert read_state_dict(tmp_path / "x4.pth") == {}  # the default wrappers do not look inside `params_ema`


def test_a_real_esrgan_shaped_file_is_recognised_by_spandrel_and_runs_tiled(tmp_path):
    pytest.importorskip("spandrel", exc_type=ImportError)  # spandrel imports torchvision, which needs its own torch
    real_esrgan_file(tmp_path / "x4.pth")
    model = load_model_upscaler(tmp_path / "x4.pth")
    assert (model.architecture.name, model.scale, model.purpose) == ("ESRGAN", 4, "SR")
    frames = np.random.default_rng(3).integers(0, 256, (1, 24, 40, 3), dtype=np.uint8)
    whole = model_upscale(model, 4, frames, (160, 96), tile=1000)
    tiles = model_upscale(model, 4, frames, (160, 96), tile=16, overlap=24)  # 19 convolutions at input size
    assert whole.shape == (1, 96, 160, 3) and whole.std() > 0
    assert np.abs(tiles.astype(int) - whole).max() <= 1
    torch.save({"params_ema": {"encoder.weight": torch.zeros(4, 4)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a super-resolution model spandrel knows"):
        load_model_upscaler(tmp_path / "other.pth")


def test_tiles_that_overlap_enough_give_the_pixels_of_one_tile():
    frames = np.random.default_rng(0).integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    net = esrgan_shaped()
    whole = model_upscale(net, 2, frames, (112, 80), tile=1000)
    overlapping = model_upscale(net, 2, frames, (112, 80), tile=16, overlap=8)
    seams = model_upscale(net, 2, frames, (112, 80), tile=16, overlap=0)
    assert whole.shape == (2, 80, 112, 3)
    assert np.abs(overlapping.astype(int) - whole).max() <= 1  # within 1/255
    assert np.abs(seams.astype(int) - whole).max() > 1  # without context the tiles' edges differ


def test_a_model_upscaler_to_another_scale_is_finished_by_lanczos():
    frames = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    net = esrgan_shaped()
    made = model_upscale(net, 2, frames, (48, 48))
    own = model_upscale(net, 2, frames, (32, 32))
    assert np.array_equal(made, lanczos(own, (48, 48)))


def test_the_nearest_exact_latent_upscaler_repeats_each_latent_pixel():
    latents = torch.randn(1, 4, 3, 5, 6)
    assert torch.equal(
        upscale_latents(latents, (10, 12), "nearest-exact"),
        repeat(latents, "b c f h w -> b c f (h 2) (w 2)"),
    )
    bicubic = upscale_latents(latents, (10, 12), "bicubic")
    reference = nn.functional.interpolate(latents[0].transpose(0, 1), size=(10, 12), mode="bicubic")
    assert torch.allclose(bicubic[0].transpose(0, 1), reference)


def generate(tiny_base, motion_module, output, *extra):
    args = ["generate", "a red circle moving right", "--base", str(tiny_base), "--motion-module", str(motion_module)]
    return main([*args, *SMALL, "-o", str(output), *extra])


def test_strength_0_returns_the_first_pass_upscaled_and_the_second_pass_is_video_to_video(
    tmp_path, tiny_base, tiny_motion_module_file
):
    first, module = tmp_path / "first", tiny_motion_module_file
    assert generate(tiny_base, module, first) == 0
    upscaled = lanczos(read_video(first), (64, 48))
    assert generate(tiny_base, module, tmp_path / "alone", "--upscale", "2", "--upscale-strength", "0") == 0
    assert np.array_equal(read_video(tmp_path / "alone"), upscaled)
    # the second pass: the same prompt, models and seed denoising the upscaled clip from 0.5 at 64×48
    (tmp_path / "init").mkdir()
    for index, frame in enumerate(upscaled):
        Image.fromarray(frame).save(tmp_path / "init" / f"{index:05d}.png")
    assert generate(tiny_base, module, tmp_path / "hires", "--upscale", "2", "--upscale-strength", "0.5") == 0
    by_hand = ["--init-video", str(tmp_path / "init"), "--strength", "0.5", "--width", "64", "--height", "48"]
    assert generate(tiny_base, module, tmp_path / "v2v", *by_hand) == 0
    hires = read_video(tmp_path / "hires")
    assert hires.shape == (4, 48, 64, 3) and not np.array_equal(hires, upscaled)
    assert np.array_equal(hires, read_video(tmp_path / "v2v"))
    sidecar = json.loads((tmp_path / "hires.json").read_text())
    assert (sidecar["upscale"], sidecar["upscaler"], sidecar["upscale_strength"]) == (2.0, "lanczos", 0.5)
    assert (sidecar["width"], sidecar["upscaled_width"], sidecar["upscaled_height"]) == (32, 64, 48)


@pytest.mark.parametrize("upscaler", ["lanczos", "latent"])
def test_a_masked_upscaled_clip_keeps_its_input_outside_its_mask(
    tmp_path, tiny_base, tiny_motion_module_file, upscaler
):
    from animatediff.export import write_video
    from animatediff.media import read_frames

    source = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    write_video(source, tmp_path / "input")
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    masked = ["--init-video", str(tmp_path / "input"), "--mask", str(tmp_path / "mask.png"), "--mask-blur", "0"]
    hires = ["--upscale", "2", "--upscaler", upscaler, "--upscale-strength", "0.5"]
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "o", *masked, *hires) == 0
    made, given = read_video(tmp_path / "o"), read_frames(tmp_path / "input", "init video", 4, (64, 48))
    assert made.shape == given.shape == (4, 48, 64, 3)
    assert np.array_equal(made[:, :, :32], given[:, :, :32])  # kept: the input itself, at the new size
    assert np.abs(made[:, :, 32:].astype(int) - given[:, :, 32:]).mean() > 10  # redrawn


def test_generate_with_the_latent_upscaler_makes_the_upscaled_size(tmp_path, tiny_base, tiny_motion_module_file):
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "o", "--upscale", "2", "--upscaler", "latent") == 0
    assert read_video(tmp_path / "o").shape == (4, 48, 64, 3)
    assert json.loads((tmp_path / "o.json").read_text())["request"]["upscaler"] == "latent"


def test_the_upscale_command_upscales_a_clip_and_refuses_an_unknown_model_file(tmp_path, capsys):
    clip = np.random.default_rng(2).integers(0, 256, (3, 12, 20, 3), dtype=np.uint8)
    (tmp_path / "clip").mkdir()
    for index, frame in enumerate(clip):
        Image.fromarray(frame).save(tmp_path / "clip" / f"{index:05d}.png")
    assert main(["upscale", str(tmp_path / "clip"), "-o", str(tmp_path / "big"), "--scale", "2.5"]) == 0
    assert np.array_equal(read_video(tmp_path / "big"), lanczos(clip, (50, 30)))
    sidecar = json.loads((tmp_path / "big.json").read_text())
    assert sidecar["upscale"] == 2.5 and sidecar["input"] == str((tmp_path / "clip").resolve())
    (tmp_path / "notes.pth").write_bytes(b"not a model")
    bad = ["upscale", str(tmp_path / "clip"), "-o", str(tmp_path / "x.gif"), "--scale", "2"]
    capsys.readouterr()
    assert main([*bad, "--upscaler", str(tmp_path / "notes.pth")]) == 2
    assert f"upscaler {tmp_path / 'notes.pth'}" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--upscaler", "latent"], "act on --upscale S"),
        (["--upscale", "8", "--width", "64", "--height", "64", "--frames", "4096"], "its second pass"),
    ],
)
def test_bad_upscales_exit_2_before_anything_is_made(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setattr("animatediff.memory.available_bytes", lambda device: 4 * 2**30)  # the clip fits, ×8 not
    assert main(["generate", "a red circle", *extra, "-o", str(tmp_path / "o.gif")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.gif").exists()
