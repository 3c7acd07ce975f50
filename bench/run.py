"""Benchmarks: this pipeline against diffusers' AnimateDiffPipeline parts, and against the machine's limit.

    python bench/run.py                 # tiny and SD1.5-shaped configs, writes bench/RESULTS.md
    python bench/run.py --config tiny   # quick

Every measurement runs in a fresh subprocess (so peak memory is that measurement's own), on the same
seeded random weights; the two implementations' outputs are compared in the same run. Ratios, not
absolute times, are the result: they hold on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

CONFIGS = {
    # the tests' tiny layout, and SD1.5's UNet with v2-sized motion modules, 16 frames at 256×256
    "tiny": dict(widths=(32, 64), cross=32, frames=16, latent=16, vae=(32, 32)),
    "sd15": dict(
        widths=(320, 640, 1280, 1280),
        cross=768,
        frames=16,
        latent=32,
        vae=(128, 256, 512, 512),
    ),
    # the embedded default (base + shapes-motion), its own weights: 16 frames at 32×32
    "embedded": dict(embedded=True, cross=64, frames=16, latent=8),
}


def embedded_components():
    from animatediff.embedded import MODELS
    from animatediff.image_models import load_base

    return load_base(MODELS["shapes"].path)


class PeakMemory:
    """Samples this process's resident memory every few milliseconds (CPU), or CUDA's allocator peak."""

    def __init__(self, device: str):
        self.device, self.peak, self._running = device, 0, False

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._running = True
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._running = False
        self._thread.join()
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated()


# ---------------------------------------------------------------------------------------------------
# Models (identical seeded weights in every worker)


def build_unet(config: dict):
    from diffusers import UNet2DConditionModel

    if config.get("embedded"):
        return embedded_components().unet.eval()

    widths = config["widths"]
    torch.manual_seed(0)
    down = ("CrossAttnDownBlock2D",) * (len(widths) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(widths) - 1)
    return UNet2DConditionModel(
        sample_size=config["latent"],
        block_out_channels=widths,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=config["cross"],
        attention_head_dim=8,
    ).eval()


def build_motion_module(config: dict):
    from animatediff import MotionModule, MotionModuleConfig

    if config.get("embedded"):
        from animatediff.embedded import MODELS
        from animatediff.formats import load_motion_module

        return load_motion_module(MODELS["shapes-motion"].path).eval()
    torch.manual_seed(1)
    module = MotionModule(
        MotionModuleConfig(block_out_channels=config["widths"], mid_block=True, norm_over_frames=True)
    )
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, 0.02)
    return module.eval()


def build_vae(config: dict):
    from diffusers import AutoencoderKL

    if config.get("embedded"):
        return embedded_components().vae.eval()
    torch.manual_seed(2)
    levels = len(config["vae"])
    return AutoencoderKL(
        block_out_channels=config["vae"],
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=2,
        latent_channels=4,
    ).eval()


def inputs(config: dict):
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 4, config["frames"], config["latent"], config["latent"], generator=generator)
    text = torch.randn(2, 77, config["cross"], generator=generator)
    return latents, torch.tensor(501), text


# ---------------------------------------------------------------------------------------------------
# Workers: one measurement each, printed as JSON


def _dtype(options) -> torch.dtype:
    return getattr(torch, options.get("dtype", "float32"))


def ours_step(config, device, options):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from animatediff import inflate

    unet = build_unet(config)
    video_unet = inflate(unet, build_motion_module(config)).to(device, _dtype(options))
    if options.get("channels_last"):
        unet.to(memory_format=torch.channels_last)
    if not options.get("shared_text", True):  # text keys and values once per frame, as diffusers computes them
        unet.set_attn_processor(AttnProcessor2_0())
    if options.get("compile"):
        unet.compile()  # the motion modules run inside the UNet's blocks, so they are compiled too
    latents, t, text = inputs(config)
    latents, t, text = latents.to(device, _dtype(options)), t.to(device), text.to(device, _dtype(options))
    if options.get("split"):  # guidance halves one after the other, as AnimateDiffPipeline(split_guidance=True)
        return lambda: torch.cat([video_unet(latents[:1], t, text[:1]), video_unet(latents[1:], t, text[1:])])
    return lambda: video_unet(latents, t, text)


def diffusers_step(config, device, options):
    from diffusers import UNetMotionModel

    from animatediff.formats import to_motion_adapter

    adapter = to_motion_adapter(build_motion_module(config))
    model = UNetMotionModel.from_unet2d(build_unet(config), adapter).eval().to(device, _dtype(options))
    latents, t, text = inputs(config)
    latents, t, text = latents.to(device, _dtype(options)), t.to(device), text.to(device, _dtype(options))
    text = text.repeat_interleave(config["frames"], dim=0)  # as diffusers' AnimateDiffPipeline passes it
    return lambda: model(latents, t, encoder_hidden_states=text).sample


def ours_decode(config, device, options):
    from animatediff.pipeline import AnimateDiffPipeline
    from animatediff.sampling.clip import DECODE_CHUNK

    vae = build_vae(config).to(device, _dtype(options))
    if options.get("channels_last"):
        vae.to(memory_format=torch.channels_last)
    pipeline = AnimateDiffPipeline(None, vae, None, None)
    latents = inputs(config)[0][:1].to(device, _dtype(options))
    return lambda: pipeline.decode(latents, chunk_size=options.get("chunk", DECODE_CHUNK))


def diffusers_decode(config, device, options):
    from diffusers import AnimateDiffPipeline

    vae = build_vae(config).to(device, _dtype(options))
    pipeline = AnimateDiffPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=None, motion_adapter=None, scheduler=None
    )
    latents = inputs(config)[0][:1].to(device, _dtype(options))
    # (1, 3, f, H, W) → (f, 3, H, W), as ours returns it
    return lambda: (pipeline.decode_latents(latents, decode_chunk_size=16)[0].transpose(0, 1) / 2 + 0.5).clamp(0, 1)


WORKERS = {
    "ours_step": ours_step,
    "diffusers_step": diffusers_step,
    "ours_decode": ours_decode,
    "diffusers_decode": diffusers_decode,
}


def run_worker(name: str, config_name: str, device: str, options: dict, output: str | None) -> dict:
    torch.set_num_threads(options.get("threads", torch.get_num_threads()))
    config = CONFIGS[config_name]
    with torch.no_grad():
        call = WORKERS[name](config, device, options)
        call()  # warm-up (allocator, oneDNN primitive caches, compilation)
        timings = []
        with PeakMemory(device) as memory:
            for _ in range(options.get("repeats", 1)):
                started = time.perf_counter()
                result = call()
                if device == "cuda":
                    torch.cuda.synchronize()
                timings.append(time.perf_counter() - started)
            seconds = min(timings)
    if output:
        np.save(output, result.float().cpu().numpy())
    return {"seconds": seconds, "peak_bytes": memory.peak}


def count_flops(config_name: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        call = ours_step(CONFIGS[config_name], "cpu", {})
        with FlopCounterMode(display=False) as counter:
            call()
    return {"flops": counter.get_total_flops()}


def matmul_throughput(size: int = 2048, repeats: int = 10) -> dict:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return {"flops_per_second": 2 * size**3 * repeats / (time.perf_counter() - started)}


# ---------------------------------------------------------------------------------------------------
# The driver


def measure(*args: str) -> dict:
    command = [sys.executable, __file__, "--worker", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_pair(first: tuple, second: tuple, rounds: int) -> tuple[dict, dict]:
    """Alternate two measurements `rounds` times and keep each one's fastest run: a noisy neighbour
    slowing one run down then does not decide the ratio."""
    results = [[], []]
    for _ in range(rounds):
        for index, arguments in enumerate((first, second)):
            results[index].append(measure(*arguments))
    best = [min(runs, key=lambda r: r["seconds"]) for runs in results]
    for runs, chosen in zip(results, best, strict=True):
        chosen["peak_bytes"] = max(r["peak_bytes"] for r in runs)
        chosen["runs"] = [round(r["seconds"], 3) for r in runs]
    return best[0], best[1]


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?"
    )
    return (
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )


def repeats(config: str) -> str:
    return json.dumps({"repeats": 3 if config == "tiny" else 1})


def compare(config: str, device: str, rows: list, folder: Path, rounds: int) -> None:
    ours_out, theirs_out = folder / f"{config}-ours.npy", folder / f"{config}-diffusers.npy"
    for what, ours_worker, theirs_worker in (
        ("denoising step (UNet, CFG batch)", "ours_step", "diffusers_step"),
        (f"VAE decode, {CONFIGS[config]['frames']} frames", "ours_decode", "diffusers_decode"),
    ):
        ours, theirs = measure_pair(
            (ours_worker, config, device, repeats(config), str(ours_out)),
            (theirs_worker, config, device, repeats(config), str(theirs_out)),
            rounds,
        )
        difference = float(np.abs(np.load(ours_out) - np.load(theirs_out)).max())
        rows.append((config, what, ours, theirs, difference))


VARIANTS = [
    # (what, worker, baseline options, variant options)
    ("[uncond; cond] halves one after the other (split guidance)", "ours_step", {}, {"split": True}),
    ("torch.compile of the UNet with its motion modules", "ours_step", {}, {"compile": True}),
    ("text keys and values once per clip instead of once per frame", "ours_step", {"shared_text": False}, {}),
    ("VAE decode 4 frames at a time (default) instead of 1 (official)", "ours_decode", {"chunk": 1}, {}),
    ("VAE decode 8 frames at a time instead of 4 (default)", "ours_decode", {}, {"chunk": 8}),
]


def optimizations(config: str, device: str, folder: Path, skip: set[str]) -> list[str]:
    lines = []
    for what, worker, before_options, after_options in VARIANTS:
        if any(key in skip for key in after_options):
            continue
        count = {"repeats": 3 if config == "tiny" else 1}
        before, after = measure_pair(
            (worker, config, device, json.dumps({**before_options, **count}), str(folder / "before.npy")),
            (worker, config, device, json.dumps({**after_options, **count}), str(folder / "after.npy")),
            rounds=1,
        )
        difference = float(np.abs(np.load(folder / "before.npy") - np.load(folder / "after.npy")).max())
        lines.append(
            f"| {config} | {what} | {before['seconds']:.3f} | {after['seconds']:.3f} | "
            f"{after['seconds'] / before['seconds']:.2f} | {before['peak_bytes'] / 1e9:.2f} | "
            f"{after['peak_bytes'] / 1e9:.2f} | {after['peak_bytes'] / before['peak_bytes']:.2f} | {difference:.1e} |"
        )
    return lines


def report(rows: list, extra: list[str], device: str) -> str:
    header = (
        "| config | what | ours s | diffusers s | time ratio | ours peak GB | diffusers peak GB "
        "| memory ratio | max abs diff |"
    )
    lines = [f"Machine: {machine()}; device {device}.", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for config, what, ours, theirs, difference in rows:
        lines.append(
            f"| {config} | {what} | {ours['seconds']:.3f} | {theirs['seconds']:.3f} | "
            f"{ours['seconds'] / theirs['seconds']:.2f} | {ours['peak_bytes'] / 1e9:.2f} | "
            f"{theirs['peak_bytes'] / 1e9:.2f} | {ours['peak_bytes'] / theirs['peak_bytes']:.2f} | {difference:.1e} |"
        )
    runs = [
        f"- {config}, {what}: ours {ours['runs']} s, diffusers {theirs['runs']} s (alternating runs; "
        "the table keeps each one's fastest)"
        for config, what, ours, theirs, _ in rows
    ]
    return "\n".join(lines + [""] + runs + [""] + extra) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--skip", nargs="*", default=[], help="variants to leave out, e.g. compile")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each comparison")
    args = parser.parse_args()
    if args.worker:
        name, *rest = args.worker
        if name == "flops":
            print(json.dumps(count_flops(rest[0])))
        elif name == "matmul":
            print(json.dumps(matmul_throughput()))
        else:
            config, device, options, output = rest
            print(json.dumps(run_worker(name, config, device, json.loads(options), output or None)))
        return
    configs = list(CONFIGS) if args.config == "all" else [args.config]
    rows, extra = [], []
    with tempfile.TemporaryDirectory() as folder:
        for config in configs:
            compare(config, args.device, rows, Path(folder), args.rounds)
            print(report(rows, [], args.device), flush=True)
        extra += [
            "Optimizations, each against the same implementation without it:",
            "",
            "| config | change | before s | after s | time ratio | before peak GB | after peak GB "
            "| memory ratio | max abs diff |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for config in configs:
            extra += optimizations(config, args.device, Path(folder), set(args.skip))
        extra.append("")
        if args.device == "cpu":
            limit = measure("matmul")["flops_per_second"]
            for config in configs:
                flops = measure("flops", config)["flops"]
                step = next(ours for c, what, ours, *_ in rows if c == config and what.startswith("denoising"))
                best = flops / limit
                extra.append(
                    f"- {config}: one step is {flops / 1e12:.2f} TFLOP; fp32 matmul runs at "
                    f"{limit / 1e9:.0f} GFLOP/s here, so the floor is {best:.2f} s; the step takes "
                    f"{step['seconds']:.2f} s = {step['seconds'] / best:.2f}× the limit."
                )
            for threads in (1, 2):
                timing = measure("ours_step", configs[-1], "cpu", json.dumps({"threads": threads}), "")
                extra.append(f"- {configs[-1]} step with {threads} thread(s): {timing['seconds']:.2f} s")
    text = report(rows, extra, args.device)
    print(text)
    args.output.write_text("# Benchmark results\n\nMade by `python bench/run.py`.\n\n" + text)


if __name__ == "__main__":
    main()
