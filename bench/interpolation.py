"""Frame interpolation speed: seconds per output frame of the built-in optical flow at 32², 256² and 512².

    python bench/interpolation.py [--frames 5] [--factor 2] [--sizes 32 256 512]

A shapes-world clip (a red triangle moving right, rendered at each size) is interpolated ×K; each size is
timed twice and the faster run kept. The reference run in the same process is linear blending (what costs
nothing but the arithmetic), so the ratio says what the flow and the warps add. Set
`RIFE_WEIGHTS=flownet.pkl` to time RIFE too. One torch and OpenCV thread unless told otherwise.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import torch

from animatediff.finishing.interpolation import blend_between, flow_between, interpolate, interpolator
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import prompt_clip


def seconds_per_frame(clip, factor: int, between) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        made = interpolate(clip, factor, between=between, progress=False)
        best = min(best, time.perf_counter() - start)
    return best / (len(made) - len(clip))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 512])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    methods = {"linear blend (reference)": blend_between, "optical flow (built in)": flow_between}
    if os.environ.get("RIFE_WEIGHTS"):
        methods[f"RIFE ({Path(os.environ['RIFE_WEIGHTS']).name})"] = interpolator(os.environ["RIFE_WEIGHTS"])[0]
    spec = prompt_clip("a red triangle moving right on a white background", seed=1)
    print("| size | method | s per new frame | × blend |\n|---|---|---|---|")
    for size in args.sizes:
        clip = render_clip(spec, frames=args.frames, size=size)
        timed = {name: seconds_per_frame(clip, args.factor, between) for name, between in methods.items()}
        reference = timed["linear blend (reference)"]
        for name, seconds in timed.items():
            print(f"| {size}² | {name} | {seconds:.4f} | {seconds / reference:.1f} |")


if __name__ == "__main__":
    main()
