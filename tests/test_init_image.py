"""Image to video without SparseCtrl (as the A1111 extension does it): an init image, and a last one, blended
into the starting latents with a weight that falls over the frames, then noised to a strength."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from animatediff import load_base, read_video
from animatediff.cli import main
from animatediff.control import InitImage
from animatediff.control.init_latents import encode_frames, image_latents
from helpers import assert_bfloat16_close
from lab.control_report import input_clip


def test_the_image_weights_fall_over_the_frames_and_a_last_image_rises_to_the_end():
    image = torch.zeros(3, 8, 8)
    first, last = InitImage(image, falloff=4).weights(6)
    torch.testing.assert_close(first, torch.tensor([1, 0.75, 0.5, 0.25, 0, 0]))
    assert torch.all(last == 0)
    first, last = InitImage(image, last=image, falloff=4).weights(6)
    torch.testing.assert_close(last, torch.tensor([0, 0, 0.25, 0.5, 0.75, 1]))
    assert torch.all(first + last <= 1 + 1e-6)
    first, last = InitImage(image, last=image, falloff=32).weights(3)  # both want every frame: shared
    torch.testing.assert_close(first + last, torch.ones(3))


def test_frame_latents_are_the_image_where_its_weight_is_one_and_noise_where_it_is_zero(tiny_base):
    vae = load_base(tiny_base).vae
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    latents = image_latents(vae, InitImage(image, falloff=2), 4, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    encoded = encode_frames(vae, image[None], generator)[0]  # the same draws, in the same order
    noise = torch.randn((4, *encoded.shape), generator=generator)
    torch.testing.assert_close(latents[0], encoded)
    torch.testing.assert_close(latents[1], 0.5 * encoded + 0.5 * noise[1])
    torch.testing.assert_close(latents[3], noise[3])


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory):
    """The first frame of a held-out clip as the world renders it (the embedded model's size)."""
    path = tmp_path_factory.mktemp("keyframe") / "first.png"
    Image.fromarray(input_clip("a red triangle moving right on a white background", 1, 32)[0]).save(path)
    return path


def test_an_init_image_starts_the_embedded_clip_from_it(tmp_path, keyframe, capsys):
    prompt = "a red triangle moving right on a white background"
    common = ["generate", prompt, "--seed", "2", "--frames", "8"]
    assert main([*common, "-o", str(tmp_path / "plain.gif")]) == 0
    assert main([*common, "--init-image", str(keyframe), "--init-strength", "0.6", "-o", str(tmp_path / "i.gif")]) == 0
    image = np.asarray(Image.open(keyframe)).astype(int)
    plain, started = read_video(tmp_path / "plain.gif").astype(int), read_video(tmp_path / "i.gif").astype(int)
    assert np.abs(started[0] - image).mean() < 0.6 * np.abs(plain[0] - image).mean()
    settings = json.loads((tmp_path / "i.gif.json").read_text())
    assert settings["init_image"] == str(keyframe.resolve())
    assert (settings["init_strength"], settings["init_falloff"], settings["last_image"]) == (0.6, 32.0, None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--last-image", "first.png"], "a last image goes with an init image"),
        (["--init-image", "first.png", "--init-video", "first.png"], "an init image and an init video both"),
        (["--init-image", "first.png", "--init-strength", "0"], "init_strength must be more than 0"),
        (["--init-image", "first.png", "--init-falloff", "-1"], "init_falloff must be more than 0 frames"),
        (["--init-image", "missing.png"], "init image missing.png: no such file or folder"),
        (["--init-image", "notes.txt"], "init image notes.txt: not an image PIL can read"),
        (["--init-falloff", "8"], "--init-falloff and the IP-Adapter image need an --init-video, an --init-image"),
    ],
)
def test_bad_init_images_exit_2_naming_the_value(tmp_path, keyframe, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "first.png").write_bytes(keyframe.read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["generate", "a red circle", "--frames", "4", "--steps", "2", *extra, "-o", "x.gif"]) == 2
    assert message in capsys.readouterr().err


def test_a_prompt_config_takes_the_init_image_keys(tmp_path, keyframe):
    config = tmp_path / "prompts.yaml"
    config.write_text(
        f"- prompt: [a red triangle moving right on a white background]\n  seed: 3\n  L: 4\n  steps: 4\n"
        f"  init_image: {keyframe}\n  last_image: {keyframe}\n  init_strength: 0.5\n"
        "  init_falloff: 2\n"
    )
    assert main(["generate", "--config", str(config), "--output-dir", str(tmp_path / "out")]) == 0
    settings = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert (settings["init_strength"], settings["init_falloff"]) == (0.5, 2.0)
    assert settings["last_image"] == str(keyframe.resolve())


def test_an_init_image_and_a_last_image_run_in_bfloat16_as_in_float32(tmp_path, keyframe):
    common = [
        "generate",
        "a red triangle moving right on a white background",
        "--seed",
        "2",
        "--frames",
        "8",
        "--init-image",
        str(keyframe),
        "--last-image",
        str(keyframe),
    ]
    for dtype in ("float32", "bfloat16"):
        assert main([*common, "--dtype", dtype, "-o", str(tmp_path / f"{dtype}.gif")]) == 0
    assert_bfloat16_close(read_video(tmp_path / "float32.gif"), read_video(tmp_path / "bfloat16.gif"))
