"""Long clips in context windows: seconds per frame and peak memory at 16, 32, 64 and 128 frames.

    python bench/long_videos.py                  # embedded model (25 steps) and SD1.5-shaped UNet (1 step)
    python bench/long_videos.py --model embedded
    python bench/long_videos.py --write          # and put the table into bench/RESULTS.md

Each clip is generated in a fresh process (its peak resident memory is its own), with context windows of
16 frames overlapping by 4 (`--context-scope unet`, the default): one window's activations at a time, so
seconds per frame and peak memory should stay about flat as the clip grows. The SD1.5-shaped model is
`bench/run.py`'s (SD1.5's UNet and VAE widths, random weights, a v2-sized motion module) at 128×128;
one denoising step is enough to see the shape of the curve on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from results_file import write_section

FRAMES = (16, 32, 64, 128)

EMBEDDED = """
import json, resource, sys, time
from animatediff.embedded import MODELS
from animatediff.loading import build_pipeline
from animatediff.sampling.options import ContextSettings
from animatediff.settings import ModelSpec
frames = int(sys.argv[1])
pipeline = build_pipeline(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path))
started = time.perf_counter()
pipeline("a red circle moving right on a blue background", num_frames=frames, seed=1, progress=False,
         context=ContextSettings())
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

SD15 = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import torch
from run import CONFIGS, build_motion_module, build_unet, build_vae
from animatediff import AnimateDiffPipeline
from animatediff.image_models import Components
from animatediff.sampling.options import ContextSettings
from helpers import TOKENIZER
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
torch.manual_seed(4)
config = {**CONFIGS["sd15"], "latent": 16}
text = CLIPTextModel(CLIPTextConfig(vocab_size=514, hidden_size=768, intermediate_size=1024, num_attention_heads=8,
                                    num_hidden_layers=2, max_position_embeddings=77)).eval()
components = Components(build_unet(config), build_vae(config), text, CLIPTokenizer.from_pretrained(TOKENIZER))
pipeline = AnimateDiffPipeline.from_components(components, build_motion_module(config))
frames = int(sys.argv[1])
started = time.perf_counter()
pipeline("a corgi", num_frames=frames, seed=1, steps=1, height=128, width=128, progress=False,
         context=ContextSettings())
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def measure(script: str, frames: int) -> dict:
    bench, tests = Path(__file__).parent, Path(__file__).parent.parent / "tests"  # run.py's models, tests' tokenizer
    result = subprocess.run(
        [sys.executable, "-c", script, str(frames), str(bench)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


MARK = "<!-- bench/long_videos.py -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["embedded", "sd15", "both"], default="both")
    parser.add_argument("--write", action="store_true", help="put the table into bench/RESULTS.md")
    args = parser.parse_args()
    models = {
        "embedded": ("embedded model, 32×32, 25 steps", EMBEDDED),
        "sd15": ("SD1.5-shaped, 128×128, 1 step", SD15),
    }
    chosen = list(models) if args.model == "both" else [args.model]
    lines = [
        "| model | frames | seconds | seconds per frame | peak memory | vs 16 frames |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines))
    for name in chosen:
        label, script = models[name]
        first = None
        for frames in FRAMES:
            row = measure(script, frames)
            first = first or row
            lines.append(
                f"| {label} | {frames} | {row['seconds']:.1f} | {row['seconds'] / frames:.3f} | "
                f"{row['peak'] / 2**20:.0f} MiB | {row['peak'] / first['peak']:.2f}× |"
            )
            print(lines[-1], flush=True)
    if args.write:
        write_section(MARK, "## Long clips in context windows (`python bench/long_videos.py`)", lines)


if __name__ == "__main__":
    main()
