"""One long clip over two processes: its context windows spread over them (`sampling.distributed`).

    python bench/distributed.py [--frames 64] [--steps 25] [--repeats 1] [--write]

The embedded default (32×32) makes a clip of `--frames` frames in context windows of 16 overlapping by 4 (64
frames: 5 windows a step, 3 on process 0 and 2 on process 1), three ways: one process on 1 thread, two
processes on 1 thread each (gloo, as `torchrun --nproc_per_node 2` runs them), and one process on 2 threads.
Each way runs in fresh processes; the time is the generation's alone (text, denoising, decoding: after the
imports and the loading), the slowest process's for two; the fastest of `--repeats`. The two processes'
frames are checked against the one process's. `--write` puts the table into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from results_file import write_section

PROMPT = "a red circle moving right on a blue background"
MARK = "<!-- bench/distributed.py -->"


def worker(rank: int, world: int, threads: int, port: int, frames: int, steps: int, folder: Path) -> None:
    """One process: load the embedded default, join the others (if any), time the clip, keep its frames."""
    torch.set_num_threads(threads)
    from animatediff.embedded import MODELS
    from animatediff.loading import build_pipeline
    from animatediff.sampling.distributed import join_processes
    from animatediff.sampling.options import ContextSettings
    from animatediff.settings import ModelSpec

    pipeline = build_pipeline(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path))
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        pipeline.spread = join_processes("cpu")
        torch.distributed.barrier()  # every process loaded: the clocks start together
    started = time.perf_counter()
    video = pipeline.generate(PROMPT, num_frames=frames, steps=steps, seed=1, progress=False, context=ContextSettings())
    seconds = time.perf_counter() - started
    np.save(folder / f"frames-{rank}.npy", video.numpy())
    (folder / f"seconds-{rank}").write_text(str(seconds))
    if world > 1:
        torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(world: int, threads: int, frames: int, steps: int) -> tuple[float, np.ndarray]:
    """The clip's time (the slowest process's) and process 0's frames."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        mp.spawn(worker, args=(world, threads, free_port(), frames, steps, folder), nprocs=world, join=True)
        seconds = max(float((folder / f"seconds-{rank}").read_text()) for rank in range(world))
        return seconds, np.load(folder / "frames-0.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="put the table into bench/RESULTS.md")
    args = parser.parse_args()
    ways = {"1 process, 1 thread": (1, 1), "2 processes, 1 thread each": (2, 1), "1 process, 2 threads": (1, 2)}
    best, frames = {}, {}
    for _ in range(args.repeats):  # the ways alternate, so a busy moment of the machine does not fall on one
        for name, (world, threads) in ways.items():
            seconds, frames[name] = run(world, threads, args.frames, args.steps)
            best[name] = min(best.get(name, seconds), seconds)
            print(f"{name}: {seconds:.2f} s", flush=True)
    reference = best["1 process, 1 thread"]
    difference = np.abs(frames["2 processes, 1 thread each"] - frames["1 process, 1 thread"]).max()
    lines = [
        f"The embedded default, {args.frames} frames at 32×32, {args.steps} steps, windows of 16 overlapping by 4; "
        f"the generation's time, fastest of {args.repeats}.",
        "",
        "| processes × threads | seconds | vs 1 process, 1 thread |",
        "|---|---|---|",
        *(f"| {name} | {seconds:.2f} | {seconds / reference:.2f}× |" for name, seconds in best.items()),
        "",
        f"The two processes' frames against the one process's: largest difference {difference:.1e}.",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(MARK, "## One long clip over two processes (`python bench/distributed.py`)", lines)


if __name__ == "__main__":
    main()
