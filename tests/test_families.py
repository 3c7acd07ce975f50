"""Model families: each release told apart (weights, metadata, name, --family), its sampling preset, and the
few-step presets reproducing diffusers' pipelines as the releases' model cards set them up."""

import json

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline as DiffusersAnimateDiffPipeline
from diffusers import EulerDiscreteScheduler, LCMScheduler, PNDMScheduler
from safetensors.torch import save_file

from animatediff import load_base, load_motion_module, read_video, save_motion_module
from animatediff.cli import main
from animatediff.families import FAMILIES, resolve
from animatediff.formats import (
    module_header,
    motion_module_family,
    motion_module_table,
    official_to_diffusers,
    to_motion_adapter,
)
from animatediff.loading import build_pipeline
from animatediff.planner import with_family
from animatediff.settings import ModelSpec
from helpers import random_motion_module, tiny_config

SMALL = ["--frames", "3", "--width", "16", "--height", "16", "--device", "cpu"]
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    steps_offset=1,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    clip_sample=False,
)


def lightning_file(folder, steps=4, name=None):
    """A tiny module in AnimateDiff-Lightning's released layout: diffusers keys, v2's mid block, no metadata."""
    module = random_motion_module(tiny_config(mid_block=True), seed=steps)
    path = folder / (name or f"animatediff_lightning_{steps}step_diffusers.safetensors")
    save_file({k: v.contiguous() for k, v in official_to_diffusers(module.state_dict()).items()}, str(path))
    return path


def animatelcm_file(folder, name="AnimateLCM_sd15_t2v.ckpt"):
    """A tiny module in AnimateLCM's released layout: official keys, a pickled state dict, no position tables."""
    module = random_motion_module(tiny_config(), seed=9)
    state = {key: value for key, value in module.state_dict().items() if not key.endswith("pos_encoder.pe")}
    torch.save(state, folder / name)
    return folder / name


def test_each_rule_decides_the_release_in_its_order(tmp_path):
    lightning = lightning_file(tmp_path)
    assert motion_module_family(lightning) == (FAMILIES["lightning-4"], f"file name: {lightning.name}")
    renamed = lightning_file(tmp_path, name="my_module.safetensors")
    assert motion_module_family(renamed) == (FAMILIES["v2"], "weights: mid block True")
    assert motion_module_family(renamed, "lightning-8") == (FAMILIES["lightning-8"], "--family")
    lcm = animatelcm_file(tmp_path, name="renamed.ckpt")  # no position table: its weights alone tell
    assert module_header(lcm).max_frames is None
    assert motion_module_table(lcm) == load_motion_module(lcm).config.max_frames == 64  # the table it loads with
    assert motion_module_family(lcm) == (FAMILIES["animatelcm"], "weights: no position table")
    module = random_motion_module(tiny_config(mid_block=True))
    stated = save_motion_module(module, tmp_path / "x_lightning_2step.safetensors", family="lightning-1")
    assert motion_module_family(stated) == (FAMILIES["lightning-1"], "metadata: animatediff.family = lightning-1")
    # weights that tell on their own beat a name: a 24-frame table is v1's, whatever the file is called
    assert resolve("animatediff_lightning_4step.ckpt", 4, False, 24) == (
        FAMILIES["v1"],
        "weights: mid block False, max frames 24",
    )
    assert resolve("animatediff_lightning_4step.ckpt", 3, False, 32)[0].name == "sdxl"  # an SDXL layout


def test_a_lightning_module_samples_with_its_preset_and_the_sidecar_says_why(tmp_path, tiny_base, caplog):
    module = lightning_file(tmp_path)
    output = tmp_path / "clip"
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(tiny_base),
                "--motion-module",
                str(module),
                *SMALL,
                "--seed",
                "3",
                "-o",
                str(output),
            ]
        )
        == 0
    )
    settings = json.loads((tmp_path / "clip.json").read_text())
    assert (settings["steps"], settings["guidance_scale"]) == (4, 1.0)
    assert settings["family"] == {"name": "lightning-4", "decided_by": f"file name: {module.name}"}
    scheduler = settings["scheduler"]
    assert (scheduler["name"], scheduler["class"], scheduler["timestep_spacing"]) == (
        "euler",
        "EulerDiscreteScheduler",
        "trailing",
    )
    assert (scheduler["beta_schedule"], scheduler["beta_start"], scheduler["beta_end"]) == ("linear", 0.00085, 0.012)
    assert read_video(output).std() > 1
    assert "was made for" not in caplog.text
    # a step count it was not distilled for: it runs, with a warning naming the counts it was made for
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(tiny_base),
                "--motion-module",
                str(module),
                *SMALL,
                "--steps",
                "6",
                "-o",
                str(tmp_path / "six"),
            ]
        )
        == 0
    )
    assert "was made for 4 steps; 6 steps may give" in caplog.text


def test_an_animatelcm_module_samples_with_its_preset_and_flags_still_win(tmp_path, tiny_base):
    module = animatelcm_file(tmp_path)
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(tiny_base),
                "--motion-module",
                str(module),
                *SMALL,
                "-o",
                str(tmp_path / "lcm"),
            ]
        )
        == 0
    )
    settings = json.loads((tmp_path / "lcm.json").read_text())
    assert (settings["steps"], settings["guidance_scale"], settings["scheduler"]["name"]) == (6, 2.0, "lcm")
    assert settings["family"] == {"name": "animatelcm", "decided_by": "weights: no position table"}
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--base",
                str(tiny_base),
                "--motion-module",
                str(module),
                *SMALL,
                "--steps",
                "3",
                "--guidance-scale",
                "1.5",
                "--scheduler",
                "euler",
                "--family",
                "v3",
                "-o",
                str(tmp_path / "flags"),
            ]
        )
        == 0
    )
    settings = json.loads((tmp_path / "flags.json").read_text())
    assert (settings["steps"], settings["guidance_scale"], settings["scheduler"]["name"]) == (3, 1.5, "euler")
    assert settings["family"] == {"name": "v3", "decided_by": "--family"}


def test_a_prompt_config_takes_the_family_and_its_defaults(tmp_path, tiny_base, capsys):
    module = lightning_file(tmp_path, name="module.safetensors")  # named nothing: the config says what it is
    config = tmp_path / "prompts.yaml"
    config.write_text(
        f"- motion_module: {module}\n  family: lightning-2\n  prompt: [a red circle]\n  seed: 5\n"
        "  W: 16\n  H: 16\n  L: 3\n"
    )
    assert (
        main(
            [
                "generate",
                "--config",
                str(config),
                "--base",
                str(tiny_base),
                "--output-dir",
                str(tmp_path / "out"),
                "--format",
                "png",
            ]
        )
        == 0
    )
    settings = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert (settings["steps"], settings["guidance_scale"], settings["family"]["name"]) == (2, 1.0, "lightning-2")
    config.write_text(f"- motion_module: {module}\n  family: lightning-3\n  prompt: [a red circle]\n")
    assert main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(tmp_path)]) == 2
    assert "entry 0, 'family': expected one of sdxl, animatelcm, v1, lightning-1" in capsys.readouterr().err
    assert main(["generate", "x", "--base", str(tiny_base), "--motion-module", str(module), "--family", "v9"]) == 2
    assert "argument --family: invalid choice: 'v9'" in capsys.readouterr().err


@pytest.mark.parametrize("release", ["lightning-4", "animatelcm"])
def test_the_presets_reproduce_diffusers_as_the_model_cards_set_it_up(tmp_path, tiny_base, release):
    path = lightning_file(tmp_path) if release == "lightning-4" else animatelcm_file(tmp_path)
    spec = ModelSpec(base=tiny_base, motion_module=path, motion_module_settings={"norm_over_frames": True})
    spec = with_family(spec)  # diffusers pools the motion GroupNorm over frames: run it so for the comparison
    assert spec.family == release
    ours = build_pipeline(spec)
    preset = spec.release
    # the model cards: Lightning `EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing=
    # "trailing", beta_schedule="linear")`, guidance 1; AnimateLCM `LCMScheduler.from_config(pipe.scheduler.config,
    # beta_schedule="linear")`, guidance 2, 6 steps
    sd15 = PNDMScheduler.from_config(SD15_SCHEDULER).config
    scheduler = (
        EulerDiscreteScheduler.from_config(sd15, timestep_spacing="trailing", beta_schedule="linear")
        if release == "lightning-4"
        else LCMScheduler.from_config(sd15, beta_schedule="linear")
    )
    base = load_base(tiny_base)
    reference = DiffusersAnimateDiffPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        scheduler=scheduler,
        motion_adapter=to_motion_adapter(load_motion_module(path, norm_over_frames=True)),
    )
    reference.set_progress_bar_config(disable=True)
    settings = dict(num_frames=4, height=16, width=16)
    expected = reference(
        "a red circle",
        num_inference_steps=preset.steps,
        guidance_scale=preset.guidance_scale,
        generator=torch.Generator("cpu").manual_seed(4),
        output_type="np",
        **settings,
    ).frames[0]
    video = ours.generate(
        "a red circle", steps=preset.steps, guidance_scale=preset.guidance_scale, seed=4, progress=False, **settings
    )
    frames = video.permute(0, 2, 3, 1).numpy()
    assert frames.shape == expected.shape and frames.std() > 0.01
    assert np.abs(frames - expected).max() < 1e-4


def test_an_lcm_lora_for_another_base_is_refused_naming_both_widths(tmp_path, tiny_base, capsys):
    unet = load_base(tiny_base).unet
    lora = {}  # AnimateLCM's SDXL LoRA in kohya's naming: its cross-attention reads 2048-wide text states
    for name, layer in unet.named_modules():
        if name.endswith(("attn2.to_k", "attn2.to_v")):
            prefix = "lora_unet_" + name.replace(".", "_")
            lora[f"{prefix}.lora_down.weight"] = torch.randn(4, 2048)
            lora[f"{prefix}.lora_up.weight"] = torch.zeros(layer.out_features, 4)
    path = tmp_path / "AnimateLCM_sdxl_t2v_lora.safetensors"
    save_file(lora, str(path))
    module = animatelcm_file(tmp_path)
    code = main(
        [
            "generate",
            "a red circle",
            "--base",
            str(tiny_base),
            "--motion-module",
            str(module),
            "--lora",
            str(path),
            *SMALL,
            "-o",
            str(tmp_path / "x.gif"),
        ]
    )
    assert code == 2
    width = unet.config.cross_attention_dim
    expected = f"lora {path}: made for an image model whose text states are 2048 wide (SDXL); this base's are {width}"
    assert expected in capsys.readouterr().err
