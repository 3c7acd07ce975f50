"""bfloat16 against float32 on the CPU: what it saves, against diffusers in the same dtype, and what it costs.

    python bench/bfloat16.py                   # SD1.5-shaped step and decode + the quality cost (about 25 min)
    python bench/bfloat16.py --config tiny     # quick
    python bench/bfloat16.py --skip-speed      # the quality cost alone (about 4 min)

Speed: one denoising step of the video UNet (guidance batch) and the VAE decode of 16 frames, ours and
diffusers', in float32 and in bfloat16, each measurement in its own process (`bench/run.py`'s workers,
same seeded weights), the two sides of each comparison alternating, each side's fastest run kept.
Quality: the embedded default (base + shapes-motion) on the 12 held-out prompts × seeds 1-3 in float32
and in bfloat16 (all of it, or the UNet alone): the mean `text`, `motion` and `smooth`, and how far the
frames are apart (largest and mean difference, share of pixel values more than 2/255 apart). Prints markdown
for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parents[1]))  # the repository root, for lab/ (held_out_prompts)
import run  # noqa: E402  (bench/run.py: its workers and the alternating driver)

DTYPES = ("float32", "bfloat16")
UNET_ALONE = "bfloat16 UNet, float32 text encoder and VAE"
VARIANTS = (*DTYPES, UNET_ALONE)


def speed(config: str, rounds: int) -> list[str]:
    lines = [
        "| config | what | dtype | ours s | diffusers s | ours / diffusers | ours peak GB | max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ours_seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        for what, ours, theirs in (
            ("denoising step (UNet, CFG batch)", "ours_step", "diffusers_step"),
            ("VAE decode, 16 frames", "ours_decode", "diffusers_decode"),
        ):
            for dtype in DTYPES:
                options = run.json.dumps({"dtype": dtype, "repeats": 3 if config == "tiny" else 1})
                a, b = Path(folder, "a.npy"), Path(folder, "b.npy")
                mine, other = run.measure_pair(
                    (ours, config, "cpu", options, str(a)), (theirs, config, "cpu", options, str(b)), rounds
                )
                difference = float(np.abs(np.load(a) - np.load(b)).max())
                ours_seconds[what, dtype] = mine["seconds"]
                lines.append(
                    f"| {config} | {what} | {dtype} | {mine['seconds']:.3f} | {other['seconds']:.3f} | "
                    f"{mine['seconds'] / other['seconds']:.2f} | {mine['peak_bytes'] / 1e9:.2f} | "
                    f"{difference:.1e} |"
                )
                print(lines[-1], f"(runs: ours {mine['runs']}, diffusers {other['runs']})", flush=True)
    lines.append("")
    for what in ("denoising step (UNet, CFG batch)", "VAE decode, 16 frames"):
        ratio = ours_seconds[what, "bfloat16"] / ours_seconds[what, "float32"]
        lines.append(f"- {config}, {what}: ours in bfloat16 takes {ratio:.2f}× ours in float32")
    return lines


def quality(seeds: list[int]) -> list[str]:
    import torch

    from animatediff.embedded import MODELS
    from animatediff.loading import build_pipeline
    from animatediff.planner import with_family
    from animatediff.settings import ModelSpec
    from animatediff.shapes.metrics import score_video
    from lab.report import held_out_prompts

    spec = with_family(ModelSpec(base=MODELS["shapes"].path, motion_module=MODELS["shapes-motion"].path))
    scores, videos, seconds = {}, {}, {}
    for dtype in VARIANTS:
        pipeline = build_pipeline(spec, dtype=torch.float32 if dtype == "float32" else torch.bfloat16)
        if dtype == UNET_ALONE:  # the text encoder and the VAE's decode stay in float32
            pipeline.text_encoder.float()
            pipeline.vae.float()
        rows, clips = [], []
        started = time.perf_counter()
        for prompt in held_out_prompts():
            for seed in seeds:
                frames = pipeline(prompt, num_frames=16, steps=25, guidance_scale=7.5, seed=seed, progress=False)
                clips.append(frames)
                score = score_video(frames, prompt)
                rows.append([np.nan if score[k] is None else score[k] for k in ("text", "motion", "smooth")])
        seconds[dtype] = time.perf_counter() - started
        scores[dtype], videos[dtype] = np.nanmean(rows, axis=0), np.stack(clips).astype(np.int16)
    lines = [
        "| embedded default, held-out prompts | text | motion | smooth | seconds for all clips | largest frame "
        "difference | mean | values > 2/255 apart |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dtype in VARIANTS:
        text, motion, smooth = scores[dtype]
        difference = np.abs(videos["float32"] - videos[dtype])
        lines.append(
            f"| {dtype} | {text:.3f} | {motion:.3f} | {smooth:.3f} | {seconds[dtype]:.1f} | "
            f"{int(difference.max())}/255 | {difference.mean():.2f}/255 | {(difference > 2).mean():.1%} |"
        )
    for dtype in VARIANTS[1:]:
        change = scores[dtype] - scores["float32"]
        lines.append(
            f"- {dtype} − float32: text {change[0]:+.3f}, motion {change[1]:+.3f}, smooth {change[2]:+.3f} "
            f"({len(videos['float32'])} clips of seeds {', '.join(map(str, seeds))})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=list(run.CONFIGS), default="sd15")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    import torch

    from animatediff.cli import fast_bfloat16

    print(
        f"Machine: {run.machine()}; bfloat16 fast here (AMX or AVX-512 BF16, as torch reports): {fast_bfloat16()}; "
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}.\n"
    )
    lines = []
    if not args.skip_quality:
        lines += quality(args.seeds) + [""]
        print("\n".join(lines), flush=True)
    if not args.skip_speed:
        lines += speed(args.config, args.rounds)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
