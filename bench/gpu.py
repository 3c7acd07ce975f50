"""Whole-pipeline comparison for a GPU: this pipeline and diffusers' AnimateDiffPipeline, same weights.

    python bench/gpu.py                                    # fp16, 16 frames at 512², 25 steps, on CUDA
    python bench/gpu.py --compile reduce-overhead --channels-last   # ours with the GPU speed options
    python bench/gpu.py --trace --steps 5                  # where the fp16 frames part: step by step
    python bench/gpu.py --device cpu --dtype float32 --config tiny --size 64 --steps 2   # a smoke run

Prints seconds per denoising step, peak memory and how far the two pipelines' frames are apart (largest and
mean difference, the share of values more than 0.1 apart, and each side's share saturated at 0 or 1, where
a small difference can flip a value from 0 to 1), and appends a section to bench/RESULTS.md.

`--trace` runs both pipelines in float16 and in float32 on the device and records, for every step, the noise
prediction each scheduler step is given and the latents it returns (and the text states): the table says at
which step, and in which dtype, ours and diffusers' part, and how far each is from its own float32 run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from run import CONFIGS, PeakMemory, build_motion_module, build_unet, build_vae, embedded_components, machine
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TOKENIZER = Path(__file__).parents[1] / "tests" / "data" / "official-v2" / "base_model" / "tokenizer"


def components(config: dict):
    from animatediff import Components

    if config.get("embedded"):
        return embedded_components()
    torch.manual_seed(4)
    hidden = config["cross"]
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=514,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_attention_heads=max(1, hidden // 64),
            num_hidden_layers=12 if hidden >= 768 else 2,
            max_position_embeddings=77,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    ).eval()
    return Components(build_unet(config), build_vae(config), text_encoder, CLIPTokenizer.from_pretrained(TOKENIZER))


def record(pipeline, trace: dict) -> None:
    """Keep the text states, and each scheduler step's noise prediction and result, in `trace`."""
    step = pipeline.scheduler.step

    def recording(model_output, timestep, sample, *args, **kwargs):
        result = step(model_output, timestep, sample, *args, **kwargs)
        latents = result[0] if isinstance(result, tuple) else result.prev_sample
        trace.setdefault("eps", []).append(model_output.float().cpu())
        trace.setdefault("latents", []).append(latents.float().cpu())
        return result

    pipeline.scheduler.step = recording
    pipeline.text_encoder.register_forward_hook(
        lambda _m, _i, output: trace.setdefault("text", []).append(output[0].float().cpu())
    )


def run(which: str, config: dict, args, trace: dict | None = None) -> tuple[torch.Tensor, float, int]:
    from animatediff import AnimateDiffPipeline, official_scheduler

    parts = components(config)
    dtype = getattr(torch, args.dtype)
    settings = dict(num_frames=config["frames"], height=args.size, width=args.size, guidance_scale=7.5)
    if which == "ours":
        pipeline = AnimateDiffPipeline.from_components(
            parts, build_motion_module(config), split_guidance=args.split_guidance
        ).to(args.device, dtype)
        if args.channels_last:
            pipeline.unet.unet.to(memory_format=torch.channels_last)
            pipeline.vae.to(memory_format=torch.channels_last)
        if args.compile:
            pipeline.compile(None if args.compile == "default" else args.compile)
        call = lambda steps: pipeline.generate("a corgi", steps=steps, seed=0, progress=False, **settings)  # noqa: E731
    else:
        from diffusers import AnimateDiffPipeline as Reference

        from animatediff.formats import to_motion_adapter

        pipeline = Reference(
            vae=parts.vae,
            text_encoder=parts.text_encoder,
            tokenizer=parts.tokenizer,
            unet=parts.unet,
            motion_adapter=to_motion_adapter(build_motion_module(config)),
            scheduler=official_scheduler(),
        ).to(args.device, dtype)
        pipeline.set_progress_bar_config(disable=True)

        def call(steps):
            generator = torch.Generator("cpu").manual_seed(0)
            output = pipeline("a corgi", num_inference_steps=steps, generator=generator, output_type="pt", **settings)
            return output.frames[0]

    if trace is not None:
        record(pipeline, trace)
    call(1 if trace is None else args.steps)  # warm-up (or the traced run)
    if trace is not None:
        return None, 0.0, 0
    with PeakMemory(args.device) as memory:
        started = time.perf_counter()
        frames = call(args.steps)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return frames.float().cpu(), seconds / args.steps, memory.peak


def _gap(a: list[torch.Tensor], b: list[torch.Tensor], index: int) -> str:
    if index >= min(len(a), len(b)):
        return "–"
    x, y = a[index], b[index]
    return f"{float((x - y).abs().max()):.1e} (rel {float((x - y).norm() / y.norm().clamp_min(1e-12)):.1e})"


def step_by_step(config: dict, args) -> str:
    """Both pipelines in float16 and float32: per step, how far their noise predictions and latents are apart."""
    traces = {}
    for dtype in ("float16", "float32"):
        for which in ("ours", "diffusers"):
            traces[which, dtype] = {}
            run(which, config, argparse.Namespace(**{**vars(args), "dtype": dtype}), traces[which, dtype])
    pairs = {
        "ours − diffusers, fp16": (("ours", "float16"), ("diffusers", "float16")),
        "ours − diffusers, fp32": (("ours", "float32"), ("diffusers", "float32")),
        "ours fp16 − fp32": (("ours", "float16"), ("ours", "float32")),
        "diffusers fp16 − fp32": (("diffusers", "float16"), ("diffusers", "float32")),
    }
    lines = [
        f"Step by step on {args.device}: max abs difference (relative L2) of the noise prediction each "
        "scheduler step is given and of the latents it returns.",
        "",
        "| step | what | " + " | ".join(pairs) + " |",
        "|---|---|" + "---|" * len(pairs),
    ]
    for trace in traces.values():  # one call with [uncond; cond] or one per prompt: rows in the order of the batch
        rows = torch.cat(trace["text"])
        trace["text"] = [rows if len(trace["text"]) == 1 else rows.flip(0)]  # diffusers encodes cond first
    lines.append(
        "| – | text states | "
        + " | ".join(_gap(traces[a]["text"], traces[b]["text"], 0) for a, b in pairs.values())
        + " |"
    )
    for index in range(args.steps):
        for what in ("eps", "latents"):
            gaps = [_gap(traces[a][what], traces[b][what], index) for a, b in pairs.values()]
            lines.append(f"| {index + 1} | {what} | " + " | ".join(gaps) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=list(CONFIGS), default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        help="torch.compile ours' UNet (a mode: default, reduce-overhead for CUDA graphs, max-autotune)",
    )
    parser.add_argument("--channels-last", action="store_true", help="ours' UNet and VAE in channels-last")
    parser.add_argument("--split-guidance", action="store_true", help="ours' guidance halves one after the other")
    parser.add_argument("--trace", action="store_true", help="compare step by step in float16 and float32")
    args = parser.parse_args()
    config = dict(CONFIGS[args.config])
    config["latent"] = args.size // {"sd15": 8, "embedded": 4}.get(args.config, 2)
    if args.trace:
        print(step_by_step(config, args))
        return
    ours, ours_seconds, ours_peak = run("ours", config, args)
    theirs, theirs_seconds, theirs_peak = run("diffusers", config, args)
    gap = (ours - theirs).abs()
    difference = float(gap.max())
    saturated = [float(((frames <= 0) | (frames >= 1)).float().mean()) for frames in (ours, theirs)]
    name = machine() if args.device == "cpu" else torch.cuda.get_device_name()
    options = [
        flag
        for flag, given in (
            ("--compile " + str(args.compile), args.compile),
            ("--channels-last", args.channels_last),
            ("--split-guidance", args.split_guidance),
        )
        if given
    ]
    text = (
        f"\n## Whole pipeline on {args.device} ({name})\n\n"
        f"{args.config}, {args.dtype}, {config['frames']} frames at {args.size}², {args.steps} steps, guidance 7.5; "
        f"ours with {' '.join(options) or 'no options'}.\n\n"
        "| | s per step | peak memory GB | max abs frame difference |\n|---|---|---|---|\n"
        f"| ours | {ours_seconds:.3f} | {ours_peak / 1e9:.2f} | {difference:.1e} |\n"
        f"| diffusers AnimateDiffPipeline | {theirs_seconds:.3f} | {theirs_peak / 1e9:.2f} | |\n"
        f"| ratio | {ours_seconds / theirs_seconds:.2f} | {ours_peak / theirs_peak:.2f} | |\n"
        f"\nFrame values: mean abs difference {float(gap.mean()):.1e}, {float((gap > 0.1).float().mean()):.1%} of "
        f"them more than 0.1 apart; saturated at 0 or 1: ours {saturated[0]:.1%}, diffusers {saturated[1]:.1%}.\n"
    )
    print(text)
    if args.device != "cpu":
        with open(args.output, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
