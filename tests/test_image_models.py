"""Personalized image models: single-file DreamBooth checkpoints (LDM layout) and image LoRAs."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff import CheckpointError, apply_dreambooth, apply_image_lora, load_base, read_video
from animatediff.cli import main
from helpers import save_tiny_base, tiny_text_encoder, tiny_unet, tiny_vae
from ldm_layout import to_ldm_checkpoint

SMALL = ["--frames", "3", "--width", "16", "--height", "16", "--steps", "2", "--seed", "4"]


@pytest.fixture(scope="module")
def personalized(tmp_path_factory):
    """A 'DreamBooth' model (other weights, same architecture) as a diffusers folder and as single files."""
    folder = tmp_path_factory.mktemp("dreambooth")
    unet, vae, text_encoder = tiny_unet(21), tiny_vae(21), tiny_text_encoder(21)
    checkpoint = to_ldm_checkpoint(unet, vae, text_encoder)
    save_file(checkpoint, folder / "personal.safetensors")
    torch.save({"state_dict": checkpoint, "global_step": 1000}, folder / "personal.ckpt")
    save_tiny_base(folder / "as_diffusers", seed=21)
    return folder, (unet, vae, text_encoder)


@pytest.mark.parametrize("name", ["personal.safetensors", "personal.ckpt"])
def test_dreambooth_single_file_replaces_every_image_weight(tiny_base, personalized, name):
    folder, models = personalized
    components = apply_dreambooth(load_base(tiny_base), folder / name, tiny_base)
    for loaded, source in zip((components.unet, components.vae, components.text_encoder), models, strict=True):
        for key, value in source.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_dreambooth_frames_equal_the_same_model_as_a_diffusers_folder(
    tmp_path, tiny_base, personalized, tiny_motion_module_file
):
    folder, _ = personalized
    motion = ["--motion-module", str(tiny_motion_module_file), *SMALL]
    main(
        [
            "generate",
            "a cat",
            "--base",
            str(tiny_base),
            "--dreambooth",
            str(folder / "personal.safetensors"),
            *motion,
            "-o",
            str(tmp_path / "single"),
        ]
    )
    main(["generate", "a cat", "--base", str(folder / "as_diffusers"), *motion, "-o", str(tmp_path / "folder")])
    main(["generate", "a cat", "--base", str(tiny_base), *motion, "-o", str(tmp_path / "base")])
    np.testing.assert_array_equal(read_video(tmp_path / "single"), read_video(tmp_path / "folder"))
    assert np.abs(read_video(tmp_path / "single").astype(int) - read_video(tmp_path / "base")).mean() > 1


def test_sdxl_checkpoint_is_refused(tmp_path, tiny_base):
    save_file(
        {"model.diffusion_model.x": torch.zeros(1), "conditioner.embedders.0.y": torch.zeros(1)},
        tmp_path / "sdxl.safetensors",
    )
    with pytest.raises(CheckpointError, match="sdxl.safetensors: this is an SDXL checkpoint"):
        apply_dreambooth(load_base(tiny_base), tmp_path / "sdxl.safetensors", tiny_base)


def test_single_file_base_without_configs_offline_says_what_to_do(tmp_path, personalized, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, _ = personalized
    code = main(
        [
            "generate",
            "a cat",
            "--base",
            str(folder / "personal.safetensors"),
            "--motion-module",
            "none",
            *SMALL,
            "-o",
            str(tmp_path / "o.gif"),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "personal.safetensors: a single-file checkpoint needs the SD1.5 model configs" in error
    assert "--dreambooth" in error


def kohya_lora(rank=4, alpha=2.0, seed=0):
    """A kohya/civitai LoRA on one UNet attention and one text-encoder attention (all four projections)."""
    generator = torch.Generator().manual_seed(seed)
    unet = "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_"
    text = "lora_te_text_model_encoder_layers_1_self_attn_"
    names = [unet + p for p in ("q", "k", "v", "out_0")] + [
        text + p for p in ("q_proj", "k_proj", "v_proj", "out_proj")
    ]
    state = {}
    for key in names:
        state[f"{key}.lora_down.weight"] = torch.randn(rank, 32, generator=generator)
        state[f"{key}.lora_up.weight"] = torch.randn(32, rank, generator=generator)
        state[f"{key}.alpha"] = torch.tensor(alpha)
    return state


def test_kohya_lora_merges_with_its_alpha_over_rank(tmp_path, tiny_base):
    state = kohya_lora(rank=4, alpha=2.0)
    save_file(state, tmp_path / "style.safetensors")
    components = load_base(tiny_base)
    unet_layer = components.unet.down_blocks[0].attentions[1].transformer_blocks[0].attn2.to_v
    text_layer = next(m for n, m in components.text_encoder.named_modules() if n.endswith("layers.1.self_attn.q_proj"))
    before = unet_layer.weight.detach().clone(), text_layer.weight.detach().clone()
    apply_image_lora(components, tmp_path / "style.safetensors", scale=0.8)
    prefix = "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_v"  # attn2's k/v see text: 32 wide
    delta = state[f"{prefix}.lora_up.weight"] @ state[f"{prefix}.lora_down.weight"]
    torch.testing.assert_close(unet_layer.weight.detach(), before[0] + 0.8 * (2.0 / 4) * delta)
    prefix = "lora_te_text_model_encoder_layers_1_self_attn_q_proj"
    delta = state[f"{prefix}.lora_up.weight"] @ state[f"{prefix}.lora_down.weight"]
    torch.testing.assert_close(text_layer.weight.detach(), before[1] + 0.8 * (2.0 / 4) * delta)
    assert type(unet_layer) is torch.nn.Linear  # fused, no adapter layers left behind


def test_diffusers_format_lora_merges(tmp_path, tiny_base):
    generator = torch.Generator().manual_seed(3)
    name = "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    down, up = torch.randn(2, 32, generator=generator), torch.randn(32, 2, generator=generator)
    save_file({f"{name}.lora_A.weight": down, f"{name}.lora_B.weight": up}, tmp_path / "peft.safetensors")
    components = load_base(tiny_base)
    layer = components.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    before = layer.weight.detach().clone()
    apply_image_lora(components, tmp_path / "peft.safetensors", scale=0.5)
    torch.testing.assert_close(layer.weight.detach(), before + 0.5 * up @ down)


def test_lora_flag_takes_path_and_scale(tmp_path, tiny_base, tiny_motion_module_file):
    save_file(kohya_lora(), tmp_path / "style.safetensors")
    base = ["generate", "a cat", "--base", str(tiny_base), "--motion-module", str(tiny_motion_module_file), *SMALL]
    main([*base, "-o", str(tmp_path / "plain")])
    main([*base, "--lora", f"{tmp_path / 'style.safetensors'}:0", "-o", str(tmp_path / "zero")])
    main([*base, "--lora", f"{tmp_path / 'style.safetensors'}:1.5", "-o", str(tmp_path / "styled")])
    np.testing.assert_array_equal(read_video(tmp_path / "zero"), read_video(tmp_path / "plain"))
    assert np.abs(read_video(tmp_path / "styled").astype(int) - read_video(tmp_path / "plain")).mean() > 0.5


def test_inspect_names_a_single_file_checkpoint(personalized, capsys):
    folder, _ = personalized
    assert main(["inspect", str(folder / "personal.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "a single-file Stable Diffusion checkpoint (ldm layout)" in printed and "family: sd1" in printed
    assert "dtype: float32, int64" in printed  # the text encoder's position ids are int64


def test_truncated_single_file_base_exits_2(tmp_path, personalized, capsys):
    folder, _ = personalized
    data = (folder / "personal.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:1000])
    code = main(
        [
            "generate",
            "a cat",
            "--base",
            str(tmp_path / "cut.safetensors"),
            "--motion-module",
            "none",
            *SMALL,
            "-o",
            str(tmp_path / "o.gif"),
        ]
    )
    assert code == 2
    assert "cut.safetensors: not a readable safetensors file" in capsys.readouterr().err
