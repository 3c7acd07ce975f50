"""Whole-pipeline comparison for a GPU: this pipeline and diffusers' AnimateDiffPipeline, same weights.

    python bench/gpu.py                                    # fp16, 16 frames at 512², 25 steps, on CUDA
    python bench/gpu.py --device cpu --dtype float32 --config tiny --size 64 --steps 2   # a smoke run

Prints seconds per denoising step, peak memory and how far the two pipelines' frames are apart (largest and
mean difference, the share of values more than 0.1 apart, and each side's share saturated at 0 or 1, where
a small difference can flip a value from 0 to 1), and appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from run import CONFIGS, PeakMemory, build_motion_module, build_unet, build_vae, machine
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TOKENIZER = Path(__file__).parents[1] / "tests" / "data" / "official-v2" / "base_model" / "tokenizer"


def components(config: dict):
    from animatediff import Components

    torch.manual_seed(4)
    hidden = config["cross"]
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=4 * hidden, num_attention_heads=max(1, hidden // 64),
        num_hidden_layers=12 if hidden >= 768 else 2, max_position_embeddings=77, bos_token_id=512,
        eos_token_id=513, pad_token_id=513,
    )).eval()  # fmt: skip
    return Components(build_unet(config), build_vae(config), text_encoder, CLIPTokenizer.from_pretrained(TOKENIZER))


def run(which: str, config: dict, args) -> tuple[torch.Tensor, float, int]:
    from animatediff import AnimateDiffPipeline, official_scheduler

    parts = components(config)
    dtype = getattr(torch, args.dtype)
    settings = dict(num_frames=config["frames"], height=args.size, width=args.size, guidance_scale=7.5)
    if which == "ours":
        pipeline = AnimateDiffPipeline.from_components(parts, build_motion_module(config)).to(args.device, dtype)
        call = lambda steps: pipeline.generate("a corgi", steps=steps, seed=0, progress=False, **settings)  # noqa: E731
    else:
        from diffusers import AnimateDiffPipeline as Reference

        from animatediff.formats import to_motion_adapter

        pipeline = Reference(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                             unet=parts.unet, motion_adapter=to_motion_adapter(build_motion_module(config)),
                             scheduler=official_scheduler()).to(args.device, dtype)  # fmt: skip
        pipeline.set_progress_bar_config(disable=True)

        def call(steps):
            generator = torch.Generator("cpu").manual_seed(0)
            output = pipeline("a corgi", num_inference_steps=steps, generator=generator, output_type="pt", **settings)
            return output.frames[0]

    call(1)  # warm-up
    with PeakMemory(args.device) as memory:
        started = time.perf_counter()
        frames = call(args.steps)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return frames.float().cpu(), seconds / args.steps, memory.peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", choices=list(CONFIGS), default="sd15")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = parser.parse_args()
    config = dict(CONFIGS[args.config])
    config["latent"] = args.size // 8 if args.config == "sd15" else args.size // 2
    ours, ours_seconds, ours_peak = run("ours", config, args)
    theirs, theirs_seconds, theirs_peak = run("diffusers", config, args)
    gap = (ours - theirs).abs()
    difference = float(gap.max())
    saturated = [float(((frames <= 0) | (frames >= 1)).float().mean()) for frames in (ours, theirs)]
    name = machine() if args.device == "cpu" else torch.cuda.get_device_name()
    text = (
        f"\n## Whole pipeline on {args.device} ({name})\n\n"
        f"{args.config}, {args.dtype}, {config['frames']} frames at {args.size}², {args.steps} steps, guidance 7.5.\n\n"
        "| | s per step | peak memory GB | max abs frame difference |\n|---|---|---|---|\n"
        f"| ours | {ours_seconds:.3f} | {ours_peak / 1e9:.2f} | {difference:.1e} |\n"
        f"| diffusers AnimateDiffPipeline | {theirs_seconds:.3f} | {theirs_peak / 1e9:.2f} | |\n"
        f"| ratio | {ours_seconds / theirs_seconds:.2f} | {ours_peak / theirs_peak:.2f} | |\n"
        f"\nFrame values: mean abs difference {float(gap.mean()):.1e}, {float((gap > 0.1).float().mean()):.1%} of "
        f"them more than 0.1 apart; saturated at 0 or 1: ours {saturated[0]:.1%}, diffusers {saturated[1]:.1%}.\n"
    )  # fmt: skip
    print(text)
    if args.device != "cpu":
        with open(args.output, "a") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
