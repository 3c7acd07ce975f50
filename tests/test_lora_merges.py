"""Domain adapter and MotionLoRA merges against a hand-computed W + scale·up@down."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff import CheckpointError, apply_domain_adapter, apply_motion_lora
from animatediff.cli import main
from animatediff.formats import official_to_diffusers
from animatediff.lora import lora_target
from helpers import random_motion_module, tiny_unet
from test_checkpoint_layouts import motion_lora_state


def adapter_state(unet, rank=4, seed=0):
    """An official-format domain adapter on every attn1/attn2 q, k, v, out of the image UNet."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, layer in unet.named_modules():
        if name.endswith(("attn1", "attn2")):
            for projection in ("q", "k", "v", "out"):
                linear = layer.to_out[0] if projection == "out" else getattr(layer, f"to_{projection}")
                prefix = f"{name}.processor.to_{projection}_lora"
                state[f"{prefix}.down.weight"] = torch.randn(rank, linear.in_features, generator=generator) * 0.1
                state[f"{prefix}.up.weight"] = torch.randn(linear.out_features, rank, generator=generator) * 0.1
    return state


def expected_weights(model, state, scale):
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    for key in state:
        if key.endswith(".down.weight"):
            target = lora_target(key) + ".weight"
            weights[target] += scale * state[key.replace(".down.", ".up.")] @ state[key]
    return weights


def assert_weights(model, expected):
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), expected[name], rtol=0, atol=1e-6, msg=name)


def test_lora_target_names_the_adapted_linear():
    key = "down_blocks.0.attentions.1.transformer_blocks.0.attn2.processor.to_out_lora.down.weight"
    assert lora_target(key) == "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_out.0"


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0])
def test_domain_adapter_merge_is_w_plus_scale_up_down(tmp_path, scale):
    unet = tiny_unet()
    state = adapter_state(unet)
    torch.save(state, tmp_path / "v3_sd15_adapter.ckpt")
    expected = expected_weights(unet, state, scale)
    changed = apply_domain_adapter(unet, tmp_path / "v3_sd15_adapter.ckpt", scale)
    assert changed == len(state) // 2 == 4 * 2 * 6  # q,k,v,out × attn1/attn2 × (2 down + 1 mid + 3 up) blocks
    assert_weights(unet, expected)


def test_motion_loras_compose_by_weighted_sum(tmp_path):
    module = random_motion_module()
    zoom, pan = motion_lora_state(seed=1), motion_lora_state(seed=2)
    torch.save(zoom, tmp_path / "zoom.ckpt")
    save_file(official_to_diffusers(pan, "unet."), tmp_path / "pan_diffusers.safetensors")
    expected = expected_weights(module, zoom, 0.7)
    for key in pan:
        if key.endswith(".down.weight"):
            expected[lora_target(key) + ".weight"] += 0.4 * pan[key.replace(".down.", ".up.")] @ pan[key]
    apply_motion_lora(module, tmp_path / "zoom.ckpt", 0.7)
    apply_motion_lora(module, tmp_path / "pan_diffusers.safetensors", 0.4)
    assert_weights(module, expected)


def test_wrong_kind_of_lora_is_refused_and_nothing_changes(tmp_path):
    unet, module = tiny_unet(), random_motion_module()
    torch.save(adapter_state(unet), tmp_path / "adapter.ckpt")
    torch.save(motion_lora_state(), tmp_path / "motion_lora.ckpt")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointError, match="adapter.ckpt: this file is a domain adapter .*, not a MotionLoRA"):
        apply_motion_lora(module, tmp_path / "adapter.ckpt")
    with pytest.raises(CheckpointError, match="motion_lora.ckpt: this file is a MotionLoRA .*, not a domain adapter"):
        apply_domain_adapter(unet, tmp_path / "motion_lora.ckpt")
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())


def test_lora_for_another_width_is_refused_before_any_change(tmp_path):
    module = random_motion_module()
    state = motion_lora_state()
    last = sorted(k for k in state if k.endswith(".down.weight"))[-1]
    state[last] = torch.randn(2, 48)
    torch.save(state, tmp_path / "bad.ckpt")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(CheckpointError, match="bad.ckpt: the LoRA for .* is 32×48, but the layer is 32×32"):
        apply_motion_lora(module, tmp_path / "bad.ckpt")
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())


def test_motion_lora_and_adapter_change_the_cli_frames(tmp_path, tiny_base, tiny_motion_module_file):
    from animatediff import read_video

    torch.save(motion_lora_state(rank=4), tmp_path / "lora.ckpt")
    torch.save(adapter_state(tiny_unet()), tmp_path / "adapter.ckpt")
    common = [
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
        "2",
        "--seed",
        "1",
    ]
    variants = {
        "plain": [],
        "lora": ["--motion-lora", f"{tmp_path / 'lora.ckpt'}:0.8"],
        "adapter": ["--domain-adapter", str(tmp_path / "adapter.ckpt"), "--domain-adapter-scale", "1.0"],
        "adapter0": ["--domain-adapter", str(tmp_path / "adapter.ckpt"), "--domain-adapter-scale", "0"],
    }
    frames = {}
    for name, extra in variants.items():
        assert main([*common, *extra, "-o", str(tmp_path / name)]) == 0
        frames[name] = read_video(tmp_path / name).astype(int)
    assert np.abs(frames["lora"] - frames["plain"]).mean() > 0.5
    assert np.abs(frames["adapter"] - frames["plain"]).mean() > 0.5
    np.testing.assert_array_equal(frames["adapter0"], frames["plain"])
