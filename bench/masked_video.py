"""Masked video to video and extending a clip on the embedded model: what is kept, what is redrawn, how the join moves.

    python bench/masked_video.py                 # the first 3 held-out prompts, seeds 1-3, 25 steps, 16 frames
    python bench/masked_video.py --prompts 1     # the first one only

Masked video to video (strength 0.8): the input is the shapes world's own clip of a held-out prompt (rendered at
the embedded model's 32², the prompt's seed); the mask, white, is its object's silhouette in each frame dilated by
one latent cell (4 px); the prompt names another colour (the next of the world's colours). Outside the mask,
on the pixels at least one latent cell from it, the mean absolute difference to the input in 0-255 levels, beside
the VAE's round trip of the same clip on the same pixels (encoded with the posterior sample the clip itself draws,
decoded: what an all-black mask gives) and beside plain video to video at the same strength. Inside: the `text`
metric of the new prompt (its colour found, its shape, the background), beside plain video to video and the
input itself.

Extending a clip: the model's own 16-frame clip of the prompt (the seed) extended by 16 frames with an overlap of
4 (the same prompt and seed): 28 frames. The frame-to-frame change (mean absolute difference of consecutive
frames, 0-255 levels) across the join (the input's last frame to the first new one) over its mean everywhere
else in the joined clip; beside it the same ratio for a naive join (the clip, then frames 4-15 of the clip of
the next seed). Rows: mean over every clip ± the spread (standard deviation) of the per-seed means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from animatediff.control import Conditions, Extension, InitVideo
from animatediff.control.init_latents import encode_frames
from animatediff.control.inpaint import latent_mask
from animatediff.embedded import MODELS
from animatediff.loading import build_pipeline
from animatediff.pipeline import to_uint8
from animatediff.planner import with_family
from animatediff.settings import ModelSpec
from animatediff.shapes.metrics import colour_mask, text_score
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import COLOURS, IMAGE_SIZE, parse_prompt, prompt_clip

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, for lab/
from lab.report import held_out_prompts  # noqa: E402

SEEDS = (1, 2, 3)
FRAMES, STRENGTH, OVERLAP = 16, 0.8, 4


def as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def recoloured(prompt: str) -> str:
    """The prompt with its object in the next of the world's colours."""
    colour = parse_prompt(prompt).colour
    names = list(COLOURS)
    new = names[(names.index(colour) + 1) % len(names)]
    article = "an" if new[0] in "aeiou" else "a"
    return prompt.replace(f"{'an' if colour[0] in 'aeiou' else 'a'} {colour}", f"{article} {new}", 1)


def object_mask(frames: np.ndarray, colour: str, factor: int) -> np.ndarray:
    """The object's silhouette in each frame, dilated by one latent cell: F×H×W bool, True where redrawn."""
    return np.stack([ndimage.binary_dilation(colour_mask(frame, colour), iterations=factor) for frame in frames])


def far_from(mask: np.ndarray, factor: int) -> np.ndarray:
    """The kept pixels at least one latent cell from the latent mask (F×H×W bool)."""
    cells = latent_mask(torch.from_numpy(mask[:, None]).float(), factor)[0, 0].numpy() > 0
    near = np.stack([ndimage.binary_dilation(frame) for frame in cells])
    return ~near.repeat(factor, axis=1).repeat(factor, axis=2)


def error(frames: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(frames.astype(float) - reference.astype(float))[where].mean())


def masked_case(pipeline, prompt: str, seed: int, steps: int) -> dict[str, float]:
    """One masked clip's numbers: errors outside (masked, round trip, plain), `text` inside (masked, plain, input)."""
    factor = pipeline.vae_scale_factor
    frames = render_clip(prompt_clip(prompt, seed, FRAMES), FRAMES, IMAGE_SIZE)
    mask = object_mask(frames, parse_prompt(prompt).colour, factor)
    new = recoloured(prompt)
    run = dict(num_frames=FRAMES, steps=steps, seed=seed, progress=False)
    masked = pipeline(
        new,
        conditions=Conditions(init=InitVideo(as_tensor(frames), STRENGTH, torch.from_numpy(mask[:, None]).float())),
        **run,
    )
    plain = pipeline(new, conditions=Conditions(init=InitVideo(as_tensor(frames), STRENGTH)), **run)
    latents = encode_frames(pipeline.vae, as_tensor(frames), torch.Generator("cpu").manual_seed(seed))
    round_trip = to_uint8(pipeline.decode(latents.permute(1, 0, 2, 3)[None]))
    kept = far_from(mask, factor)
    attributes = parse_prompt(new)
    return {
        "outside masked": error(masked, frames, kept),
        "outside round trip": error(round_trip, frames, kept),
        "outside plain": error(plain, frames, kept),
        "text masked": text_score(masked, attributes),
        "text plain": text_score(plain, attributes),
        "text input": text_score(frames, attributes),
    }


def changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each pair of consecutive frames (0-255 levels)."""
    return np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))


def join_ratio(frames: np.ndarray, join: int) -> float:
    """The change from frame `join` - 1 to frame `join` over the mean change everywhere else."""
    change = changes(frames)
    return float(change[join - 1] / np.delete(change, join - 1).mean())


def extension_cases(pipeline, prompt: str, steps: int) -> tuple[list[float], list[float]]:
    """Per seed: the join ratio of the extended clip and of a naive join with the next seed's clip."""
    run = dict(num_frames=FRAMES, steps=steps, progress=False)
    clips = {seed: pipeline(prompt, seed=seed, **run) for seed in SEEDS}
    extended, naive = [], []
    for seed in SEEDS:
        extension = Extension(as_tensor(clips[seed]), OVERLAP)
        joined = pipeline(prompt, seed=seed, conditions=Conditions(extension=extension), **run)
        assert len(joined) == 2 * FRAMES - OVERLAP and np.array_equal(joined[:FRAMES], clips[seed])
        extended.append(join_ratio(joined, FRAMES))
        other = clips[SEEDS[(SEEDS.index(seed) + 1) % len(SEEDS)]]
        naive.append(join_ratio(np.concatenate([clips[seed], other[OVERLAP:]]), FRAMES))
    return extended, naive


def cell(values: np.ndarray) -> str:
    """mean over every clip ± the spread of the per-seed means (values: seeds × prompts)."""
    return f"{values.mean():.2f} ± {values.mean(axis=1).std():.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=3, help="the first N held-out prompts")
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    prompts = held_out_prompts()[: args.prompts]
    print(f"{len(prompts)} prompts × seeds {SEEDS}, {args.steps} steps, {FRAMES} frames", flush=True)
    pipeline = build_pipeline(with_family(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)))
    cases = [[masked_case(pipeline, prompt, seed, args.steps) for prompt in prompts] for seed in SEEDS]
    table = {key: np.array([[case[key] for case in row] for row in cases]) for key in cases[0][0]}
    print("| masked video to video | masked | VAE round trip | plain video to video | input |\n|---|---|---|---|---|")
    print(
        f"| outside the mask: mean abs. difference to the input (0-255) | {cell(table['outside masked'])} | "
        f"{cell(table['outside round trip'])} | {cell(table['outside plain'])} | 0 |"
    )
    print(
        f"| inside: `text` of the new colour's prompt | {cell(table['text masked'])} | — | "
        f"{cell(table['text plain'])} | {cell(table['text input'])} |",
        flush=True,
    )
    ratios = [extension_cases(pipeline, prompt, args.steps) for prompt in prompts]
    extended = np.array([r[0] for r in ratios]).T  # seeds × prompts
    naive = np.array([r[1] for r in ratios]).T
    print("| extending a clip | change across the join / elsewhere | largest |\n|---|---|---|")
    print(f"| extended (overlap {OVERLAP}) | {cell(extended)} | {extended.max():.2f} |")
    print(f"| naive join (another seed's clip) | {cell(naive)} | {naive.max():.2f} |")


if __name__ == "__main__":
    main()
