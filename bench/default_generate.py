"""Time the first thing a new user runs: `animatediff generate PROMPT -o out.gif` on the embedded default.

    python bench/default_generate.py [--runs 3]

Runs the command as a user would (a fresh process: imports, loading the shipped weights, 16 frames,
25 DDIM steps with guidance, writing the GIF) and reports the wall time of each run against the
10-second target, then splits one run into loading and generation in this process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle moving right on a blue background"
TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    walls = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            output = Path(folder) / f"out-{run}.gif"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "animatediff", "generate", PROMPT, "-o", str(output), "--seed", "1"],
                           check=True, capture_output=True)  # fmt: skip
            walls.append(time.perf_counter() - started)
            print(f"run {run + 1}: {walls[-1]:.2f} s wall (whole command)")
    best = min(walls)
    print(f"best {best:.2f} s, median {sorted(walls)[len(walls) // 2]:.2f} s; target ≤ {TARGET_SECONDS:.0f} s: "
          f"{'met' if best <= TARGET_SECONDS else 'NOT met'} ({best / TARGET_SECONDS:.2f}× the target)")  # fmt: skip

    started = time.perf_counter()
    import torch

    from animatediff.embedded import MODELS
    from animatediff.loading import ModelSpec, build_pipeline

    imported = time.perf_counter()
    pipeline = build_pipeline(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path))
    loaded = time.perf_counter()
    pipeline(PROMPT, num_frames=16, seed=1, progress=False)
    generated = time.perf_counter()
    print(f"in one process ({torch.get_num_threads()} threads): imports {imported - started:.2f} s, "
          f"loading {loaded - imported:.2f} s, generation {generated - loaded:.2f} s; the rest of the best "
          f"command's time (start, writing the GIF, exit): {best - (generated - started):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
