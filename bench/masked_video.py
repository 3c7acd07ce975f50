"""Masked video to video and extending a clip on the embedded model: what is kept, what is redrawn, how the join moves.

    python bench/masked_video.py                       # the first held-out prompt, seeds 1-3, 25 steps, 16 frames
    python bench/masked_video.py --prompts 3 --plain   # the first three, and plain video to video beside
    python bench/masked_video.py --strength 1 --masked-only
    python bench/masked_video.py --overlap 8 --extension-only
    python bench/masked_video.py --prompts 12 --sweep 1 2 4 8 12   # the join at each overlap, per prompt
    python bench/masked_video.py --prompts 12 --sweep 4 12 --guidance 0 20   # and with reconstruction guidance
    python bench/masked_video.py --prompts 12 --sweep 12 --release 0 50      # the overlap finished by the model or not

Masked video to video (strength 0.8, or --strength): the input is the shapes world's own clip of a held-out
prompt (rendered at the embedded model's 32², the prompt's seed); the mask, white, is its object's silhouette in
each frame dilated by one latent cell (4 px); the prompt names another colour (the next of the world's colours).
Outside the mask, on the pixels at least one latent cell from it (and two), the mean absolute difference to the
input in 0-255 levels, of the clip as written (the input pasted back outside the mask, --mask-blur 0, 1 and the
default 4 px, which at 32² is the size of the object) and as decoded (diffusers' inpainting output), beside the
VAE's round trip of the same clip on the same pixels (encoded with the posterior sample the clip itself draws,
decoded: what an all-black mask gives) and, with --plain, beside plain video to video at the same strength.
Inside: the `text` metric of the new prompt (its colour found, its shape, the background), beside the input
itself (and plain video to video).

Extending a clip: the model's own 16-frame clip of the prompt (the seed) extended by 16 frames with an overlap of
4 (the same prompt and seed): 28 frames. The frame-to-frame change (mean absolute difference of consecutive
frames, 0-255 levels) across the join (the input's last frame to the first new one) over its mean everywhere
else in the joined clip; beside it the same ratio for a naive join (the clip, then frames 4-15 of the clip of
the next seed). What the join is made of: the VAE round trip of the input's last frame (its kept latents decoded,
against it: the mean absolute difference), and the same ratio inside the new clip as decoded, from its last kept
frame to its first new one (the latents' own join, before the input's frames take the overlap's place).
Rows: mean over every clip ± the spread (standard deviation) of the per-seed means. With --sweep, the join
ratio alone at each overlap given (16 frames per extension, so 16 − overlap new ones), per prompt (mean over the
seeds) and over all of them; with --guidance W…, at each overlap for each weight of reconstruction guidance
(`--extend-guidance`; the extensions of the other modes use the first weight); with --release T…, for each
timestep below which the steps leave the overlap to the model (`Extension.release`; default 50; the other
modes use the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from animatediff.control import Conditions, Extension, InitVideo
from animatediff.control.conditions import RELEASE
from animatediff.control.init_latents import encode_frames
from animatediff.control.inpaint import latent_mask, pasted
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
BLURS = (0, 1, 4)  # --mask-blur: a hard edge, 1 px, the default 4 px (at 32², the size of the object)


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


def far_from(mask: np.ndarray, factor: int, cells: int = 1) -> np.ndarray:
    """The kept pixels at least `cells` latent cells from the latent mask (F×H×W bool)."""
    redrawn = latent_mask(torch.from_numpy(mask[:, None]).float(), factor)[0, 0].numpy() > 0
    near = np.stack([ndimage.binary_dilation(frame, iterations=cells) for frame in redrawn])
    return ~near.repeat(factor, axis=1).repeat(factor, axis=2)


def error(frames: np.ndarray, reference: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(frames.astype(float) - reference.astype(float))[where].mean())


def masked_case(pipeline, prompt: str, seed: int, steps: int, with_plain: bool, strength: float) -> dict[str, float]:
    """One masked clip's numbers: errors outside (masked, round trip, plain), `text` inside (masked, plain, input);
    NaN for plain video to video when it is not made."""
    factor = pipeline.vae_scale_factor
    frames = render_clip(prompt_clip(prompt, seed, FRAMES), FRAMES, IMAGE_SIZE)
    mask = object_mask(frames, parse_prompt(prompt).colour, factor)
    new = recoloured(prompt)
    run = dict(num_frames=FRAMES, steps=steps, seed=seed, progress=False)
    masked = pipeline(
        new,
        conditions=Conditions(init=InitVideo(as_tensor(frames), strength, torch.from_numpy(mask[:, None]).float())),
        **run,
    )
    plain = (
        pipeline(new, conditions=Conditions(init=InitVideo(as_tensor(frames), strength)), **run) if with_plain else None
    )
    latents = encode_frames(pipeline.vae, as_tensor(frames), torch.Generator("cpu").manual_seed(seed))
    round_trip = to_uint8(pipeline.decode(latents.permute(1, 0, 2, 3)[None]))
    kept, farther = far_from(mask, factor), far_from(mask, factor, 2)
    attributes = parse_prompt(new)
    case = {}
    for blur in BLURS:
        finished = pasted(as_tensor(masked), as_tensor(frames), torch.from_numpy(mask[:, None]).float(), blur)
        finished = to_uint8(finished)
        case |= {
            f"outside pasted {blur}": error(finished, frames, kept),
            f"farther pasted {blur}": error(finished, frames, farther),
            f"text pasted {blur}": text_score(finished, attributes),
        }
    case |= {
        "outside masked": error(masked, frames, kept),
        "outside round trip": error(round_trip, frames, kept),
        "farther masked": error(masked, frames, farther),
        "farther round trip": error(round_trip, frames, farther),
        "outside plain": error(plain, frames, kept) if with_plain else np.nan,
        "text masked": text_score(masked, attributes),
        "text plain": text_score(plain, attributes) if with_plain else np.nan,
        "text input": text_score(frames, attributes),
    }
    print(f"seed {seed}, {new!r}: " + ", ".join(f"{k} {v:.3f}" for k, v in case.items()), flush=True)
    return case


def changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each pair of consecutive frames (0-255 levels)."""
    return np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))


def join_ratio(frames: np.ndarray, join: int) -> float:
    """The change from frame `join` - 1 to frame `join` over the mean change everywhere else."""
    change = changes(frames)
    return float(change[join - 1] / np.delete(change, join - 1).mean())


def extension_cases(
    pipeline, prompt: str, steps: int, overlap: int, guidance: float = 0.0, release: int = RELEASE
) -> list[dict[str, float]]:
    """Per seed: the join ratio of the extended clip, of a naive join with the next seed's clip, of the new clip's
    own latents; the round trip of the input's last frame."""
    run = dict(num_frames=FRAMES, steps=steps, progress=False)
    clips = {seed: pipeline(prompt, seed=seed, **run) for seed in SEEDS}
    decode, decoded = pipeline.decode, []
    pipeline.decode = lambda latents: decoded.append(latents) or decode(latents)
    cases = []
    for seed in SEEDS:
        extension = Extension(as_tensor(clips[seed]), overlap, guidance, release)
        joined = pipeline(prompt, seed=seed, conditions=Conditions(extension=extension), **run)
        assert len(joined) == 2 * FRAMES - overlap and np.array_equal(joined[:FRAMES], clips[seed])
        new = to_uint8(decode(decoded[-1]))
        other = clips[SEEDS[(SEEDS.index(seed) + 1) % len(SEEDS)]]
        case = {
            "extended": join_ratio(joined, FRAMES),
            "naive": join_ratio(np.concatenate([clips[seed], other[overlap:]]), FRAMES),
            "latents": join_ratio(new, overlap),
            "round trip": float(np.abs(new[overlap - 1].astype(float) - clips[seed][-1]).mean()),
            "change": float(changes(clips[seed]).mean()),
        }
        print(f"seed {seed}, {prompt!r}: " + ", ".join(f"{k} {v:.3f}" for k, v in case.items()), flush=True)
        cases.append(case)
    pipeline.decode = decode
    return cases


def cell(values: np.ndarray) -> str:
    """mean over every clip ± the spread of the per-seed means (values: seeds × prompts)."""
    return f"{values.mean():.2f} ± {values.mean(axis=1).std():.2f}"


def masked_table(pipeline, prompts: list[str], args: argparse.Namespace) -> None:
    cases = [
        [masked_case(pipeline, prompt, seed, args.steps, args.plain, args.strength) for prompt in prompts]
        for seed in SEEDS
    ]
    table = {key: np.array([[case[key] for case in row] for row in cases]) for key in cases[0][0]}
    pasted_heads = "".join(f" pasted back, --mask-blur {blur} |" for blur in BLURS)
    print(
        f"| masked video to video |{pasted_heads} as decoded | VAE round trip | plain video to video | input |\n"
        f"|---|{'---|' * len(BLURS)}---|---|---|---|"
    )
    for name, title, plain, given in (
        ("outside", "outside the mask: mean abs. difference to the input (0-255)", "outside plain", "0"),
        ("farther", "outside, two latent cells or more from it", None, "0"),
        ("text", "inside: `text` of the new colour's prompt", "text plain", cell(table["text input"])),
    ):
        blurred = "".join(f" {cell(table[f'{name} pasted {blur}'])} |" for blur in BLURS)
        trip = cell(table[f"{name} round trip"]) if name != "text" else "—"
        beside = cell(table[plain]) if plain else "—"
        print(f"| {title} |{blurred} {cell(table[f'{name} masked'])} | {trip} | {beside} | {given} |", flush=True)


def extension_table(pipeline, prompts: list[str], args: argparse.Namespace) -> None:
    cases = [
        extension_cases(pipeline, prompt, args.steps, args.overlap, args.guidance[0], args.release[0])
        for prompt in prompts
    ]
    table = {key: np.array([[case[key] for case in row] for row in cases]).T for key in cases[0][0]}
    print("| extending a clip | change across the join / elsewhere | largest |\n|---|---|---|")
    print(
        f"| extended (overlap {args.overlap}), as written | {cell(table['extended'])} | {table['extended'].max():.2f} |"
    )
    print(f"| naive join (another seed's clip) | {cell(table['naive'])} | {table['naive'].max():.2f} |")
    print(
        f"| the new clip's own latents, across the overlap | {cell(table['latents'])} | {table['latents'].max():.2f} |"
    )
    print(
        f"round trip of the input's last frame {cell(table['round trip'])} levels; mean frame-to-frame change of the "
        f"input {cell(table['change'])} levels"
    )


def overlap_sweep(
    pipeline, prompts: list[str], overlaps: list[int], steps: int, weights: list[float], releases: list[int]
) -> None:
    """The join ratio of each prompt's extensions at each overlap, guidance weight and release (mean over the
    seeds), then over every clip."""
    run = dict(num_frames=FRAMES, steps=steps, progress=False)
    columns = [(k, w, r) for k in overlaps for w in weights for r in releases]
    names = [
        f"overlap {k}"
        + (f", guidance {w:g}" if len(weights) > 1 else "")
        + (f", release {r:g}" if len(releases) > 1 else "")
        for k, w, r in columns
    ]
    print(f"| prompt | {' | '.join(names)} |\n|---|{'---|' * len(columns)}")
    ratios = []  # prompts × seeds × columns
    for prompt in prompts:
        rows = []
        for seed in SEEDS:
            clip = pipeline(prompt, seed=seed, **run)
            extended = [
                pipeline(prompt, seed=seed, conditions=Conditions(extension=Extension(as_tensor(clip), k, w, r)), **run)
                for k, w, r in columns
            ]
            rows.append([join_ratio(joined, FRAMES) for joined in extended])
        ratios.append(rows)
        means = np.mean(rows, axis=0)
        print(f"| {prompt} | {' | '.join(f'{value:.2f}' for value in means)} |", flush=True)
    table = np.array(ratios)
    spread = table.mean(axis=0).std(axis=0)  # over the per-seed means
    cells = " | ".join(f"**{mean:.2f} ± {std:.2f}**" for mean, std in zip(table.mean(axis=(0, 1)), spread, strict=True))
    print(f"| **all {len(prompts)} prompts** | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1, help="the first N held-out prompts")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--plain", action="store_true", help="plain video to video beside the masked clips")
    parser.add_argument("--strength", type=float, default=STRENGTH, help="of the masked video to video")
    parser.add_argument("--masked-only", action="store_true", help="no extension")
    parser.add_argument("--extension-only", action="store_true", help="no masked video to video")
    parser.add_argument("--overlap", type=int, default=OVERLAP, help="of the extension")
    parser.add_argument("--sweep", type=int, nargs="+", metavar="K", help="only the join ratio at these overlaps")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0], metavar="W", help="--extend-guidance")
    parser.add_argument(
        "--release",
        type=int,
        nargs="+",
        default=[RELEASE],
        metavar="T",
        help="the steps below this timestep finish the extension's overlap (0: none)",
    )
    args = parser.parse_args()
    prompts = held_out_prompts()[: args.prompts]
    print(f"{len(prompts)} prompts × seeds {SEEDS}, {args.steps} steps, {FRAMES} frames", flush=True)
    pipeline = build_pipeline(with_family(ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)))
    if args.sweep:
        return overlap_sweep(pipeline, prompts, args.sweep, args.steps, args.guidance, args.release)
    if not args.extension_only:
        masked_table(pipeline, prompts, args)
    if not args.masked_only:
        extension_table(pipeline, prompts, args)


if __name__ == "__main__":
    main()
