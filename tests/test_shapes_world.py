"""The shapes world: deterministic rendering, datasets, and metrics that separate right from wrong videos."""

import json

import numpy as np
import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

from animatediff.cli import main
from animatediff.errors import ConfigError
from animatediff.export import read_video, write_video
from animatediff.shapes.datasets import DatasetSpec, render_dataset
from animatediff.shapes.metrics import edge_f1, motion_score, score_video, smooth_score, track, watermark_score
from animatediff.shapes.render import (
    SHADOW,
    SHADOW_SHIFT,
    object_at,
    render_clip,
    render_frame,
    shadow_colour,
    stripe_colour,
)
from animatediff.shapes.world import (
    BACKGROUNDS,
    CAMERA_MOTIONS,
    COLOURS,
    MOTIONS,
    SHAPES,
    STYLES,
    SYMMETRY,
    ClipSpec,
    SceneObject,
    caption,
    parse_prompt,
    sample_camera_clip,
    sample_object_clip,
)
from animatediff.training.config import load_train_config

HELD_OUT = 1000  # test seeds, apart from the small ones examples use


def object_clips(count, seed=HELD_OUT, **fixed):
    rng = np.random.default_rng(seed)
    return [sample_object_clip(rng, 16, **fixed) for _ in range(count)]


def test_vocabulary_is_as_large_as_promised():
    assert len(SHAPES) >= 4 and len(COLOURS) >= 6 and len(BACKGROUNDS) >= 4
    assert len(MOTIONS) >= 8 and len(CAMERA_MOTIONS) >= 6 and len(STYLES) >= 2


def test_rendering_is_deterministic_per_seed_at_any_size():
    first, again = object_clips(1, seed=3)[0], object_clips(1, seed=3)[0]
    np.testing.assert_array_equal(render_clip(first, 16, 64), render_clip(again, 16, 64))
    assert render_clip(first, 8, 48).shape == (8, 48, 48, 3)
    assert render_clip(first, 20, 96).shape == (20, 96, 96, 3)
    other = object_clips(1, seed=4)[0]
    assert not np.array_equal(render_clip(first), render_clip(other))


def test_with_trail_a_moving_object_leaves_a_fading_copy_behind_it_and_a_still_one_none():
    white, red = np.array(BACKGROUNDS["white"]), np.array(COLOURS["red"])
    cases = (
        ("moving right", (0, -1), True),
        ("moving up", (1, 0), True),
        ("staying still", (0, -1), True),
        ("moving right", (0, -1), False),
    )
    for motion, behind, trail in cases:
        spec = object_clips(1, motion=motion, shape="circle", colour="red", background="white")[0]
        spec.trail = trail
        frame = render_frame(spec, 8, 64).astype(np.float32)
        obj = object_at(spec.objects[0], spec, 8)
        row, col = round(obj.y * 64), round(obj.x * 64)
        near = round(1.3 * obj.radius * 64)  # just outside the object
        travel = spec.speed * 64  # pixels a frame
        shares = []  # of the red colour at each point behind it: 0 is the white background, 1 the object
        for reach in (near, round(1.3 * obj.radius * 64 + 6 * travel)):
            pixel = frame[row + behind[0] * reach, col + behind[1] * reach]
            shares.append(float(np.dot(white - pixel, white - red) / np.dot(white - red, white - red)))
        if motion == "staying still" or not trail:
            assert shares == [0.0, 0.0]
        else:
            assert 0.9 > shares[0] > shares[1] > 0.05  # see-through copies, fading with their age
            np.testing.assert_allclose(frame[row - behind[0] * near, col - behind[1] * near], white)  # none ahead


def test_a_shadow_coloured_trail_fades_from_the_shadow_colour_and_holds_none_of_the_objects():
    gray, shadow = np.array(BACKGROUNDS["gray"], np.float32), np.array(shadow_colour("gray"), np.float32)
    spec = object_clips(1, motion="moving left", shape="square", colour="red", background="gray")[0]
    spec.trail, spec.trail_colour = True, "shadow"
    frame = render_frame(spec, 8, 64).astype(np.float32)
    obj = object_at(spec.objects[0], spec, 8)
    row, col, travel = round(obj.y * 64), round(obj.x * 64), spec.speed * 64
    shares = []  # of the shadow colour behind it (to the right): 0 is the gray background, 1 the shadow
    for reach in (round(1.3 * obj.radius * 64), round(1.3 * obj.radius * 64 + 6 * travel)):
        pixel = frame[row, col + reach]
        shares.append(float(np.dot(gray - pixel, gray - shadow) / np.dot(gray - shadow, gray - shadow)))
        np.testing.assert_allclose(pixel, gray + shares[-1] * (shadow - gray), atol=1.0)  # no red in it
    assert 0.9 > shares[0] > shares[1] > 0.05
    np.testing.assert_allclose(frame[row, col - round(1.3 * obj.radius * 64)], gray, atol=10)  # none ahead
    with pytest.raises(ConfigError, match="trail_colour must be one of object, shadow; got 'red'"):
        render_dataset("unused", DatasetSpec(kind="images", count=1, trail=True, trail_colour="red"))


def test_growing_shrinking_and_spinning_objects_cast_a_shadow_placed_by_the_motion():
    size, shadow = 64, np.array(shadow_colour("gray"))
    gray = np.array(BACKGROUNDS["gray"])

    def pixel(frame, obj, dx, dy=0.0):  # at (dx, dy) frame widths from the object's centre
        return frame[round((obj.y + dy) * size), round((obj.x + dx) * size)].astype(float)

    # (motion, where the shadow's centre lies in SHADOW_SHIFTs): centred for growth, below for shrinking,
    # to the side a spinning object's top moves to
    for motion, (sx, sy) in (
        ("growing", (0, 0)),
        ("shrinking", (0, 1)),
        ("spinning clockwise", (1, 0)),
        ("spinning anticlockwise", (-1, 0)),
    ):
        spec = object_clips(1, motion=motion, shape="square", colour="blue", background="gray")[0]
        spec.objects[0].x = spec.objects[0].y = 0.5  # the whole shadow in the frame
        spec.trail = True
        frame = render_frame(spec, 8, size)
        obj = object_at(spec.objects[0], spec, 8)
        reach = obj.radius + SHADOW  # the shadow's radius, around the centre shifted by the motion
        if (sx, sy) == (0, 0):  # all round
            edge = (reach - 0.02, 0.0)
            np.testing.assert_allclose(pixel(frame, obj, *edge), shadow)
            np.testing.assert_allclose(pixel(frame, obj, 0.02 - reach), shadow)
        else:  # reaching far on its side
            edge = (sx * (reach + SHADOW_SHIFT - 0.02), sy * (reach + SHADOW_SHIFT - 0.02))
            np.testing.assert_allclose(pixel(frame, obj, *edge), shadow)
        if sx != 0:  # none just outside the spinning object on the other side
            np.testing.assert_allclose(pixel(frame, obj, -sx * (obj.radius + 0.04)), gray)
        spec.trail = False
        np.testing.assert_allclose(pixel(render_frame(spec, 8, size), obj, *edge), gray)

    for motion in ("shrinking", "spinning clockwise"):  # no copies of where it was: a plain background beside it
        spec = object_clips(1, motion=motion, shape="square", colour="blue", background="gray")[0]
        spec.trail = True
        obj = object_at(spec.objects[0], spec, 8)
        np.testing.assert_allclose(pixel(render_frame(spec, 8, size), obj, 0.0, -obj.radius - 0.02), gray)


def test_a_striped_object_has_a_band_of_the_stripe_colour_through_its_centre():
    for spec in object_clips(4, motion="staying still", style="striped"):
        frame = render_frame(spec, 0, 64)
        obj = spec.objects[0]
        centre = frame[round(obj.y * 64), round(obj.x * 64)]
        np.testing.assert_allclose(centre, stripe_colour(spec.background), atol=1)


def test_captions_parse_back_to_the_ground_truth():
    for spec in object_clips(20):
        attributes = parse_prompt(caption(spec))
        assert (attributes.colour, attributes.shape) == (spec.objects[0].colour, spec.objects[0].shape)
        assert (attributes.background, attributes.motion) == (spec.background, spec.motion)
    camera = sample_camera_clip(np.random.default_rng(1), "panning left", style="striped")
    attributes = parse_prompt(caption(camera))
    assert (attributes.camera, attributes.motion, attributes.style) == ("panning left", None, "striped")


def test_no_object_stands_on_a_background_of_its_own_colour_and_each_object_colour_shows_on_blue():
    rng = np.random.default_rng(5)
    for spec in object_clips(300) + [sample_camera_clip(rng) for _ in range(100)]:
        assert all(obj.colour != spec.background for obj in spec.objects)
    for colour in (c for c in COLOURS if c != "blue"):  # the README's first prompt uses the blue background
        for spec in object_clips(2, colour=colour, background="blue"):
            assert score_video(render_clip(spec), caption(spec))["text"] >= 0.95


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_ground_truth_clips_score_high_on_text_and_motion(motion):
    scores = [score_video(render_clip(spec), caption(spec)) for spec in object_clips(6, motion=motion)]
    assert np.mean([s["text"] for s in scores]) >= 0.95
    assert np.mean([s["motion"] for s in scores]) >= 0.95


@pytest.mark.parametrize("shape", list(SYMMETRY))
def test_a_spin_turns_the_rendered_object_by_its_speed_and_the_tracker_measures_it(shape):
    for spec in object_clips(4, motion="spinning anticlockwise", shape=shape):
        assert 12 <= spec.speed <= 18 < 180 / SYMMETRY[shape]  # over a pixel a frame; under half the symmetry
        turns = track(render_clip(spec), spec.objects[0].colour, shape).rotation
        np.testing.assert_allclose(np.median(turns), -spec.speed, atol=1.5)


@pytest.mark.parametrize("camera", list(CAMERA_MOTIONS))
def test_ground_truth_camera_clips_score_high_on_camera_and_reversed_low(camera):
    rng = np.random.default_rng(HELD_OUT)
    specs = [sample_camera_clip(rng, camera) for _ in range(3)]
    clips = [render_clip(spec) for spec in specs]
    assert np.mean([score_video(c, caption(s))["camera"] for c, s in zip(clips, specs, strict=True)]) >= 0.95
    assert np.mean([score_video(c, caption(s))["text"] for c, s in zip(clips, specs, strict=True)]) >= 0.95
    assert max(score_video(c[::-1], caption(s))["camera"] for c, s in zip(clips, specs, strict=True)) <= 0.1


@pytest.mark.parametrize("motion", [m for m in MOTIONS if m != "staying still"])
def test_reversed_shuffled_and_frozen_clips_score_low_on_motion(motion):
    rng = np.random.default_rng(7)
    for spec in object_clips(4, motion=motion):
        clip, prompt = render_clip(spec), parse_prompt(caption(spec))
        assert motion_score(clip[::-1], prompt) <= 0.1
        assert motion_score(clip[rng.permutation(16)], prompt) <= 0.4
        assert motion_score(np.repeat(clip[:1], 16, axis=0), prompt) == 0.0


def test_moving_clip_asked_to_stay_still_scores_low():
    for spec in object_clips(6, motion="moving right"):
        assert (
            motion_score(render_clip(spec), parse_prompt(caption(spec).replace("moving right", "staying still"))) <= 0.2
        )


def test_wrong_colour_scores_low_on_text():
    for spec in object_clips(8):
        wrong = next(c for c in COLOURS if c != spec.objects[0].colour)
        prompt = caption(spec).replace(f" {spec.objects[0].colour} ", f" {wrong} ", 1)
        assert score_video(render_clip(spec), prompt)["text"] <= 0.5


def test_shape_part_is_scored_only_on_request_and_falls_with_the_wrong_shape():
    rng = np.random.default_rng(8)
    for spec in object_clips(4, shape="square", motion="moving left"):
        frames, prompt = render_clip(spec), caption(spec)
        assert "shape" not in score_video(frames, prompt)
        right = score_video(frames, prompt, with_shape=True)
        wrong = score_video(frames, prompt.replace(" square ", " triangle ", 1), with_shape=True)
        assert right["shape"] >= 0.8 and wrong["shape"] <= 0.2
        assert right["text"] - wrong["text"] == pytest.approx((right["shape"] - wrong["shape"]) / 3)
    camera = sample_camera_clip(rng)
    assert score_video(render_clip(camera), caption(camera), with_shape=True)["shape"] is None


def test_shuffled_frames_are_less_smooth():
    ratios = []
    rng = np.random.default_rng(3)
    for spec in object_clips(10, motion="moving left") + object_clips(10, motion="spinning clockwise"):
        clip = render_clip(spec)
        ratios.append(smooth_score(clip[rng.permutation(16)]) / smooth_score(clip))
    assert np.mean(ratios) <= 0.8 and max(ratios) < 1.0


def test_flicker_is_not_smooth():
    clip = render_clip(object_clips(1, motion="staying still")[0]).astype(np.int16)
    clip[::2] = np.clip(clip[::2] + 60, 0, 255)
    assert smooth_score(clip.astype(np.uint8)) < 0.2


def test_edge_f1_is_one_for_the_same_edges_high_a_pixel_off_and_low_for_another_clip():
    from animatediff.control.preprocess import canny

    first, second = (render_clip(spec) for spec in object_clips(2, motion="moving right"))
    edges = canny(first)
    assert edge_f1(edges, edges) == 1.0
    assert edge_f1(np.roll(edges, 1, axis=2), edges) == 1.0  # within the one-pixel reach
    assert edge_f1(np.roll(edges, 3, axis=2), edges) < 0.6
    assert edge_f1(canny(second), edges) < 0.3
    assert edge_f1(np.zeros_like(edges), edges) == 0.0
    one_frame = edges.copy()
    one_frame[1:] = 0  # the first frame's edges alone: precision 1, recall a sixteenth
    assert edge_f1(one_frame, edges) == pytest.approx(2 * (1 / 16) / (1 + 1 / 16), abs=0.03)


def test_watermark_detection_separates_the_domains():
    rng = np.random.default_rng(HELD_OUT + 1)
    right = 0
    for index in range(40):
        spec = sample_object_clip(rng, 16) if index % 2 else sample_camera_clip(rng)
        clean = watermark_score(render_clip(spec))
        spec.watermark = True
        marked = watermark_score(render_clip(spec))
        right += (clean < 0.3) + (marked >= 0.3)
    assert right / 80 >= 0.95


def test_style_is_recognised_and_absent_style_is_not():
    for style in STYLES:
        specs = object_clips(8, style=style)
        styled = [score_video(render_clip(s), caption(s))["style"] for s in specs]
        for spec in specs:
            spec.style = None
        plain = [score_video(render_clip(s), caption(s) + f", {STYLES[style]}")["style"] for s in specs]
        assert np.mean(styled) >= 0.9 and max(plain) <= 0.1, (style, styled, plain)


def test_datasets_load_as_training_data(tmp_path):
    render_dataset(tmp_path / "clips", DatasetSpec(kind="clips", count=3, seed=1, size=32, frames=8, layout="webvid"))
    render_dataset(tmp_path / "images", DatasetSpec(kind="images", count=3, seed=2, size=32))
    truth = [json.loads(line) for line in (tmp_path / "clips" / "ground_truth.jsonl").read_text().splitlines()]
    assert len(truth) == 3 and all(t["watermark"] and t["motion"] in MOTIONS for t in truth)
    for name, data in (
        ("clips", {"format": "webvid", "csv": "clips/results.csv", "path": "clips/videos"}),
        ("images", {"format": "jsonl", "path": "images"}),
    ):
        config = tmp_path / f"{name}.yaml"
        data.update(frames=1, size=32)
        config.write_text(json.dumps({"stage": "domain_adapter", "base": str(tmp_path), "data": data}))
        assert len(load_train_config(config).items) == 3


def test_dataset_clips_hold_exactly_the_rendered_frames(tmp_path):
    # A lossy MP4 (4:2:0 chroma, crf 18) at 32×32 blurred colour edges and spins: the module learned from that.
    render_dataset(tmp_path, DatasetSpec(kind="clips", count=3, seed=5, size=32, frames=8, trail=True))
    for entry in map(json.loads, (tmp_path / "ground_truth.jsonl").read_text().splitlines()):
        objects = [SceneObject(**obj) for obj in entry.pop("objects")]
        spec = ClipSpec(objects, **{key: value for key, value in entry.items() if key not in ("file", "caption")})
        np.testing.assert_array_equal(read_video(tmp_path / entry["file"]), render_clip(spec, 8, 32))


def tiny_clip(folder, tokenizer_folder):
    torch.manual_seed(0)
    text = dict(
        vocab_size=514,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    CLIPTokenizer.from_pretrained(tokenizer_folder).save_pretrained(folder)
    return folder


def test_shapes_render_and_eval_commands(tmp_path, capsys):
    from helpers import TOKENIZER

    assert main(["shapes", "render", str(tmp_path / "reference"), "--kind", "images", "--count", "3"]) == 0
    assert (
        main(
            [
                "shapes",
                "render",
                str(tmp_path / "trail"),
                "--kind",
                "clips",
                "--count",
                "2",
                "--trail",
                "--trail-colour",
                "shadow",
            ]
        )
        == 0
    )
    truths = [json.loads(line) for line in (tmp_path / "trail" / "ground_truth.jsonl").read_text().splitlines()]
    assert [(truth["trail"], truth["trail_colour"]) for truth in truths] == [(True, "shadow"), (True, "shadow")]
    assert not json.loads((tmp_path / "reference" / "ground_truth.jsonl").read_text().splitlines()[0])["trail"]
    videos = tmp_path / "videos"
    for index, spec in enumerate(object_clips(3, motion="moving up")):
        write_video(render_clip(spec), videos / f"{index}.gif", settings={"prompt": caption(spec)})
    clip_folder = tiny_clip(tmp_path / "clip", TOKENIZER)
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(videos),
                "--clip-model",
                str(clip_folder),
                "--reference-images",
                str(tmp_path / "reference"),
                "--json",
                str(tmp_path / "scores.json"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "video",
        "text",
        "motion",
        "camera",
        "smooth",
        "watermark",
        "style",
        "clip_text",
        "clip_smooth",
        "clip_domain",
    ]
    assert table[-1].startswith("mean") and len(table) == 5
    rows = json.loads((tmp_path / "scores.json").read_text())
    assert all(r["motion"] >= 0.95 and r["camera"] is None for r in rows)
    assert all(-1 <= r[k] <= 1 for r in rows for k in ("clip_text", "clip_smooth", "clip_domain"))


def test_clip_smoothness_of_a_frozen_clip_is_one(tmp_path):
    from animatediff.evaluation.clip_metric import ClipScorer
    from helpers import TOKENIZER

    scorer = ClipScorer(tiny_clip(tmp_path / "clip", TOKENIZER))
    frozen = np.repeat(render_clip(object_clips(1)[0])[:1], 4, axis=0)
    assert scorer.score(frozen, "a red circle")["clip_smooth"] == pytest.approx(1.0, abs=1e-5)
