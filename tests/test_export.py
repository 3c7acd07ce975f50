import json

import numpy as np
import pytest

from animatediff import ConfigError, read_video, write_video
from animatediff.export import file_stem


def moving_square(frames=5, height=32, width=48):
    video = np.full((frames, height, width, 3), 40, dtype=np.uint8)
    for index in range(frames):
        video[index, 8:20, 4 + 6 * index : 16 + 6 * index] = (230, 60, 20)
    return video


@pytest.mark.parametrize("name", ["clip.gif", "clip.mp4", "clip.webm", "clip.webp", "clip"])
def test_every_format_decodes_to_the_same_frame_count_and_size(tmp_path, name):
    frames = moving_square()
    path = write_video(frames, tmp_path / name, fps=10, settings={"seed": 3})
    decoded = read_video(path)
    assert decoded.shape == frames.shape
    # Lossy codecs keep the picture: the square is still where it was drawn.
    assert np.abs(decoded.astype(int) - frames).mean() < 6
    assert tuple(decoded[2, 14, 20]) == pytest.approx((230, 60, 20), abs=40)


def test_frame_folder_and_webp_are_lossless(tmp_path):
    frames = moving_square()
    np.testing.assert_array_equal(read_video(write_video(frames, tmp_path / "frames")), frames)
    np.testing.assert_array_equal(read_video(write_video(frames, tmp_path / "clip.webp")), frames)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[:2] == ["00000.png", "00001.png"]


def test_lossless_mp4_keeps_every_pixel_where_the_default_blurs_colour_edges(tmp_path):
    import av

    frames = moving_square(height=31, width=33)  # odd sizes: no 4:2:0 chroma to halve
    path = write_video(frames, tmp_path / "clip.mp4", lossless=True)
    np.testing.assert_array_equal(read_video(path), frames)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    lossy = read_video(write_video(moving_square(), tmp_path / "lossy.mp4"))
    assert np.abs(lossy.astype(int) - moving_square()).max() > 10  # the default blurs a colour edge
    with pytest.raises(ConfigError, match=r"clip\.webm: lossless"):
        write_video(frames, tmp_path / "clip.webm", lossless=True)


def test_sidecar_holds_the_settings(tmp_path):
    write_video(moving_square(), tmp_path / "clip.mp4", fps=12, settings={"seed": 7, "prompt": "a square"})
    sidecar = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert sidecar == {"seed": 7, "prompt": "a square", "fps": 12, "format": "mp4"}
    write_video(moving_square(), tmp_path / "frames", settings={"seed": 8})
    assert json.loads((tmp_path / "frames.json").read_text())["seed"] == 8
    write_video(moving_square(), tmp_path / "bare.gif")
    assert not (tmp_path / "bare.gif.json").exists()  # no settings, no sidecar


def test_mp4_frame_rate_is_the_requested_fps(tmp_path):
    import av

    path = write_video(moving_square(frames=6), tmp_path / "clip.mp4", fps=12)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 12
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


def test_failed_write_keeps_the_previous_output(tmp_path):
    path = write_video(moving_square(), tmp_path / "clip.mp4", settings={"seed": 1})
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="even width and height"):
        write_video(moving_square(height=31), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.mp4.json"]


def test_rewriting_a_frame_folder_replaces_it_whole(tmp_path):
    write_video(moving_square(frames=6), tmp_path / "frames")
    write_video(moving_square(frames=3), tmp_path / "frames")
    assert len(list((tmp_path / "frames").iterdir())) == 3


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown output format '\.avi'"):
        write_video(moving_square(), tmp_path / "clip.avi")


def test_file_stems_from_prompts_and_captions():
    assert file_stem("A red circle, moving RIGHT!") == "a-red-circle-moving-right"
    assert file_stem("base + motion module") == "base-motion-module"
    assert file_stem("DreamBooth 'outlined'") == "dreambooth-outlined"
    long = file_stem("a yellow star moving right on a gray background, stripestyle")
    assert long == "a-yellow-star-moving-right-on-a-gray-background" and len(long) <= 48  # cut, no hyphen left
    assert file_stem("?!") == "video"


def test_a_clip_dataset_encodes_to_the_same_bytes_in_processes_running_side_by_side(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys; from animatediff.shapes.datasets import DatasetSpec, render_dataset; "
        "render_dataset(sys.argv[1], DatasetSpec(kind='clips', count=60, seed=2, size=32, frames=16, "
        "trail=True))"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / name)]) for name in ("a", "b")]
    assert [run.wait() for run in runs] == [0, 0]
    files = sorted((tmp_path / "a").glob("*.mp4"))
    assert len(files) == 60
    assert [path.name for path in files if path.read_bytes() != (tmp_path / "b" / path.name).read_bytes()] == []
