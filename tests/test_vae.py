"""`--vae`: an autoencoder replacing the base's, from a diffusers folder or a single file in LDM keys.

A replacement VAE must give the frames a base whose own vae/ is that VAE gives, bit for bit; the LDM files are
written with the independent key table in `ldm_layout` and read back through diffusers' single-file conversion.
"""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from animatediff import read_video
from animatediff.cli import main
from helpers import tiny_vae
from ldm_layout import vae_to_ldm

# float32 named: the module's reference is made before the function-scoped fixture that fixes what auto means
SMALL = ["--frames", "3", "--width", "16", "--height", "16", "--steps", "2", "--seed", "4", "--dtype", "float32"]


@pytest.fixture(scope="module")
def vaes(tmp_path_factory, tiny_base):
    """Another tiny VAE (same shape as the base's, other weights) as a diffusers folder and as single files, and
    the base with that VAE as its own vae/ (the reference)."""
    folder = tmp_path_factory.mktemp("vae")
    vae = tiny_vae(seed=11)
    vae.save_pretrained(folder / "diffusers")
    ldm = vae_to_ldm(vae)
    save_file(ldm, folder / "with_prefix.safetensors")  # as the VAE part of a whole SD checkpoint
    bare = {key.removeprefix("first_stage_model."): value for key, value in ldm.items()}
    save_file(bare, folder / "bare.safetensors")  # as vae-ft-mse-840000-ema-pruned.safetensors is published
    torch.save({"state_dict": bare, "global_step": 840000}, folder / "bare.ckpt")
    save_file(vae.state_dict(), folder / "diffusers_keys.safetensors")  # a diffusers folder's weights alone
    reference = shutil.copytree(tiny_base, folder / "reference_base")
    shutil.rmtree(reference / "vae")
    vae.save_pretrained(reference / "vae")
    return folder


def generate(base, motion_module, output, *extra):
    args = ["generate", "a cat", "--base", str(base), "--motion-module", str(motion_module), *SMALL]
    return main([*args, "-o", str(output), *extra])


@pytest.fixture(scope="module")
def reference_frames(tmp_path_factory, vaes, tiny_motion_module_file):
    output = tmp_path_factory.mktemp("reference") / "reference.gif"
    assert generate(vaes / "reference_base", tiny_motion_module_file, output) == 0
    return read_video(output)


@pytest.mark.parametrize(
    "name", ["diffusers", "bare.safetensors", "bare.ckpt", "with_prefix.safetensors", "diffusers_keys.safetensors"]
)
def test_vae_gives_the_frames_of_a_base_whose_own_vae_it_is(
    tmp_path, tiny_base, tiny_motion_module_file, vaes, reference_frames, name
):
    output = tmp_path / "swapped.gif"
    assert generate(tiny_base, tiny_motion_module_file, output, "--vae", str(vaes / name)) == 0
    np.testing.assert_array_equal(read_video(output), reference_frames)
    assert json.loads((tmp_path / "swapped.gif.json").read_text())["vae"] == str((vaes / name).resolve())


def test_vae_changes_the_frames(tmp_path, tiny_base, tiny_motion_module_file, reference_frames):
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "own.gif") == 0
    assert np.abs(read_video(tmp_path / "own.gif").astype(int) - reference_frames).mean() > 1


def test_a_model_folder_gives_its_vae(tmp_path, tiny_base, tiny_motion_module_file, vaes, reference_frames):
    output = tmp_path / "swapped.gif"
    assert generate(tiny_base, tiny_motion_module_file, output, "--vae", str(vaes / "reference_base")) == 0
    np.testing.assert_array_equal(read_video(output), reference_frames)


def test_prompt_config_vae_key(tmp_path, tiny_base, tiny_motion_module_file, vaes, reference_frames):
    config = tmp_path / "prompts.yaml"
    entry = {"motion_module": str(tiny_motion_module_file), "vae": str(vaes / "bare.safetensors"), "prompt": ["a cat"]}
    config.write_text(yaml.safe_dump([{**entry, "seed": 4, "W": 16, "H": 16, "L": 3, "steps": 2}]))
    run = ["generate", "--config", str(config), "--base", str(tiny_base), "--dtype", "float32"]
    assert main([*run, "--output-dir", str(tmp_path)]) == 0
    (output,) = tmp_path.glob("*.gif")
    np.testing.assert_array_equal(read_video(output), reference_frames)


def test_a_file_of_another_kind_is_refused(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    code = generate(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", "--vae", str(tiny_motion_module_file))
    assert code == 2
    error = capsys.readouterr().err
    assert f"{tiny_motion_module_file}: this file is a motion module" in error and "not a VAE" in error
    assert "Traceback" not in error and not (tmp_path / "o.gif").exists()


def test_a_folder_of_another_kind_is_refused(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    vae = str(tiny_base / "unet")
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", "--vae", vae) == 2
    error = capsys.readouterr().err
    assert "expected a diffusers AutoencoderKL folder; its config.json names UNet2DConditionModel" in error


def other_latents_vae(latent_channels: int, levels: int) -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32,) * levels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=latent_channels,
        norm_num_groups=32,
        layers_per_block=1,
    )


@pytest.mark.parametrize(
    ("latent_channels", "levels", "found"), [(8, 2, "8 channels at 1/2"), (4, 3, "4 channels at 1/4")]
)
@pytest.mark.parametrize("form", ["folder", "file"])
def test_a_vae_making_other_latents_is_refused_naming_both(
    tmp_path, tiny_base, tiny_motion_module_file, capsys, latent_channels, levels, found, form
):
    vae = other_latents_vae(latent_channels, levels)
    path = tmp_path / "other"
    if form == "folder":
        vae.save_pretrained(path)
    else:
        path = path.with_suffix(".safetensors")
        save_file(vae_to_ldm(vae), path)
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", "--vae", str(path)) == 2
    error = capsys.readouterr().err
    assert f"vae {path}: its latents have {found} of the frame size; the base's VAE makes 4 channels at 1/2" in error


def test_a_pickled_object_in_a_ckpt_is_never_run(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": vae_to_ldm(tiny_vae(3)), "callback": Exploit(tmp_path / "ran")}, path)
    assert generate(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", "--vae", str(path)) == 2
    assert not (tmp_path / "ran").exists() and str(path) in capsys.readouterr().err


class Exploit:
    """An object whose unpickling would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))
