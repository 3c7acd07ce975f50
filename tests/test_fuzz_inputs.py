"""Every kind of file the command reads, damaged in 50 seeded ways: each ends with exit 2 and one line naming
the file, no traceback, no output file, and no pickled code run."""

import os
import shutil
import struct

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from animatediff import write_video
from animatediff.cli import main
from helpers import save_tiny_base, tiny_text_encoder, tiny_unet, tiny_vae
from ldm_layout import to_ldm_checkpoint
from test_checkpoint_layouts import motion_lora_state
from test_image_models import kohya_lora
from test_lora_merges import adapter_state

CASES = 50
SMALL = ["--frames", "2", "--width", "16", "--height", "16", "--steps", "1", "--seed", "1", "--device", "cpu"]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def corrupt(data: bytes, case: int, target, marker) -> None:
    """Write the `case`-th damaged version of `data` at `target` (cases cycle through the kinds of damage)."""
    rng = np.random.default_rng(case)
    kind = case % 7
    if kind == 0:  # cut short at a random place
        target.write_bytes(data[: int(rng.integers(0, len(data)))])
    elif kind == 1:  # random bytes of the same length
        target.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif kind == 2:  # bytes flipped in the header
        damaged = bytearray(data)
        for position in rng.integers(0, min(len(data), 256), 4):
            damaged[position] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(damaged))
    elif kind == 3:
        target.write_bytes(b"")
    elif kind == 4:  # a folder where a file should be
        target.mkdir()
        (target / "inside").write_bytes(data[:100])
    elif kind == 5:  # a safetensors header that claims more than the file holds
        header = b'{"w": {"dtype": "F32", "shape": [1000000000, 1000], "data_offsets": [0, 4000000000000]}}'
        claimed = int(rng.choice([len(header), 2**40, 2**63 - 1]))
        target.write_bytes(struct.pack("<Q", claimed) + header + data[:64])
    else:  # a pickle that would run code
        torch.save({"weights": RunsCode(marker)}, target)


def check_refusal(capsys, target, output, marker) -> None:
    error = capsys.readouterr().err
    assert "Traceback" not in error, error
    lines = [line for line in error.splitlines() if not line.startswith(("denoising", "\r"))]
    assert len(lines) == 1 and lines[0].startswith("animatediff "), error
    assert str(target) in lines[0] or target.name in lines[0], error
    assert not output.exists() and not marker.exists()


@pytest.fixture(scope="module")
def originals(tmp_path_factory, tiny_base, tiny_motion_module_file):
    """A valid file of each kind the generate command reads, as bytes, with the flag that reads it."""
    folder = tmp_path_factory.mktemp("originals")
    save_file(kohya_lora(), folder / "lora.safetensors")
    torch.save(motion_lora_state(), folder / "motion_lora.ckpt")
    torch.save(adapter_state(tiny_unet()), folder / "adapter.ckpt")
    save_file(to_ldm_checkpoint(tiny_unet(3), tiny_vae(3), tiny_text_encoder(3)), folder / "personal.safetensors")
    return {
        "--motion-module": ("mm.safetensors", tiny_motion_module_file.read_bytes()),
        "--lora": ("lora.safetensors", (folder / "lora.safetensors").read_bytes()),
        "--motion-lora": ("motion_lora.ckpt", (folder / "motion_lora.ckpt").read_bytes()),
        "--domain-adapter": ("adapter.ckpt", (folder / "adapter.ckpt").read_bytes()),
        "--dreambooth": ("personal.safetensors", (folder / "personal.safetensors").read_bytes()),
    }


@pytest.mark.parametrize("flag", ["--motion-module", "--lora", "--motion-lora", "--domain-adapter", "--dreambooth"])
def test_damaged_checkpoints_are_refused_by_name(tmp_path, tiny_base, tiny_motion_module_file, originals, capsys, flag):
    name, data = originals[flag]
    output, marker = tmp_path / "out.gif", tmp_path / "code-ran"
    for case in range(CASES):
        target = tmp_path / f"{case:02d}-{name}"
        corrupt(data, case, target, marker)
        models = {"--motion-module": str(tiny_motion_module_file), flag: str(target)}
        args = [item for pair in models.items() for item in pair]
        assert main(["generate", "a cat", "--base", str(tiny_base), *args, *SMALL, "-o", str(output)]) == 2, case
        check_refusal(capsys, target, output, marker)


def test_damaged_base_model_configs_are_refused_by_name(tmp_path, tiny_motion_module_file, capsys):
    base = save_tiny_base(tmp_path / "base")
    output, marker = tmp_path / "out.gif", tmp_path / "code-ran"
    parts = (
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    )
    originals = {part: (base / part).read_bytes() for part in parts}
    for case in range(CASES):
        part = parts[case % len(parts)]
        shutil.rmtree(base / part) if (base / part).is_dir() else (base / part).unlink()
        corrupt(originals[part], case, base / part, marker)
        assert (
            main(
                [
                    "generate",
                    "a cat",
                    "--base",
                    str(base),
                    "--motion-module",
                    str(tiny_motion_module_file),
                    *SMALL,
                    "-o",
                    str(output),
                ]
            )
            == 2
        ), (case, part)
        check_refusal(capsys, base, output, marker)
        shutil.rmtree(base / part) if (base / part).is_dir() else (base / part).unlink()
        (base / part).write_bytes(originals[part])


def test_damaged_prompt_configs_are_refused_by_name(tmp_path, tiny_base, tiny_motion_module_file, capsys):
    entry = {
        "motion_module": str(tiny_motion_module_file),
        "prompt": ["a cat", "a dog"],
        "seed": [1, 2],
        "steps": 1,
        "W": 16,
        "H": 16,
        "L": 2,
        "n_prompt": "blurry",
        "guidance_scale": 7.5,
    }
    data = yaml.safe_dump([entry]).encode()
    output, marker = tmp_path / "out", tmp_path / "code-ran"
    refused = 0
    for case in range(CASES):
        target = tmp_path / f"{case:02d}.yaml"
        corrupt(data, case, target, marker)
        code = main(["generate", "--config", str(target), "--base", str(tiny_base), "--output-dir", str(output)])
        error = capsys.readouterr().err
        assert "Traceback" not in error and code in (0, 2), (case, error)
        if code == 0:  # a cut that still leaves a whole, valid config (e.g. at a line's end) is a config
            shutil.rmtree(output)
            continue
        refused += 1
        lines = [line for line in error.splitlines() if not line.startswith(("denoising", "\r"))]
        assert len(lines) == 1 and target.name in lines[0], error
        assert not output.exists() and not marker.exists()
    assert refused >= CASES * 0.8


def test_damaged_videos_are_refused_by_eval_by_name(tmp_path, capsys):
    frames = (np.random.default_rng(0).random((4, 16, 16, 3)) * 255).astype(np.uint8)
    marker = tmp_path / "code-ran"
    refused = total = 0
    for suffix in (".gif", ".mp4", ".webp"):
        source = write_video(frames, tmp_path / f"source{suffix}")
        data = source.read_bytes()
        source.unlink()
        for case in range(CASES // 3 + 1):
            folder = tmp_path / f"eval-{suffix[1:]}-{case}"
            folder.mkdir()
            target = folder / f"clip{suffix}"
            corrupt(data, case, target, marker)
            (folder / f"clip{suffix}.json").write_text('{"prompt": "a red circle moving right"}')
            code = main(["eval", str(folder), "--json", str(folder / "scores.json")])
            total += 1
            if code == 0:  # still a video its decoder reads whole (a GIF with other palette colours, say)
                assert case % 7 in (0, 2), (suffix, case)  # only a cut or flipped bytes can leave one
                capsys.readouterr()
                continue
            refused += 1
            assert code == 2
            check_refusal(capsys, target, folder / "scores.json", marker)
    assert refused >= total * 0.8
