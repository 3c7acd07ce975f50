"""What a base's autoencoder keeps of the world's shapes: the ceiling it puts on `text` (docs/shapes-model.md).

    python bench/autoencoder_shapes.py [--base FOLDER] [--images 24] [--clips 3] [--trail-colour shadow]

1. Shapes one at a time: still images of each shape (random colour, background, size and place, plain
   style, no motion), their silhouette classified (`metrics.classify_shape`) as rendered and after
   the autoencoder's round trip (encode to the latent mean, decode).
2. The held-out clips as the evaluation prompts name them (`--clips` rendered clips per held-out
   combination, no watermark, trails in the object's colour or with `--trail-colour shadow` the
   shadow's): `text`, its shape part and `motion`, as rendered and after the round trip. A UNet draws
   latents, so the reconstructed row is the most the base + motion module can score.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from animatediff.embedded import resolve
from animatediff.image_models import load_base
from animatediff.shapes.metrics import prompted_track, score_video
from animatediff.shapes.recipe import FRAMES
from animatediff.shapes.render import render_clip, render_frame
from animatediff.shapes.world import (
    HELD_OUT,
    IMAGE_SIZE,
    SHAPES,
    TRAIL_COLOURS,
    caption,
    parse_prompt,
    sample_object_clip,
)


@torch.no_grad()
def round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """`f h w 3` uint8 frames through the autoencoder (latent mean, no sampling) and back."""
    pixels = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    decoded = vae.decode(vae.encode(pixels).latent_dist.mean).sample
    return ((decoded.permute(0, 2, 3, 1).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def still_shapes(vae, images: int, seed: int = 0) -> dict[str, tuple[Counter, Counter]]:
    """For each shape: what the classifier calls `images` renders of it, and their reconstructions."""
    rng = np.random.default_rng(seed)
    found = {}
    for shape in SHAPES:
        rendered, reconstructed = Counter(), Counter()
        for _ in range(images):
            spec = sample_object_clip(rng, FRAMES, shape=shape, motion="staying still")
            frame = render_frame(spec, 0, IMAGE_SIZE)[None]
            attributes = parse_prompt(caption(spec))
            rendered.update(prompted_track(frame, attributes).shapes)
            reconstructed.update(prompted_track(round_trip(vae, frame), attributes).shapes)
        found[shape] = rendered, reconstructed
    return found


def held_out_ceiling(vae, clips: int, trail_colour: str = "object", seed: int = 5) -> dict[str, dict[str, float]]:
    """Mean `text`, shape part and `motion` over rendered held-out clips, as rendered and reconstructed."""
    rng = np.random.default_rng(seed)
    scores = {"rendered": [], "reconstructed": []}
    for colour, shape, motion in HELD_OUT:
        for _ in range(clips):
            spec = sample_object_clip(rng, FRAMES, colour=colour, shape=shape, motion=motion)
            spec.trail, spec.trail_colour = True, trail_colour
            prompt = caption(spec)
            rendered = render_clip(spec, FRAMES, IMAGE_SIZE)
            for name, frames in (("rendered", rendered), ("reconstructed", round_trip(vae, rendered))):
                measured = score_video(frames, prompt, with_shape=True)
                scores[name].append((measured["text"], measured["shape"], measured["motion"]))
    means = {}
    for name, rows in scores.items():
        table = np.array(rows, dtype=float)  # motion is None (NaN) for a spinning circle
        means[name] = dict(zip(("text", "shape", "motion"), np.nanmean(table, axis=0).tolist(), strict=True))
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="shapes")
    parser.add_argument("--images", type=int, default=24, help="still images per shape")
    parser.add_argument("--clips", type=int, default=3, help="rendered clips per held-out combination")
    parser.add_argument("--trail-colour", choices=TRAIL_COLOURS, default="object")
    args = parser.parse_args()
    base = resolve(args.base, "--base")
    vae = load_base(base).vae.eval()
    print(f"silhouettes of {args.images} still images per shape, as rendered → after {base}'s autoencoder")
    for shape, (rendered, reconstructed) in still_shapes(vae, args.images).items():
        print(
            f"  {shape}: {rendered[shape]} → {reconstructed[shape]} classified {shape}; "
            f"reconstructions called {dict(reconstructed.most_common())}"
        )
    trails = f"{args.trail_colour}-coloured trails"
    print(f"held-out clips ({args.clips} per combination, {trails}): rendered → reconstructed")
    ceiling = held_out_ceiling(vae, args.clips, args.trail_colour)
    for metric in ("text", "shape", "motion"):
        print(f"  {metric}: {ceiling['rendered'][metric]:.3f} → {ceiling['reconstructed'][metric]:.3f}")


if __name__ == "__main__":
    main()
