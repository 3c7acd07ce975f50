"""One long clip over several processes: each step's context windows spread over the processes, their fused
predictions joined, so every process holds the clip one process makes."""

import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from animatediff import AnimateDiffPipeline, load_base
from animatediff.sampling.distributed import WindowSpread, join_processes
from animatediff.sampling.options import ContextSettings
from helpers import random_motion_module, save_tiny_base

CLIP = dict(num_frames=64, steps=2, seed=5, height=16, width=16, guidance_scale=7.5, negative_prompt="blurry")
CONTEXT = ContextSettings(length=16, overlap=4)  # 5 windows: 3 on process 0, 2 on process 1


def long_clip(base: Path, spread: WindowSpread | None = None) -> tuple[np.ndarray, int]:
    """The clip's float frames, and how many times this process ran the video UNet for them."""
    pipeline = AnimateDiffPipeline.from_components(load_base(base), random_motion_module())
    if spread is not None:
        pipeline.spread = spread
    calls, call_unet = [], pipeline._call_unet
    pipeline._call_unet = lambda *args, **kwargs: calls.append(1) or call_unet(*args, **kwargs)
    video = pipeline.generate("a red circle moving right", progress=False, context=CONTEXT, **CLIP)
    return video.numpy(), len(calls)


def one_of_two_processes(rank: int, base: Path, port: int, folder: Path) -> None:
    """A process of a 2-process group on this machine (what torchrun's environment would say)."""
    import os

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    spread = join_processes("cpu")
    frames, calls = long_clip(base, spread)
    np.save(folder / f"rank-{rank}.npy", frames)
    (folder / f"rank-{rank}.calls").write_text(str(calls))
    (folder / f"rank-{rank}.seed").write_text(str(spread.from_first(100 + rank)))  # what process 0 planned
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_long_clip_on_two_processes_is_the_clip_of_one(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    mp.spawn(one_of_two_processes, args=(base, free_port(), tmp_path), nprocs=2, join=True)
    first, second = np.load(tmp_path / "rank-0.npy"), np.load(tmp_path / "rank-1.npy")
    assert np.array_equal(first, second)  # the same latents on every process, step after step
    alone, calls = long_clip(base)
    assert first.shape == alone.shape == (64, 3, 16, 16)
    assert np.abs(first - alone).max() < 1e-5
    shares = [int((tmp_path / f"rank-{rank}.calls").read_text()) for rank in (0, 1)]
    assert [(tmp_path / f"rank-{rank}.seed").read_text() for rank in (0, 1)] == ["100", "100"]
    assert calls == 5 * CLIP["steps"] and shares == [3 * CLIP["steps"], 2 * CLIP["steps"]]  # windows 0, 2, 4 | 1, 3
