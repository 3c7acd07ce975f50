"""Motion scale and effect (ComfyUI-AnimateDiff-Evolved's meaning): the temporal attention's keys scaled per frame,
the motion modules' change to their input blended per frame, the scale keyed over the steps; set per call."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from animatediff import read_video
from animatediff.cli import main
from animatediff.motion_module import MotionStrength, TemporalAttention, TemporalModule, TemporalTransformerBlock
from animatediff.pipeline import StepControls
from animatediff.sampling.motion_strength import per_frame, step_factor
from helpers import random_motion_module, tiny_config, tiny_unet


def cli(tiny_base, motion_module, output, *extra):
    models = ["--base", str(tiny_base), "--motion-module", str(motion_module)]
    small = ["--width", "16", "--height", "16", "--frames", "6", "--steps", "2", "--seed", "3"]
    return main(["generate", "a red circle", *models, *small, "-o", str(output), *extra])


def frames_of(tmp_path, tiny_base, motion_module, name, *extra) -> np.ndarray:
    assert cli(tiny_base, motion_module, tmp_path / name, *extra) == 0
    return read_video(tmp_path / name)


# ---------------------------------------------------------------------------------------------------
# Through the command line: the two ends are exact


def test_motion_effect_0_gives_exactly_the_frames_of_no_motion_module(tmp_path, tiny_base, tiny_motion_module_file):
    none = frames_of(tmp_path, tiny_base, "none", "none")
    off = frames_of(tmp_path, tiny_base, tiny_motion_module_file, "off", "--motion-effect", "0")
    moving = frames_of(tmp_path, tiny_base, tiny_motion_module_file, "moving")
    assert np.array_equal(off, none)
    assert not np.array_equal(moving, none)


def test_scale_1_and_effect_1_are_bit_identical_to_giving_neither(tmp_path, tiny_base, tiny_motion_module_file):
    plain = frames_of(tmp_path, tiny_base, tiny_motion_module_file, "plain")
    ones = ["--motion-scale", "1", "--motion-effect", "0:1,5:1", "--motion-scale-steps", "0.5:1"]
    said = frames_of(tmp_path, tiny_base, tiny_motion_module_file, "ones", *ones)
    stronger = frames_of(tmp_path, tiny_base, tiny_motion_module_file, "stronger", "--motion-scale", "1.4")
    assert np.array_equal(said, plain)
    assert not np.array_equal(stronger, plain)


def test_the_sidecar_records_them_resolved_and_as_asked(tmp_path, tiny_base, tiny_motion_module_file):
    flags = ["--motion-scale", "0:1.0,4:1.3", "--motion-effect", "0.75", "--motion-scale-steps", "0.0:1.2,0.5:1.0"]
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", *flags) == 0
    settings = json.loads((tmp_path / "o.gif.json").read_text())
    assert settings["motion_scale"] == [[0, 1.0], [4, 1.3]]
    assert settings["motion_effect"] == [[0, 0.75]]
    assert settings["motion_scale_steps"] == [[0.0, 1.2], [0.5, 1.0]]
    assert settings["request"]["motion_effect"] == 0.75


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--motion-scale", "-1"], "argument --motion-scale: must be between 0 and 10; got -1.0"),
        (["--motion-scale", "0:1,x"], "argument --motion-scale: expected a number or FRAME:VALUE,…, got '0:1,x'"),
        (["--motion-scale", "4:1,2:1.2"], "the frames must be at least 0 and increase; got [4, 2]"),
        (["--motion-effect", "3"], "argument --motion-effect: must be between 0 and 2; got 3.0"),
        (["--motion-scale-steps", "1.2"], "expected FRACTION:VALUE,…, got '1.2'"),
        (["--motion-scale-steps", "0:1,1.5:1.2"], "the fractions of the steps must be between 0 and 1; got 1.5"),
        (["--motion-scale", "0:1,6:1.2"], "they must increase and lie inside the 6-frame clip (0 to 5)"),
    ],
)
def test_bad_values_exit_2_with_one_sentence(tmp_path, tiny_base, tiny_motion_module_file, capsys, flags, said):
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", *flags) == 2
    error = capsys.readouterr().err
    assert said in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "o.gif").exists()


def test_prompt_configs_take_the_three_keys(tmp_path, tiny_base, tiny_motion_module_file):
    import yaml

    entry = {
        "motion_module": str(tiny_motion_module_file),
        "prompt": ["a red circle"],
        "seed": 1,
        "steps": 1,
        "W": 16,
        "H": 16,
        "L": 6,
        "motion_scale": "0:1.0,5:1.3",
        "motion_effect": 0.5,
        "motion_scale_steps": {0.0: 1.2, 0.5: 1.0},
    }
    config = tmp_path / "strength.yaml"
    config.write_text(yaml.safe_dump([entry]))
    out = tmp_path / "out"
    assert main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(out)]) == 0
    settings = json.loads(next(out.glob("*.json")).read_text())
    assert settings["motion_scale"] == [[0, 1.0], [5, 1.3]]
    assert settings["motion_effect"] == [[0, 0.5]]
    assert settings["motion_scale_steps"] == [[0.0, 1.2], [0.5, 1.0]]


def test_the_api_takes_a_number_or_frame_value_pairs():
    from animatediff.app.requests import GenerateRequest, to_request

    body = {"prompt": "a", "motion_scale": [[0, 1.0], [8, 1.3]], "motion_effect": 0.5}
    request = to_request(GenerateRequest(**body, motion_scale_steps=[[0.0, 1.2], [0.5, 1.0]]))
    assert request.motion_scale == ((0, 1.0), (8, 1.3)) and request.motion_effect == 0.5
    assert request.motion_scale_steps == ((0.0, 1.2), (0.5, 1.0))


# ---------------------------------------------------------------------------------------------------
# The values: per frame, per step, per window


def test_a_per_frame_list_interpolates_linearly_and_holds_outside_its_frames():
    assert per_frame(((4, 1.0), (8, 1.4)), [0, 4, 5, 6, 8, 12]) == pytest.approx([1.0, 1.0, 1.1, 1.2, 1.4, 1.4])
    assert per_frame(((0, 1.0),), range(6)) is None  # all 1: the call runs exactly as without


def test_per_step_keyframes_switch_at_the_stated_fraction_and_multiply_the_scale():
    keys = ((0.0, 1.2), (0.5, 1.0))
    assert [step_factor(keys, step, 10) for step in range(10)] == [1.2] * 5 + [1.0] * 5
    assert [step_factor(((0.3, 2.0),), step, 10) for step in (2, 3)] == [1.0, 2.0]
    controls = StepControls(motion_scale=((0, 1.5),), motion_scale_steps=keys)
    early, late = (controls.motion((step, 10), range(2), torch.device("cpu")) for step in (4, 5))
    assert early.scale.tolist() == pytest.approx([1.8, 1.8]) and late.scale.tolist() == pytest.approx([1.5, 1.5])


def test_a_context_window_takes_its_own_frames_values():
    controls = StepControls(motion_effect=((0, 0.0), (10, 1.0)))
    window = controls.motion((0, 1), [8, 9, 10, 0], torch.device("cpu"))
    assert window.effect.tolist() == pytest.approx([0.8, 0.9, 1.0, 0.0]) and window.scale is None


# ---------------------------------------------------------------------------------------------------
# The definitions, in the motion module


def test_the_scale_multiplies_each_frames_keys_in_the_temporal_attention():
    torch.manual_seed(0)
    attention = TemporalAttention(dim=16, heads=2, max_frames=8, position_encoding=True)
    x = torch.randn(3, 5, 16)
    scale = torch.tensor([0.8, 1.0, 1.2, 1.4, 2.0])
    q, k, v = (
        rearrange(project(attention.pos_encoder(x)), "n f (heads d) -> n heads f d", heads=2)
        for project in (attention.to_q, attention.to_k, attention.to_v)
    )
    expected = F.scaled_dot_product_attention(q, k * scale[:, None], v)
    expected = attention.to_out(rearrange(expected, "n heads f d -> n f (heads d)"))
    torch.testing.assert_close(attention(x, scale), expected)


def test_the_effect_blends_the_modules_output_with_its_input_per_frame():
    torch.manual_seed(0)
    module = TemporalModule(32, tiny_config())
    torch.nn.init.normal_(module.temporal_transformer.proj_out.weight, std=0.1)
    x = torch.randn(2 * 4, 32, 3, 3)  # (b f) c h w
    effect = torch.tensor([0.0, 0.5, 1.0, 1.5])
    full = module(x, 4)
    blended = module(x, 4, strength=MotionStrength(effect=effect))
    expected = x + rearrange(effect.repeat(2), "n -> n 1 1 1") * (full - x)
    torch.testing.assert_close(blended, expected)
    assert torch.equal(blended[0::4], x[0::4])
    assert torch.equal(module(x, 4, strength=MotionStrength.of(None, [0.0] * 4, x.device)), x)


def test_motion_windows_slice_the_per_frame_scale():
    torch.manual_seed(0)
    block = TemporalTransformerBlock(16, tiny_config())
    x = torch.randn(3, 6, 16)
    scale = torch.linspace(0.5, 1.5, 6)
    whole = [(torch.arange(6), torch.ones(6))]
    torch.testing.assert_close(block(x, whole, scale), block(x, None, scale))
    first = block(x[:, :4], None, scale[:4])
    windowed = block(x, [(torch.arange(4), torch.ones(4))], scale)
    torch.testing.assert_close(windowed[:, :4], first)


def test_the_strength_lasts_one_call_and_is_never_kept_on_the_model():
    from animatediff.inflation import inflate

    unet = inflate(tiny_unet(), random_motion_module())
    latents, text = torch.randn(1, 4, 4, 8, 8), torch.randn(1, 77, 32)
    plain = unet(latents, 10, text)
    stronger = unet(latents, 10, text, motion=MotionStrength.of([1.5] * 4, None, latents.device))
    assert not torch.equal(stronger, plain)
    assert unet.axis.strength is None
    assert torch.equal(unet(latents, 10, text), plain)
