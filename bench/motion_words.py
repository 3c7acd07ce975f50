"""How much the embedded models depend on the prompt's motion words (docs/shapes-model.md).

    python bench/motion_words.py [--base FOLDER] [--motion-module FILE] [--clips 32] [--trail]

1. Feature sensitivity: the relative change of the base UNet's block outputs when one word of the
   prompt changes (motion, colour or shape words; three word pairs × three noise draws each), at a
   high and a middle noise level. A motion module has no text input: it can follow "moving left"
   only through what these features carry.
2. Loss with swapped motion words: the motion module's ε loss on freshly rendered training-style
   clips with their true captions against captions whose motion word is swapped for its opposite,
   by noise level (same latents, noise and timesteps on both sides).
3. Text encoder: the relative change of its output (mean over the prompt's first 12 token positions)
   for pairs of motion words.
4. Trail side (with `--trail`, for a base trained on `shapes render --trail` images): the base alone
   draws single images for the four directions; the cosine between the prompted direction and the
   side of the object its faint trail lies on (1: behind it, as rendered; 0: unrelated). The clips of
   part 2 then have trails too.
5. Temporal order by motion: for each object motion, the module's ε loss on rendered training-style clips
   with the true caption, with the motion word swapped, and with the frames reversed under the true
   caption. A module that models the motion itself loses more on reversed frames; one that only draws
   what a single frame shows (a trail, a shadow) loses nothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler
from einops import rearrange

from animatediff.embedded import resolve
from animatediff.formats import load_motion_module
from animatediff.image_models import load_base
from animatediff.inflation import AnimateDiffUNet
from animatediff.lora import apply_domain_adapter
from animatediff.pipeline import AnimateDiffPipeline, encode_text
from animatediff.training.config import DEFAULT_NOISE_SCHEDULER
from animatediff.training.data import jsonl_items, read_clip

TEMPLATE = "a {colour} {shape} {motion} on a {background} background"
FILL = dict(colour="red", shape="square", motion="moving left", background="gray")
SWAPS = {
    "motion": ("motion", [("moving left", "moving right"), ("moving up", "moving down"), ("growing", "shrinking")]),
    "colour": ("colour", [("red", "blue"), ("green", "yellow"), ("purple", "orange")]),
    "shape": ("shape", [("square", "circle"), ("triangle", "star"), ("square", "star")]),
}
OPPOSITE = {
    "moving left": "moving right",
    "moving up": "moving down",
    "growing": "shrinking",
    "spinning clockwise": "spinning anticlockwise",
}
OPPOSITE.update({value: key for key, value in OPPOSITE.items()})
NOISE_BANDS = ((900, 1000), (700, 900), (400, 700), (100, 400))


@torch.no_grad()
def feature_sensitivity(components, timesteps=(800, 400), draws: int = 3) -> dict[tuple[str, int], float]:
    unet = components.unet.eval()
    outputs: dict[int, torch.Tensor] = {}
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    hooks = [
        block.register_forward_hook(lambda m, a, o, i=i: outputs.__setitem__(i, o[0] if isinstance(o, tuple) else o))
        for i, block in enumerate(blocks)
    ]
    generator = torch.Generator().manual_seed(0)
    size = unet.config.sample_size
    results = {}
    for timestep in timesteps:
        for kind, (slot, pairs) in SWAPS.items():
            changes = []
            for first, second in pairs:
                prompts = [TEMPLATE.format(**{**FILL, slot: word}) for word in (first, second)]
                text = encode_text(components.tokenizer, components.text_encoder, prompts)
                for _ in range(draws):
                    noise = torch.randn(1, unet.config.in_channels, size, size, generator=generator)
                    latents = noise.expand(2, -1, -1, -1)  # the same draw for both prompts
                    unet(latents, torch.full((2,), timestep), encoder_hidden_states=text)
                    features = torch.cat([outputs[i].flatten(1) for i in sorted(outputs)], dim=1)
                    changes.append(float((features[0] - features[1]).norm() / features[0].norm()))
            results[(kind, timestep)] = float(np.mean(changes))
    for hook in hooks:
        hook.remove()
    return results


@torch.no_grad()
def text_encoder_change(components) -> dict[tuple[str, str], float]:
    pairs = [
        ("moving left", "moving right"),
        ("moving up", "moving down"),
        ("growing", "shrinking"),
        ("spinning clockwise", "spinning anticlockwise"),
        ("staying still", "moving left"),
    ]
    results = {}
    for first, second in pairs:
        prompts = [TEMPLATE.format(**{**FILL, "motion": word}) for word in (first, second)]
        a, b = encode_text(components.tokenizer, components.text_encoder, prompts)[:, :12]
        results[(first, second)] = float(((a - b).norm(dim=-1) / a.norm(dim=-1)).mean())
    return results


TRAIL_CASES = (
    ("red", "circle", "white"),
    ("blue", "square", "gray"),
    ("yellow", "triangle", "black"),
    ("green", "star", "brown"),
)
DIRECTIONS = {"moving right": (1, 0), "moving left": (-1, 0), "moving up": (0, -1), "moving down": (0, 1)}


def trail_side(base: Path, seeds: int = 4) -> dict[str, float]:
    from scipy import ndimage

    from animatediff.loading import ModelSpec, build_pipeline
    from animatediff.shapes.metrics import colour_mask
    from animatediff.shapes.world import BACKGROUNDS, COLOURS

    pipeline = build_pipeline(ModelSpec(base=base, motion_module=None))
    results = {}
    for motion, direction in DIRECTIONS.items():
        cosines = []
        for seed in range(seeds):
            for colour, shape, background in TRAIL_CASES:
                prompt = f"a {colour} {shape} {motion} on a {background} background"
                image = pipeline(prompt, num_frames=1, steps=20, seed=seed, progress=False)[0]
                rgb, back = np.array(COLOURS[colour], np.float32), np.array(BACKGROUNDS[background], np.float32)
                share = ((back - image.astype(np.float32)) @ (back - rgb)) / ((back - rgb) @ (back - rgb))
                body = colour_mask(image, colour)
                faint = (share > 0.1) & (share < 0.65) & ~ndimage.binary_dilation(body, iterations=1)
                if body.sum() < 4 or faint.sum() < 2:
                    cosines.append(0.0)  # no object or no trail: no side
                    continue
                offset = np.subtract(ndimage.center_of_mass(faint), ndimage.center_of_mass(body))[::-1]  # x, y
                cosines.append(float(-(offset @ np.array(direction)) / (np.linalg.norm(offset) + 1e-6)))
        results[motion] = float(np.mean(cosines))
    return results


def _video_unet(components, motion_module: Path, adapter: Path | None) -> AnimateDiffUNet:
    """The base's UNet (with the domain adapter merged in place, if given) and the motion module."""
    if adapter is not None:
        apply_domain_adapter(components.unet, adapter, 1.0)
    return AnimateDiffUNet(components.unet, load_motion_module(motion_module)).eval()


def _latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """`b f c h w` pixels in [-1, 1] → scaled `b c f h w` latents."""
    latents = vae.encode(rearrange(pixels, "b f c h w -> (b f) c h w")).latent_dist.mean
    return rearrange(latents, "(b f) c h w -> b c f h w", f=pixels.shape[1]) * vae.config.scaling_factor


def _band_loss(video_unet, components, latents: torch.Tensor, texts: list[str], low: int, high: int) -> float:
    """Mean ε loss over the clips at timesteps drawn in [low, high), the same draws for every call."""
    scheduler = DDPMScheduler(**DEFAULT_NOISE_SCHEDULER)
    draw = torch.Generator().manual_seed(5)
    total = 0.0
    for start in range(0, len(latents), 8):
        chunk = latents[start : start + 8]
        noise = torch.randn(chunk.shape, generator=draw)
        timesteps = torch.randint(low, high, (len(chunk),), generator=draw)
        text = encode_text(components.tokenizer, components.text_encoder, texts[start : start + 8])
        prediction = video_unet(scheduler.add_noise(chunk, noise, timesteps), timesteps, text)
        total += float((prediction - noise).pow(2).mean()) * len(chunk)
    return total / len(latents)


@torch.no_grad()
def swapped_motion_loss(
    components, motion_module: Path, adapter: Path | None, clips: int, trail: bool = False
) -> list[tuple]:
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    video_unet = _video_unet(components, motion_module, adapter)
    size = AnimateDiffPipeline(video_unet, components.vae, components.text_encoder, components.tokenizer).default_size
    with tempfile.TemporaryDirectory() as folder:
        spec = DatasetSpec(kind="clips", count=clips * 2, seed=11, size=size, frames=16, trail=trail)
        render_dataset(Path(folder) / "clips", spec)
        items = [item for item in jsonl_items(Path(folder) / "clips") if any(m in item.caption for m in OPPOSITE)]
        items = items[:clips]
        generator = torch.Generator().manual_seed(0)
        pixels = torch.stack([read_clip(item.path, 16, 1, size, generator) for item in items])
    captions = [item.caption for item in items]
    swapped = []
    for caption in captions:
        motion = max((m for m in OPPOSITE if m in caption), key=len)
        swapped.append(caption.replace(motion, OPPOSITE[motion]))
    latents = _latents(components.vae, pixels)
    return [
        (low, high, *(_band_loss(video_unet, components, latents, texts, low, high) for texts in (captions, swapped)))
        for low, high in NOISE_BANDS
    ]


@torch.no_grad()
def loss_by_motion(
    components, motion_module: Path, adapter: Path | None, clips: int, bands=NOISE_BANDS[1:3]
) -> dict[str, list[tuple]]:
    """{motion: [(low, high, true, swapped, reversed)]}: ε losses on `clips` clips of each motion (with trails
    and the video domain's defects, as the motion module trained on)."""
    from animatediff.shapes.render import render_clip
    from animatediff.shapes.world import caption, sample_object_clip

    video_unet = _video_unet(components, motion_module, adapter)
    size = AnimateDiffPipeline(video_unet, components.vae, components.text_encoder, components.tokenizer).default_size
    results = {}
    for motion in OPPOSITE:
        rng = np.random.default_rng(123)
        specs = [sample_object_clip(rng, 16, motion=motion) for _ in range(clips)]
        for spec in specs:
            spec.trail = spec.watermark = True
        pixels = torch.tensor(np.stack([render_clip(spec, 16, size) for spec in specs])).float() / 127.5 - 1
        latents = _latents(components.vae, rearrange(pixels, "b f h w c -> b f c h w"))
        captions = [caption(spec) for spec in specs]
        swapped = [text.replace(motion, OPPOSITE[motion]) for text in captions]
        cases = ((captions, latents), (swapped, latents), (captions, latents.flip(2)))  # true, swapped, reversed
        results[motion] = [
            (low, high, *(_band_loss(video_unet, components, video, texts, low, high) for texts, video in cases))
            for low, high in bands
        ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="shapes")
    parser.add_argument("--motion-module", default="shapes-motion")
    parser.add_argument("--domain-adapter", default="shapes-adapter", help="'none' for no adapter")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--trail", action="store_true", help="a base trained on trails: measure its trail side")
    args = parser.parse_args()
    base = resolve(args.base, "--base")
    print(f"feature sensitivity of {base} (relative change of the UNet block outputs when one word changes)")
    clean = load_base(base)  # the swapped-word loss gets its own copy: it adds the adapter in place
    sensitivity = feature_sensitivity(clean)
    for timestep in sorted({t for _, t in sensitivity}, reverse=True):
        cells = ", ".join(f"{kind} {sensitivity[(kind, timestep)]:.1%}" for kind in SWAPS)
        print(f"  t = {timestep}: {cells}")
    adapter = None if args.domain_adapter == "none" else resolve(args.domain_adapter, "--domain-adapter")
    module = resolve(args.motion_module, "--motion-module")
    print(f"motion-module ε loss, true vs swapped motion words ({args.clips} clips): {module}")
    for low, high, true, swapped in swapped_motion_loss(load_base(base), module, adapter, args.clips, args.trail):
        print(f"  t {low}-{high}: true {true:.5f}, swapped {swapped:.5f} ({swapped / true - 1:+.1%})")
    print("text encoder: relative change of its output (first 12 positions) between motion words")
    for (first, second), change in text_encoder_change(clean).items():
        print(f"  {first} ↔ {second}: {change:.3f}")
    print(f"temporal order by motion ({args.clips // 4} clips each): loss with the word swapped / the frames reversed")
    for motion, rows in loss_by_motion(load_base(base), module, adapter, args.clips // 4).items():
        cells = "; ".join(
            f"t {low}-{high}: {swapped / true - 1:+.0%} / {reversed_ / true - 1:+.0%}"
            for low, high, true, swapped, reversed_ in rows
        )
        print(f"  {motion}: {cells}")
    if args.trail:
        print("trail side: cosine of the drawn trail's side with 'behind' (1 = as rendered), base alone")
        print("  " + ", ".join(f"{motion} {value:+.2f}" for motion, value in trail_side(base).items()))


if __name__ == "__main__":
    main()
