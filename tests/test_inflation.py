import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from einops import rearrange

from animatediff import AnimateDiffError, MotionModule, MotionModuleConfig, inflate
from animatediff.inflation import AlreadyInflatedError
from helpers import random_motion_module, tiny_config, tiny_unet


def video_inputs(frames=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, frames, 8, 8, generator=generator)
    text = torch.randn(1, 77, 32, generator=generator)
    return sample, torch.tensor(500), text


def image_unet_per_frame(unet, sample, t, text):
    frames = [unet(sample[:, :, i], t, encoder_hidden_states=text).sample for i in range(sample.shape[2])]
    return torch.stack(frames, dim=2)


@torch.no_grad()
def test_zero_motion_module_leaves_single_frame_output_unchanged():
    unet = tiny_unet()
    sample, t, text = video_inputs(frames=1)
    expected = unet(sample[:, :, 0], t, encoder_hidden_states=text).sample
    video_unet = inflate(unet, MotionModule(tiny_config()))
    torch.testing.assert_close(video_unet(sample, t, text)[:, :, 0], expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_zero_motion_module_treats_every_frame_as_an_image():
    unet = tiny_unet()
    sample, t, text = video_inputs(frames=4)
    expected = image_unet_per_frame(unet, sample, t, text)
    video_unet = inflate(unet, MotionModule(tiny_config()))
    torch.testing.assert_close(video_unet(sample, t, text), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_random_motion_module_mixes_frames():
    unet = tiny_unet()
    sample, t, text = video_inputs(frames=4)
    per_frame = image_unet_per_frame(unet, sample, t, text)
    video_unet = inflate(unet, random_motion_module())
    out = video_unet(sample, t, text)
    assert (out - per_frame).abs().max() > 1e-2
    # Changing frame 3 alone now changes frame 0's prediction: information flows across time.
    changed = sample.clone()
    changed[:, :, 3] += 1
    assert (video_unet(changed, t, text)[:, :, 0] - out[:, :, 0]).abs().max() > 1e-3


@torch.no_grad()
def test_every_temporal_module_runs_once_per_forward():
    unet = tiny_unet()
    module = random_motion_module()
    video_unet = inflate(unet, module)
    calls = []
    for name, layer in module.named_modules():
        if name.endswith("temporal_transformer"):
            layer.register_forward_hook(lambda *_args, name=name: calls.append(name))
    video_unet(*video_inputs(frames=2))
    expected = [n for n, _ in module.named_modules() if n.endswith("temporal_transformer")]
    assert sorted(calls) == sorted(expected)
    assert len(calls) == 2 * 2 + 2 * 3 + 1


@torch.no_grad()
def test_unet_parameter_names_are_unchanged_and_motion_names_are_official():
    unet = tiny_unet()
    before = set(unet.state_dict())
    video_unet = inflate(unet, random_motion_module(tiny_config(image_norm_over_frames=True)))
    assert set(video_unet.unet.state_dict()) == before
    assert "motion_module.up_blocks.0.motion_modules.2.temporal_transformer.proj_out.weight" in set(
        video_unet.state_dict()
    )


@torch.no_grad()
def test_v1_image_groupnorm_pools_over_frames():
    sample, t, text = video_inputs(frames=4)
    per_frame = inflate(tiny_unet(), MotionModule(tiny_config()))(sample, t, text)
    pooled = inflate(tiny_unet(), MotionModule(tiny_config(image_norm_over_frames=True)))(sample, t, text)
    assert (pooled - per_frame).abs().max() > 1e-3
    # With one frame, pooling over frames is the same as per frame.
    one = sample[:, :, :1]
    per_frame_one = inflate(tiny_unet(), MotionModule(tiny_config()))(one, t, text)
    pooled_one = inflate(tiny_unet(), MotionModule(tiny_config(image_norm_over_frames=True)))(one, t, text)
    torch.testing.assert_close(pooled_one, per_frame_one, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_v1_resnet_norm_matches_groupnorm_on_the_5d_clip():
    unet = tiny_unet()
    video_unet = inflate(unet, MotionModule(tiny_config(image_norm_over_frames=True)))
    norm = unet.down_blocks[0].resnets[0].norm1
    x = torch.randn(8, 32, 4, 4)  # (b f) c h w with b=2, f=4
    expected = torch.nn.functional.group_norm(
        rearrange(x, "(b f) c h w -> b c f h w", f=4), 32, norm.weight, norm.bias, norm.eps
    )
    with video_unet.axis.folded(4):
        torch.testing.assert_close(norm(x), rearrange(expected, "b c f h w -> (b f) c h w"))


def test_a_temporal_layer_outside_a_video_forward_pass_fails_instead_of_guessing_the_frame_count():
    unet = tiny_unet()
    inflate(unet, MotionModule(tiny_config(image_norm_over_frames=True)))
    with pytest.raises(RuntimeError, match="outside AnimateDiffUNet.forward"):
        unet.down_blocks[0].resnets[0].norm1(torch.randn(8, 32, 4, 4))


@torch.no_grad()
def test_timestep_per_clip_is_shared_by_its_frames():
    unet = tiny_unet()
    video_unet = inflate(unet, random_motion_module())
    sample, _, text = video_inputs(frames=3)
    batch = torch.cat([sample, sample])
    out = video_unet(batch, torch.tensor([100, 900]), torch.cat([text, text]))
    torch.testing.assert_close(out[:1], video_unet(sample, torch.tensor(100), text), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1:], video_unet(sample, torch.tensor(900), text), rtol=1e-5, atol=1e-5)


def test_motion_module_for_another_unet_is_refused():
    wrong = MotionModule(MotionModuleConfig(block_out_channels=(64, 128), layers_per_block=2))
    with pytest.raises(AnimateDiffError, match=r"widths \(64, 128\).*widths \(32, 64\)"):
        inflate(tiny_unet(), wrong)


@torch.no_grad()
@pytest.mark.parametrize("second", [random_motion_module, lambda: None], ids=["motion module", "none"])
def test_inflating_an_inflated_unet_is_refused_and_leaves_its_video_unet_as_it_was(second):
    unet = tiny_unet()
    video_unet = inflate(unet, random_motion_module())
    before = video_unet(*video_inputs(frames=3))
    with pytest.raises(AlreadyInflatedError, match="already inflated into a video UNet"):
        inflate(unet, second())
    assert torch.equal(video_unet(*video_inputs(frames=3)), before)


def test_a_unet_that_refused_a_motion_module_can_still_be_inflated():
    unet = tiny_unet()
    with pytest.raises(AnimateDiffError):
        inflate(unet, MotionModule(MotionModuleConfig(block_out_channels=(64, 128), layers_per_block=2)))
    assert inflate(unet, random_motion_module()).motion_module is not None


@torch.no_grad()
def test_text_states_given_per_frame_are_used_exactly_as_one_per_clip():
    video_unet = inflate(tiny_unet(), random_motion_module())
    sample, t, text = video_inputs(frames=3)
    per_clip = video_unet(sample, t, text)
    per_frame = video_unet(sample, t, text.repeat_interleave(3, dim=0))  # (b f) n d
    assert torch.equal(per_clip, per_frame)
    changed = text.repeat_interleave(3, dim=0).clone()
    changed[2] += 1  # the last frame reads other text
    differs = (video_unet(sample, t, changed) - per_clip).abs().amax(dim=(0, 1, 3, 4))
    assert differs[2] > 1e-4


@torch.no_grad()
def test_motion_windows_covering_all_frames_once_compute_exactly_as_without():
    video_unet = inflate(tiny_unet(), random_motion_module())
    sample, t, text = video_inputs(frames=4)
    whole = [(torch.arange(4), torch.ones(4))]
    assert torch.equal(video_unet(sample, t, text), video_unet(sample, t, text, whole))


def cross_attention_key_rows(unet, call) -> tuple[torch.Tensor, list[int]]:
    """`call()`'s output and how many text rows the first cross-attention's key projection saw per call."""
    attention = next(m for name, m in unet.named_modules() if name.endswith("attn2"))
    rows = []
    hook = attention.to_k.register_forward_hook(lambda _m, inputs, _out: rows.append(inputs[0].shape[0]))
    try:
        return call(), rows
    finally:
        hook.remove()


def test_cross_attention_computes_text_keys_once_per_clip_with_the_numbers_of_once_per_frame():
    from animatediff.inflation import ClipTextAttention, share_text_keys

    unet = tiny_unet()
    video_unet = inflate(unet, random_motion_module())
    generator = torch.Generator().manual_seed(1)
    sample, text = torch.randn(2, 4, 5, 8, 8, generator=generator), torch.randn(2, 77, 32, generator=generator)
    per_frame_text = torch.randn(10, 77, 32, generator=generator)  # prompt travel: each frame its own
    unet.set_attn_processor(AttnProcessor2_0())  # diffusers' per-frame cross-attention, the reference
    with torch.no_grad():
        expected, rows = cross_attention_key_rows(unet, lambda: video_unet(sample, torch.tensor(500), text))
        expected_travel = video_unet(sample, torch.tensor(500), per_frame_text)
    assert rows == [10]
    share_text_keys(unet, video_unet.axis)
    assert sum(isinstance(p, ClipTextAttention) for p in unet.attn_processors.values()) == 6  # every attn2
    with torch.no_grad():
        shared, rows = cross_attention_key_rows(unet, lambda: video_unet(sample, torch.tensor(500), text))
        travel, travel_rows = cross_attention_key_rows(
            unet, lambda: video_unet(sample, torch.tensor(500), per_frame_text)
        )
    assert rows == [2] and travel_rows == [10]  # keys once per clip; per-frame text keeps its own
    torch.testing.assert_close(shared, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(travel, expected_travel, rtol=0, atol=0)


def test_per_clip_text_keys_train_as_per_frame_ones_under_gradient_checkpointing():
    from animatediff.inflation import share_text_keys

    grads = []
    for shared in (False, True):
        unet = tiny_unet()
        video_unet = inflate(unet, random_motion_module())
        unet.set_attn_processor(AttnProcessor2_0())
        if shared:
            share_text_keys(unet, video_unet.axis)
        video_unet.enable_gradient_checkpointing()
        sample, t, text = video_inputs(frames=4)
        video_unet(sample, t, text).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in unet.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_float32_text_states_feed_a_bfloat16_video_unet():
    video_unet = inflate(tiny_unet(), random_motion_module()).to(torch.bfloat16)
    sample, t, text = video_inputs(frames=4)
    from_float32 = video_unet(sample, t, text)  # a text encoder kept in float32
    torch.testing.assert_close(from_float32, video_unet(sample, t, text.bfloat16()), rtol=0, atol=0)
    assert from_float32.dtype == torch.bfloat16
