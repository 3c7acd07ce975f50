"""Upscaling speed and memory: seconds per output frame and peak memory of each upscaler and of the second pass.

    python bench/upscale_speed.py            # the cases below, each in a fresh process; prints the table
    python bench/upscale_speed.py --all      # also the 512² cases left out on the shared CPU (SKIPPED_AT)
    python bench/upscale_speed.py --sizes 128 --cases Lanczos "ESRGAN-shaped ×4, tiled"   # some cases, sides

Cases, ×2 unless said, input sides 32, 256 and 512:
- Lanczos (Pillow), 16 frames;
- an ESRGAN-shaped network (Real-ESRGAN x4plus's shape: RRDBNet, 64 channels, 23 blocks, ×4; random seeded
  weights, built here because spandrel cannot be imported on this CPU-only torch), one frame through the
  package's tiling (`finishing.upscaling.model_upscale`, tiles of 192² with 16 pixels of context);
- the second pass (`generation.upscaled`: Lanczos, then the VAE encode, the denoising steps, the VAE decode):
  the embedded model at 32² → 64² (16 frames, 25 steps at strength 0.35: 8 steps run), and an SD1.5-shaped
  pipeline (bench/run.py's random SD1.5 UNet, VAE and v2-sized motion module, a random CLIP-L-shaped text
  encoder) at one step (25 steps at strength 0.04), 4 frames, to 256² and 512² (SD1.5's UNet does not run on
  a 32² input's 8² latents: that row is the embedded model's).
Each case runs in its own process (so its peak resident memory is its own, libraries included), after one
warm-up where it is cheap. Absolute times hold for this machine only; the ratio column compares each case with
Lanczos at the same input size, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

SIZES = (32, 256, 512)
# left out of the default run on the shared 2-core CPU: an SD1.5-shaped second pass to 512² takes about 4 minutes
# a frame (`--sizes 512 --cases Lanczos "second pass"` runs it alone) and an ESRGAN frame from 512² (2048² out)
# about 16 times the 128² one; --all runs everything
SKIPPED_AT = {512: ("ESRGAN-shaped ×4, tiled", "second pass")}


class RDB(nn.Module):
    """ESRGAN's residual dense block: five 3×3 convolutions, each seeing every earlier output."""

    def __init__(self, width: int = 64, growth: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(width + i * growth, growth if i < 4 else width, 3, padding=1) for i in range(5)
        )

    def forward(self, x):
        features = [x]
        for index, conv in enumerate(self.convs):
            out = conv(torch.cat(features, 1))
            if index < 4:
                features.append(nn.functional.leaky_relu(out, 0.2))
        return x + 0.2 * out


class RRDBNet(nn.Module):
    """Real-ESRGAN x4plus's shape (23 blocks of three RDBs, nearest ×2 upsampling twice)."""

    def __init__(self, width: int = 64, blocks: int = 23):
        super().__init__()
        self.first = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*(nn.Sequential(RDB(width), RDB(width), RDB(width)) for _ in range(blocks)))
        self.body_conv = nn.Conv2d(width, width, 3, padding=1)
        self.up1, self.up2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.hr, self.last = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        feature = self.first(x)
        feature = feature + self.body_conv(self.body(feature))
        for up in (self.up1, self.up2):
            feature = nn.functional.leaky_relu(up(nn.functional.interpolate(feature, scale_factor=2)), 0.2)
        return self.last(nn.functional.leaky_relu(self.hr(feature), 0.2))


def frames(count: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def lanczos_case(size: int) -> tuple[float, int]:
    from animatediff.finishing.upscaling import lanczos

    clip = frames(16, size)
    lanczos(clip, (2 * size, 2 * size))  # warm-up
    started = time.perf_counter()
    lanczos(clip, (2 * size, 2 * size))
    return time.perf_counter() - started, 16


def esrgan_case(size: int) -> tuple[float, int]:
    from animatediff.finishing.upscaling import model_upscale

    torch.manual_seed(0)
    net = RRDBNet().eval()
    started = time.perf_counter()
    model_upscale(net, 4, frames(1, size), (4 * size, 4 * size))
    return time.perf_counter() - started, 1


def sd15_pipeline():
    from run import CONFIGS, build_motion_module, build_unet, build_vae, embedded_components
    from transformers import CLIPTextConfig, CLIPTextModel

    from animatediff.inflation import inflate
    from animatediff.pipeline import AnimateDiffPipeline

    config = CONFIGS["sd15"]
    tokenizer = embedded_components().tokenizer
    torch.manual_seed(4)
    encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
    ).eval()
    unet = inflate(build_unet(config), build_motion_module(config))
    return AnimateDiffPipeline(unet, build_vae(config), encoder, tokenizer)


def second_pass_case(size: int) -> tuple[float, int]:
    from animatediff.generation import upscaled
    from animatediff.settings import UpscaleSpec

    if size == 32:
        from animatediff.embedded import MODELS
        from animatediff.loading import build_pipeline
        from animatediff.planner import with_family
        from animatediff.settings import ModelSpec

        pipeline = build_pipeline(with_family(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)))
        count, strength, source = 16, 0.35, 32  # the embedded model's own size, upscaled to 64²
    else:
        pipeline, count, strength, source = sd15_pipeline(), 4, 0.04, size // 2  # upscaled to `size`
    sample = pipeline.sample("a red circle moving right", num_frames=count, height=source, width=source, steps=25)
    started = time.perf_counter()
    upscaled(UpscaleSpec(2, "lanczos", None, strength), sample, frames(count, source), pipeline, None, False)
    return time.perf_counter() - started, count


CASES = {"Lanczos": lanczos_case, "ESRGAN-shaped ×4, tiled": esrgan_case, "second pass": second_pass_case}


def worker(case: str, size: int) -> None:
    torch.set_num_threads(1)
    seconds, count = CASES[case](size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "frames": count, "peak": peak}))


def row(case: str, size: int, result: dict, reference: dict | None) -> str:
    per_frame = result["seconds"] / result["frames"]
    ratio = f"{per_frame / (reference['seconds'] / reference['frames']):.0f}" if reference else "–"
    source, scale = (size, 4) if case.startswith("ESRGAN") else (size, 2)
    if case == "second pass":
        source = 32 if size == 32 else size // 2
        case = "second pass, embedded model, 8 steps" if size == 32 else "second pass, SD1.5-shaped, 1 step"
    return (
        f"| {case} | {source}² → {source * scale}² | {result['frames']} | {per_frame:.4g} | {ratio} | "
        f"{result['peak'] / 2**30:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also the 512² cases left out on the shared CPU")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="input sides; default: 32 256 512")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="only these (and not SKIPPED_AT's skips)")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker[0], int(args.worker[1]))
        return
    skipped = {} if args.all or args.cases else SKIPPED_AT
    print("| case | size | frames | s per output frame | × Lanczos | peak GiB |\n|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        results = {}
        chosen = [case for case in CASES if case in (args.cases or CASES) and case not in skipped.get(size, ())]
        for case in chosen:
            run = subprocess.run(
                [sys.executable, __file__, "--worker", case, str(size)], capture_output=True, text=True
            )
            lines = run.stdout.strip().splitlines()
            if run.returncode or not lines:
                error = [line for line in run.stderr.splitlines() if line.strip()] or [f"exit {run.returncode}"]
                print(f"| {case} | {size}² | failed: {error[-1].strip()[:200]} |", flush=True)
                continue
            results[case] = json.loads(lines[-1])
            print(row(case, size, results[case], results.get("Lanczos")), flush=True)


if __name__ == "__main__":
    main()
