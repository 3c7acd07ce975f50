"""How close `animatediff.memory.estimate_bytes` comes to a generation's real peak memory.

    python bench/memory.py

Each case runs `animatediff generate` on the embedded model in a fresh process and reads the process's
peak resident memory (`ru_maxrss`) at its end; the same settings go through the estimate. The estimate
is what `generate` refuses a run with, so it should stay above the measured peak (ratio ≥ 1) without
being far above it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [  # (frames, size, guidance)
    (16, 32, 7.5),
    (256, 32, 7.5),
    (1024, 32, 7.5),
    (4096, 32, 7.5),
    (1024, 32, 1.0),
    (256, 64, 7.5),
    (64, 128, 7.5),
    (16, 256, 7.5),
]

RUN = """
import json, resource, sys
from pathlib import Path
from animatediff.cli import main
from animatediff.embedded import MODELS
from animatediff.memory import estimate_bytes
from animatediff.settings import ModelSpec, Sample, Settings
frames, size, guidance, output = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
sample = Sample(prompt="a red circle moving right on a blue background", seed=1, steps=2, frames=frames,
                width=size, height=size, guidance_scale=guidance)
spec = ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)
estimate = estimate_bytes(Settings(sample=sample, model=spec, output=Path(output)))
code = main(["generate", sample.prompt, "--frames", str(frames), "--width", str(size), "--height", str(size),
             "--guidance-scale", str(guidance), "--steps", "2", "--seed", "1", "--motion-module", "none",
             "-o", output])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"code": code, "estimate": estimate, "peak": peak}))
"""


def main() -> None:
    print("frames  size  guidance  measured peak  estimate  estimate / peak")
    with tempfile.TemporaryDirectory() as folder:
        for frames, size, guidance in CASES:
            output = str(Path(folder) / f"{frames}-{size}-{guidance:g}".replace(".", "_"))  # a frame folder
            result = subprocess.run(
                [sys.executable, "-c", RUN, str(frames), str(size), str(guidance), output],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(result.stdout.strip().splitlines()[-1])
            if row["code"] != 0:
                raise SystemExit(f"generate failed for {frames} frames at {size}²: {result.stderr[-500:]}")
            print(
                f"{frames:6d}  {size:4d}  {guidance:8.1f}  {row['peak'] / 2**20:10.0f} MiB  "
                f"{row['estimate'] / 2**20:6.0f} MiB  {row['estimate'] / row['peak']:.2f}"
            )


if __name__ == "__main__":
    main()
