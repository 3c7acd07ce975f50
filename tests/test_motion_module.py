import math

import pytest
import torch
from einops import rearrange

from animatediff.motion_module import (
    MotionModule,
    MotionModuleConfig,
    TemporalAttention,
    TemporalModule,
    sinusoidal_table,
)
from helpers import random_motion_module, tiny_config


def random_features(frames=6, channels=32, batch=2, size=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch * frames, channels, size, size, generator=generator)


def random_temporal_module(config=None, channels=32, seed=0, std=0.1):
    module = random_motion_module(config or tiny_config(), seed=seed, std=std).down_blocks[0].motion_modules[0]
    assert module.temporal_transformer.norm.num_channels == channels
    return module


def test_output_has_the_input_shape():
    module = random_temporal_module()
    x = random_features(frames=6)
    assert module(x, num_frames=6).shape == x.shape


def test_fresh_module_is_the_identity():
    module = TemporalModule(32, tiny_config())
    x = random_features()
    torch.testing.assert_close(module(x, num_frames=6), x, rtol=0, atol=0)


def test_position_table_is_the_sinusoidal_formula():
    table = sinusoidal_table(32, 8)
    assert table.shape == (1, 32, 8)
    position, channel = 5, 3  # odd channel: cos(position / 10000^(2i/d)) with 2i = channel - 1
    assert math.isclose(table[0, position, channel].item(), math.cos(position / 10000 ** (2 / 8)), rel_tol=1e-6)
    assert math.isclose(table[0, position, 2].item(), math.sin(position / 10000 ** (2 / 8)), rel_tol=1e-6)


def _reverse_frames(x, frames):
    return rearrange(rearrange(x, "(b f) c h w -> b f c h w", f=frames).flip(1), "b f c h w -> (b f) c h w")


def test_position_encoding_makes_output_depend_on_frame_order():
    module = random_temporal_module(std=0.5)
    x = random_features(frames=6)
    reversed_out = module(_reverse_frames(x, 6), num_frames=6)
    assert (_reverse_frames(reversed_out, 6) - module(x, num_frames=6)).abs().max() > 1e-2


def test_without_position_encoding_frame_order_is_invisible():
    # Attention over a set is permutation-equivariant: reversing the input reverses the output.
    module = random_temporal_module(tiny_config(position_encoding=False))
    x = random_features(frames=6)
    reversed_out = module(_reverse_frames(x, 6), num_frames=6)
    torch.testing.assert_close(_reverse_frames(reversed_out, 6), module(x, num_frames=6), rtol=1e-5, atol=1e-5)


def test_frames_of_different_clips_do_not_mix():
    module = random_temporal_module()
    x = random_features(frames=4, batch=2)
    both = module(x, num_frames=4)
    first_alone = module(x[:4], num_frames=4)
    torch.testing.assert_close(both[:4], first_alone, rtol=1e-5, atol=1e-5)


def test_spatial_positions_do_not_mix():
    # Past the GroupNorm (which pools over space), changing one pixel changes the output there only.
    module = random_temporal_module()
    module.temporal_transformer.norm.forward = lambda x: x
    x = random_features(frames=4, batch=1)
    changed = x.clone()
    changed[:, :, 1, 2] += 1.0
    difference = (module(changed, num_frames=4) - module(x, num_frames=4)).abs().amax(dim=(0, 1))
    assert difference[1, 2] > 1e-2
    difference[1, 2] = 0
    assert difference.max() < 1e-5


def test_attention_matches_softmax_reference():
    torch.manual_seed(0)
    attention = TemporalAttention(dim=32, heads=8, max_frames=32, position_encoding=True)
    x = torch.randn(5, 6, 32)
    h = x + sinusoidal_table(32, 32)[:, :6]
    q, k, v = (
        rearrange(p(h), "n f (heads d) -> n heads f d", heads=8)
        for p in (attention.to_q, attention.to_k, attention.to_v)
    )
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attention.to_out(rearrange(weights @ v, "n heads f d -> n f (heads d)"))
    torch.testing.assert_close(attention(x), expected, rtol=1e-5, atol=1e-5)


def test_per_frame_groupnorm_is_blind_to_other_frames():
    # Per frame (official SD1.5): scaling one frame's features does not change how others are normed.
    norm = random_temporal_module().temporal_transformer.norm
    x = random_features(frames=4, batch=1)
    scaled = x.clone()
    scaled[0] *= 10
    torch.testing.assert_close(norm(scaled)[1:], norm(x)[1:])


def test_pooled_groupnorm_normalises_over_all_frames():
    module = random_temporal_module(tiny_config(norm_over_frames=True))
    transformer = module.temporal_transformer
    x = random_features(frames=4, batch=1)
    pooled = torch.nn.functional.group_norm(
        rearrange(x, "f c h w -> 1 c f h w"), 32, transformer.norm.weight, transformer.norm.bias, eps=1e-6
    )
    per_frame = transformer.norm(x)
    assert (rearrange(pooled, "1 c f h w -> f c h w") - per_frame).abs().max() > 1e-2
    # The pooled module's output equals the per-frame module's with the pooled normalisation swapped in.
    per_frame_module = random_temporal_module(tiny_config(norm_over_frames=False))
    per_frame_module.load_state_dict(module.state_dict())
    per_frame_module.temporal_transformer.norm.forward = lambda _: rearrange(pooled, "1 c f h w -> f c h w")
    torch.testing.assert_close(module(x, num_frames=4), per_frame_module(x, num_frames=4))


def test_parameter_names_follow_the_official_layout():
    names = set(MotionModule(tiny_config()).state_dict())
    prefix = "down_blocks.0.motion_modules.1.temporal_transformer."
    assert prefix + "transformer_blocks.0.attention_blocks.1.pos_encoder.pe" in names
    assert prefix + "transformer_blocks.0.ff.net.0.proj.weight" in names
    assert prefix + "transformer_blocks.0.ff_norm.weight" in names
    assert "up_blocks.1.motion_modules.2.temporal_transformer.proj_out.bias" in names
    assert "mid_block.motion_modules.0.temporal_transformer.norm.weight" in names
    assert not any(name.startswith("mid_block") for name in MotionModule(tiny_config(mid_block=False)).state_dict())


def test_module_counts_and_widths_mirror_the_unet():
    module = MotionModule(MotionModuleConfig(block_out_channels=(32, 64, 96), layers_per_block=2))
    assert [len(block.motion_modules) for block in module.down_blocks] == [2, 2, 2]
    assert [len(block.motion_modules) for block in module.up_blocks] == [3, 3, 3]
    widths = [block.motion_modules[0].temporal_transformer.proj_in.in_features for block in module.up_blocks]
    assert widths == [96, 64, 32]


def test_more_frames_than_the_position_table_is_an_error():
    module = random_temporal_module(tiny_config(max_frames=4))
    with pytest.raises(ValueError, match="position table of 4 frames"):
        module(random_features(frames=6), num_frames=6)


def test_chunked_attention_batch_gives_the_same_output(monkeypatch):
    module = random_temporal_module(std=0.3)
    x = random_features(frames=6, batch=2)
    whole = module(x, num_frames=6)
    monkeypatch.setattr(TemporalAttention, "max_sequences", 5)  # 2·4·4 = 32 sequences → 7 chunks
    torch.testing.assert_close(module(x, num_frames=6), whole, rtol=1e-6, atol=1e-6)
