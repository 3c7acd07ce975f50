"""Time as an axis of the sampler: context windows, FreeNoise, prompt travel, loops and FreeInit.

The schedules and weights are checked as the pure functions they are; FreeNoise, FreeInit and prompt
travel reproduce diffusers' `AnimateDiffPipeline` (`enable_free_noise`, `enable_free_init`, a prompt dict)
on the same tiny weights with the motion GroupNorm pooled as diffusers computes it."""

import types

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline as DiffusersAnimateDiffPipeline
from diffusers.models.attention import FreeNoiseTransformerBlock
from diffusers.pipelines.free_init_utils import FreeInitMixin
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

from animatediff import AnimateDiffPipeline, load_base, official_scheduler
from animatediff.formats import to_motion_adapter
from animatediff.sampling.context import fuse_weights, looped_windows, ordered_halving, uniform_windows
from animatediff.sampling.freeinit import butterworth_low_pass
from animatediff.sampling.noise import shuffle_noise
from animatediff.sampling.options import ContextSettings
from animatediff.sampling.prompts import frame_states
from helpers import assert_bfloat16_close

SIZE = dict(height=32, width=32)

# ---------------------------------------------------------------------------------------------------
# Schedules and weights


def test_uniform_windows_step_by_length_minus_overlap_and_end_on_the_last_frame():
    assert uniform_windows(24, 16, 4) == [list(range(0, 16)), list(range(8, 24))]
    assert uniform_windows(40, 16, 4) == [list(range(0, 16)), list(range(12, 28)), list(range(24, 40))]
    assert uniform_windows(16, 16, 4) == [list(range(16))]  # one window: the clip as it is
    assert uniform_windows(10, 16, 4) == [list(range(10))]


def test_ordered_halving_spreads_offsets_evenly():
    assert [ordered_halving(step) for step in range(5)] == [0, 0.5, 0.25, 0.75, 0.125]


def test_looped_windows_wrap_around_cover_every_frame_and_move_each_step():
    for step in range(6):
        found = looped_windows(48, 16, 4, step)
        assert all(len(window) == 16 for window in found)
        assert set().union(*map(set, found)) == set(range(48))
        assert any(window.index(0) > 0 for window in found if 0 in window) or step == 0
    first, second = looped_windows(48, 16, 4, 0), looped_windows(48, 16, 4, 1)
    assert first != second
    assert [47, 0] in [window[i : i + 2] for window in first for i in range(15)]  # the seam is inside a window
    dilated = [window for window in first if window[1] - window[0] in (2, -46)]
    assert dilated  # every 2nd frame, so distant frames are denoised together


@pytest.mark.parametrize("length", [4, 5, 16])
@pytest.mark.parametrize("scheme", ["pyramid", "flat"])
def test_fuse_weights_are_diffusers_freenoise_weights(length, scheme):
    block = types.SimpleNamespace()
    expected = FreeNoiseTransformerBlock._get_frame_weights(block, length, scheme)
    assert fuse_weights(length, scheme).tolist() == [float(w) for w in expected]


def test_overlap_linear_weights_ramp_over_the_overlap():
    assert fuse_weights(8, "overlap-linear", 3).tolist() == pytest.approx([0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25])


def free_noise_namespace(length, stride):
    return types.SimpleNamespace(
        _free_noise_context_length=length,
        _free_noise_context_stride=stride,
        _free_noise_noise_type="shuffle_context",
        vae_scale_factor=2,
    )


@pytest.mark.parametrize(("frames", "length", "stride"), [(24, 16, 4), (30, 16, 12), (9, 4, 3)])
def test_noise_shuffle_is_diffusers_shuffle_context(frames, length, stride):
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 4, frames, 3, 3, generator=generator)  # the noise contract's draw, then the shuffle
    ours = shuffle_noise(noise, length, stride, generator)
    theirs = AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
        free_noise_namespace(length, stride), 1, 4, frames, 6, 6, torch.float32, "cpu", torch.Generator().manual_seed(1)
    )
    assert torch.equal(ours, theirs)
    assert torch.equal(ours[:, :, :length], noise[:, :, :length])  # the first window keeps its own noise
    assert not torch.equal(ours, noise)


def test_butterworth_filter_is_diffusers_freeinit_filter():
    theirs = FreeInitMixin._get_free_init_freq_filter(None, (1, 4, 6, 5, 4), "cpu", "butterworth", 4, 0.25, 0.25)
    torch.testing.assert_close(butterworth_low_pass(6, 5, 4), theirs[0, 0], rtol=0, atol=1e-7)


def test_linear_prompt_travel_is_diffusers_lerp_and_holds_after_the_last_keyframe():
    states = torch.randn(3, 2, 4)
    frames = frame_states([0, 3, 5], states, 8, "linear")
    namespace = types.SimpleNamespace()
    expected = AnimateDiffFreeNoiseMixin._lerp(namespace, 0, 3, states[:1], states[1:2])
    torch.testing.assert_close(frames[0:4], expected)
    assert torch.equal(frames[5], states[2]) and torch.equal(frames[7], states[2])
    held = frame_states([0, 3], states[:2], 6, "none")
    assert torch.equal(held[2], states[0]) and torch.equal(held[3], states[1])
    spherical = frame_states([0, 4], states[:2], 5, "slerp")
    norms = spherical.norm(dim=-1)
    assert torch.allclose(norms[2], (states[0].norm(dim=-1) + states[1].norm(dim=-1)) / 2, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The pipeline


def ours(models) -> AnimateDiffPipeline:
    folder, motion_module = models
    return AnimateDiffPipeline.from_components(load_base(folder), motion_module)


def theirs(models) -> DiffusersAnimateDiffPipeline:
    folder, motion_module = models
    base = load_base(folder)
    pipeline = DiffusersAnimateDiffPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        tokenizer=base.tokenizer,
        unet=base.unet,
        motion_adapter=to_motion_adapter(motion_module),
        scheduler=official_scheduler(),
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def diffusers_frames(pipeline, prompt, frames: int, steps: int = 3) -> np.ndarray:
    output = pipeline(
        prompt,
        negative_prompt="blurry",
        num_inference_steps=steps,
        num_frames=frames,
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="np",
        guidance_scale=7.5,
        **SIZE,
    )
    return output.frames[0]


def our_frames(pipeline, prompt, frames: int, steps: int = 3, **settings) -> np.ndarray:
    video = pipeline.generate(
        prompt,
        negative_prompt="blurry",
        steps=steps,
        seed=11,
        num_frames=frames,
        progress=False,
        guidance_scale=7.5,
        **SIZE,
        **settings,
    )
    return video.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("fuse", ["pyramid", "flat"])
def test_motion_scope_windows_with_noise_shuffle_reproduce_diffusers_freenoise(models, fuse):
    reference = theirs(models)
    reference.enable_free_noise(context_length=4, context_stride=2, weighting_scheme=fuse, noise_type="shuffle_context")
    expected = diffusers_frames(reference, "a red circle", 8)
    context = ContextSettings(length=4, overlap=2, fuse=fuse, scope="motion")
    frames = our_frames(ours(models), "a red circle", 8, context=context, noise_shuffle=True)
    assert frames.shape == expected.shape == (8, 32, 32, 3)
    assert np.abs(frames - expected).max() < 1e-4


def test_prompt_travel_reproduces_diffusers_prompt_dict(models):
    reference = theirs(models)
    reference.enable_free_noise(context_length=4, context_stride=2, noise_type="random")
    expected = diffusers_frames(reference, {0: "a red circle", 5: "a blue square"}, 8)
    context = ContextSettings(length=4, overlap=2, scope="motion")
    frames = our_frames(
        ours(models), "a red circle", 8, context=context, prompt_map=((0, "a red circle"), (5, "a blue square"))
    )
    assert np.abs(frames - expected).max() < 1e-4
    still = our_frames(ours(models), "a red circle", 8, context=context)
    assert np.abs(frames[-1] - still[-1]).mean() > 1e-3  # the second prompt changed the late frames


def test_free_init_reproduces_diffusers_enable_free_init(models):
    reference = theirs(models)
    reference.enable_free_init(num_iters=3)
    expected = diffusers_frames(reference, "a red circle", 6, steps=2)
    frames = our_frames(ours(models), "a red circle", 6, steps=2, free_init=3)
    assert np.abs(frames - expected).max() < 1e-4
    plain = our_frames(ours(models), "a red circle", 6, steps=2)
    assert np.abs(frames - plain).mean() > 1e-3


def test_a_clip_that_fits_one_window_is_computed_exactly_as_without_windows(models):
    pipeline = ours(models)
    plain = our_frames(pipeline, "a red circle", 6)
    for scope in ("unet", "motion"):
        windowed = our_frames(pipeline, "a red circle", 6, context=ContextSettings(length=8, scope=scope))
        assert np.array_equal(plain, windowed), scope


def test_unet_scope_windows_fuse_per_frame_and_every_frame_changes(models):
    pipeline = ours(models)
    long = our_frames(pipeline, "a red circle", 12, context=ContextSettings(length=6, overlap=2))
    assert long.shape == (12, 32, 32, 3) and np.isfinite(long).all()
    alone = our_frames(pipeline, "a red circle", 6)  # the first window on its own: the same noise
    assert np.abs(long[0] - alone[0]).max() > 1e-4  # the windows' fusion reached the first frames too
    looped = our_frames(pipeline, "a red circle", 12, context=ContextSettings(length=6, overlap=2, schedule="looped"))
    assert np.abs(looped - long).mean() > 1e-4


# ---------------------------------------------------------------------------------------------------
# The command line and prompt configs


def cli(tiny_base, motion_module, output, *extra):
    from animatediff.cli import main

    models = ["--base", str(tiny_base), "--motion-module", str(motion_module)]
    small = ["--width", "16", "--height", "16", "--steps", "1", "--seed", "2"]
    return main(["generate", "a red circle", *models, *small, "-o", str(output), *extra])


def test_frames_beyond_the_table_use_windows_of_16_and_the_sidecar_says_so(
    tmp_path, tiny_base, tiny_motion_module_file
):
    import json

    from animatediff import read_video

    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "long", "--frames", "40") == 0
    assert read_video(tmp_path / "long").shape == (40, 16, 16, 3)
    settings = json.loads((tmp_path / "long.json").read_text())
    assert settings["context"] == {
        "length": 16,
        "overlap": 4,
        "schedule": "uniform",
        "fuse": "pyramid",
        "scope": "unet",
    }
    assert "exceed the motion module's 32-frame position table" in settings["notes"][0]
    assert settings["noise_shuffle"] is False and settings["free_init"] is None


def test_every_time_flag_reaches_the_sidecar(tmp_path, tiny_base, tiny_motion_module_file):
    import json

    flags = [
        "--frames",
        "12",
        "--context-length",
        "6",
        "--context-overlap",
        "2",
        "--context-fuse",
        "flat",
        "--context-scope",
        "motion",
        "--noise-shuffle",
        "--free-init",
        "2",
        "--prompt-at",
        "-4:a blue square",
        "--prompt-interpolation",
        "slerp",
        "--loop",
    ]
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "all.gif", *flags) == 0
    settings = json.loads((tmp_path / "all.gif.json").read_text())
    assert settings["context"] == {"length": 6, "overlap": 2, "schedule": "looped", "fuse": "flat", "scope": "motion"}
    assert settings["prompt_map"] == {"0": "a red circle", "8": "a blue square"}
    assert (settings["noise_shuffle"], settings["free_init"], settings["prompt_interpolation"]) == (True, 2, "slerp")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (
            ["--frames", "20", "--context-length", "8", "--context-overlap", "8"],
            "the context overlap (8) must be less than the context length (8)",
        ),
        (["--context-length", "40"], "longer than the motion module's position table (32 frames)"),
        (["--frames", "8", "--prompt-at", "8:a dog"], "the prompt keyframe 8 is outside the 8-frame clip"),
        (["--prompt-at", "two:a dog"], "expected FRAME:TEXT with a whole-number frame, got 'two:a dog'"),
        (["--prompt-at", "4: "], "the prompt at keyframe 4 is empty"),
        (["--frames", "12", "--loop"], "a loop needs more frames than one context window (16); got 12"),
        (["--free-init", "0"], "argument --free-init: must be between 1 and 10; got 0"),
        (["--free-init", "11"], "argument --free-init: must be between 1 and 10; got 11"),
        (["--frames", "8", "--noise-shuffle"], "this clip has none"),
    ],
)
def test_bad_time_settings_exit_2_with_one_sentence(tmp_path, tiny_base, tiny_motion_module_file, capsys, flags, said):
    assert cli(tiny_base, tiny_motion_module_file, tmp_path / "o.gif", *flags) == 2
    error = capsys.readouterr().err
    assert said in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "o.gif").exists()


def test_a_prompt_config_takes_a_prompt_map_and_the_time_keys(tmp_path, tiny_base, tiny_motion_module_file):
    import json

    import yaml

    from animatediff.cli import main

    entry = {
        "motion_module": str(tiny_motion_module_file),
        "prompt_map": {"0": "a red circle", "6": "a blue square"},
        "seed": [1, 2],
        "steps": 1,
        "W": 16,
        "H": 16,
        "L": 10,
        "context_length": 8,
        "context_overlap": 2,
        "prompt_interpolation": "none",
        "free_init": 2,
    }
    config = tmp_path / "travel.yaml"
    config.write_text(yaml.safe_dump([entry]))
    out = tmp_path / "out"
    assert main(["generate", "--config", str(config), "--base", str(tiny_base), "--output-dir", str(out)]) == 0
    sidecars = sorted(out.glob("*.json"))
    assert [path.name for path in sidecars] == ["000-a-red-circle-1.gif.json", "001-a-red-circle-2.gif.json"]
    settings = json.loads(sidecars[0].read_text())
    assert settings["prompt_map"] == {"0": "a red circle", "6": "a blue square"}
    assert settings["context"]["length"] == 8 and settings["free_init"] == 2
    assert settings["prompt_interpolation"] == "none"


def test_the_seam_ratio_finds_a_jump_where_a_window_ends():
    from animatediff.shapes.world import parse_prompt
    from lab.time_report import seam_ratio, travel_pairs

    smooth = np.repeat(np.linspace(0, 150, 64)[:, None, None, None], 4, axis=1).repeat(4, 2).repeat(3, 3)
    assert seam_ratio(smooth.astype(np.uint8)) == pytest.approx(1.0, abs=0.05)
    jumpy = smooth.copy()
    jumpy[16:] += 40  # the first window ends on frame 15
    assert seam_ratio(np.clip(jumpy, 0, 255).astype(np.uint8)) > 1.5  # one jump among 20 edge changes
    from lab.report import held_out_prompts

    pairs = travel_pairs(held_out_prompts(), held_out_prompts())
    assert len(pairs) == 12 and all(parse_prompt(a).colour != parse_prompt(b).colour for a, b in pairs)
    assert len(travel_pairs(held_out_prompts()[:1], held_out_prompts())) == 1


def test_the_worlds_own_long_clips_lose_a_translation_but_keep_a_spin():
    from lab.time_report import world_long_clips

    right = world_long_clips(["a red triangle moving right on a white background"], [1, 2], 32)
    spin = world_long_clips(["a red star spinning clockwise on a black background"], [1], 32)
    assert right["stretch motion"] == pytest.approx(0.5)  # two stretches in the frame, two after it left
    assert spin["stretch motion"] == pytest.approx(1.0) and spin["smooth"] > 0.8


@pytest.mark.parametrize("scope", ["motion", "unet"])
def test_the_time_flags_run_in_bfloat16_as_in_float32(tmp_path, tiny_base, tiny_motion_module_file, scope):
    import json

    from animatediff import read_video

    flags = [
        "--frames",
        "12",
        "--context-length",
        "6",
        "--context-overlap",
        "2",
        "--context-scope",
        scope,
        "--noise-shuffle",
        "--free-init",
        "2",
        "--prompt-at",
        "-4:a blue square",
    ]
    for dtype in ("float32", "bfloat16"):
        assert cli(tiny_base, tiny_motion_module_file, tmp_path / f"{dtype}.gif", *flags, "--dtype", dtype) == 0
    assert json.loads((tmp_path / "bfloat16.gif.json").read_text())["dtype"] == "bfloat16"
    assert_bfloat16_close(read_video(tmp_path / "float32.gif"), read_video(tmp_path / "bfloat16.gif"))
