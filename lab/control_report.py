"""Video to video and ControlNet on the embedded model, measured: held-out clips of the world itself
restyled into the striped LoRA's style, and their Canny edges followed by the `shapes-edges` ControlNet.

`animatediff shapes results` renders these rows into docs/results.md and a GIF pair (input, output) into
docs/media. The inputs are the world's own renderings of the held-out prompts (16 frames at the model's
size, a clip per prompt and seed, placed as the world places a clip of that seed); each is denoised
from strength S with the striped LoRA and the prompt plus its style trigger. `motion` is scored against
the input's own caption (its object, stripes counted as its body), `style` and `text` as for any clip;
the inputs' own `motion` is the ceiling. The ControlNet rows give the default model each input's Canny
edges as the control video and the input's own prompt; `edge F1` scores the output's Canny edges against
them (`metrics.edge_f1`, within one pixel), beside the same model without the ControlNet.

The image-to-video rows give the default model the input's first frame (and, for interpolation, its last
frame too; the input drawn with the shadow trail, as the training clips are) as SparseCtrl keyframes with
the input's own prompt: `first text` / `last text` are the `text` metric of the generated first / last
frame alone against the caption, `first diff` / `last diff` the mean absolute pixel difference (0-255)
between that frame and its keyframe, beside the same model without SparseCtrl (whose frames are compared
with the same keyframes). A ceiling row puts the keyframes through the autoencoder alone (encoded, a posterior
sample drawn from the seed, decoded; no generation): every generated frame passes through the same decoder,
so what it loses of the keyframe no SparseCtrl can bring back.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from animatediff.conditioning import as_tensor
from animatediff.control import Conditions, ControlNetInput, InitVideo
from animatediff.control.init_latents import encode_frames
from animatediff.control.preprocess import canny
from animatediff.control.sparsectrl import SparseCtrlInput
from animatediff.export import write_video
from animatediff.pipeline import to_uint8
from animatediff.shapes.metrics import edge_f1, score_video, text_score
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import STYLES, parse_prompt, prompt_clip
from lab.time_report import TimeScores, measure

FRAMES = 16
ARMS = (("LoRA 'striped'", 0.6), ("LoRA 'striped'", 0.3), ("no LoRA, for contrast", 0.6))  # (model, strength)


def input_clip(prompt: str, seed: int, size: int, frames: int = FRAMES, trail: bool = False) -> np.ndarray:
    """The world's own clip of `prompt` (F×size×size×3 uint8), placed as the world places a clip of `seed`;
    with `trail`, drawn as the recipe's training clips are (a shadow-coloured trail behind a moving object)."""
    spec = prompt_clip(prompt, seed, frames)
    if trail:
        spec.trail, spec.trail_colour = True, "shadow"
    return render_clip(spec, frames, size=size)


def restyle(
    pipeline, prompt: str, seed: int, steps: int, strength: float, style: bool = True
) -> dict[str, float | None]:
    clip = input_clip(prompt, seed, pipeline.default_size)
    styled = f"{prompt}, {STYLES['striped']}" if style else prompt
    conditions = Conditions(init=InitVideo(as_tensor(clip), strength))
    frames = pipeline(styled, progress=False, conditions=conditions, num_frames=FRAMES, seed=seed, steps=steps)
    scores = score_video(frames, styled)
    return {
        "motion": scores["motion"],
        "style": scores["style"],
        "text": scores["text"],
        "input motion": score_video(clip, prompt)["motion"],
    }


def follow_edges(pipeline, prompt: str, seed: int, steps: int, controlnet=None) -> dict[str, float | None]:
    """The input clip's Canny edges as the control video of `controlnet` (None: no ControlNet, for contrast)."""
    edges = canny(input_clip(prompt, seed, pipeline.default_size))
    controls = () if controlnet is None else (ControlNetInput(controlnet, as_tensor(edges)),)
    frames = pipeline(
        prompt, progress=False, conditions=Conditions(controlnets=controls), num_frames=FRAMES, seed=seed, steps=steps
    )
    scores = score_video(frames, prompt)
    return {
        "edge F1": edge_f1(canny(frames), edges),
        "motion": scores["motion"],
        "text": scores["text"],
        "smooth": scores["smooth"],
    }


def control_rows(
    pipelines: dict[str, object], prompts: list[str], seeds: list[int], steps: int = 25
) -> list[TimeScores]:
    """A row per arm of `ARMS` whose strength leaves a step of `steps` to run; `pipelines` maps each arm's
    model name to its pipeline."""
    return [
        measure(
            pipelines[model],
            f"{model}, strength {strength}",
            prompts,
            partial(restyle, strength=strength, style="striped" in model),
            seeds,
            steps,
        )
        for model, strength in ARMS
        if int(steps * strength) >= 1
    ]


def edge_rows(pipeline, controlnet, prompts: list[str], seeds: list[int], steps: int = 25) -> list[TimeScores]:
    """The default model following the inputs' edges with `controlnet`, and without it."""
    return [
        measure(pipeline, "no ControlNet, for contrast", prompts, follow_edges, seeds, steps),
        measure(
            pipeline, "ControlNet 'shapes-edges'", prompts, partial(follow_edges, controlnet=controlnet), seeds, steps
        ),
    ]


def write_control_media(pipeline, media: Path, steps: int = 25) -> list[tuple[str, str, str]]:
    """The input clip and its restyling at strength 0.6 (4× enlarged): (caption, prompt, file name) each."""
    prompt = "a red triangle moving right on a white background"
    clip = input_clip(prompt, 1, pipeline.default_size)
    styled = f"{prompt}, {STYLES['striped']}"
    conditions = Conditions(init=InitVideo(as_tensor(clip), ARMS[0][1]))
    frames = pipeline(styled, progress=False, conditions=conditions, num_frames=FRAMES, seed=1, steps=steps)
    made = []
    for caption, text, video in (("input clip", prompt, clip), ("restyled, strength 0.6", styled, frames)):
        name = f"v2v-{'input' if video is clip else 'striped'}.gif"
        write_video(video.repeat(4, axis=1).repeat(4, axis=2), media / name, fps=8)
        made.append((caption, text, name))
    return made


def write_edge_media(pipeline, controlnet, media: Path, steps: int = 25) -> list[tuple[str, str, str]]:
    """An input clip's Canny edges and the clip the ControlNet drew from them (4× enlarged), as above."""
    prompt = "a purple circle moving left on a black background"
    edges = canny(input_clip(prompt, 1, pipeline.default_size))
    conditions = Conditions(controlnets=(ControlNetInput(controlnet, as_tensor(edges)),))
    frames = pipeline(prompt, progress=False, conditions=conditions, num_frames=FRAMES, seed=1, steps=steps)
    made = []
    for caption, name, video in (
        ("control video: the input's edges", "controlnet-edges.gif", edges),
        ("ControlNet 'shapes-edges'", "controlnet-output.gif", frames),
    ):
        write_video(video.repeat(4, axis=1).repeat(4, axis=2), media / name, fps=8)
        made.append((caption, prompt, name))
    return made


def from_keyframes(
    pipeline, prompt: str, seed: int, steps: int, sparsectrl=None, ends: bool = False
) -> dict[str, float | None]:
    """The input clip's first frame (and its last, with `ends`) as SparseCtrl keyframes of `sparsectrl` (None:
    no SparseCtrl, for contrast); each end's text and pixel difference, the clip's motion and smoothness. The
    input is drawn as the training clips are (with the trail), so the keyframe is an image of the world the
    models know."""
    clip = input_clip(prompt, seed, pipeline.default_size, trail=True)
    indices = (0, FRAMES - 1) if ends else (0,)
    conditions = Conditions()
    if sparsectrl is not None:
        keyframes = SparseCtrlInput(sparsectrl, as_tensor(clip[list(indices)]), indices, FRAMES, encode=True)
        conditions = Conditions(sparsectrl=keyframes)
    frames = pipeline(prompt, progress=False, conditions=conditions, num_frames=FRAMES, seed=seed, steps=steps)
    scores = score_video(frames, prompt)
    found = score_ends(frames[list(indices)], clip[list(indices)], prompt)
    return {**found, "motion": scores["motion"], "smooth": scores["smooth"]}


def score_ends(ends: np.ndarray, keyframes: np.ndarray, prompt: str) -> dict[str, float | None]:
    """The first (and, given two, the last) frame of `ends` against its keyframe: its `text` alone against the
    caption and its mean absolute pixel difference from the keyframe."""
    attributes, found = parse_prompt(prompt), {}
    for end, frame, keyframe in zip(("first", "last")[: len(ends)], ends, keyframes, strict=True):
        found[f"{end} text"] = text_score(frame[None], attributes)
        found[f"{end} diff"] = float(np.abs(frame.astype(np.float32) - keyframe).mean())
    return found


@torch.no_grad()
def through_autoencoder(pipeline, prompt: str, seed: int, steps: int) -> dict[str, float | None]:
    """The input clip's first and last frames encoded by the pipeline's VAE (a posterior sample drawn from
    `seed`) and decoded, scored by `score_ends` as generated ends are: what a frame keeps of its keyframe once
    it has been through the autoencoder. `steps` is unused (nothing is denoised)."""
    clip = input_clip(prompt, seed, pipeline.default_size, trail=True)
    ends = clip[[0, FRAMES - 1]]
    latents = encode_frames(pipeline.vae, as_tensor(ends), torch.Generator().manual_seed(seed)).float()
    decoded = to_uint8(pipeline.decode(latents.permute(1, 0, 2, 3)[None]))
    return score_ends(decoded, ends, prompt)


def keyframe_rows(pipeline, sparsectrl, prompts: list[str], seeds: list[int], steps: int = 25) -> list[TimeScores]:
    """The default model from the inputs' first frame, and from their first and last frames, with
    `sparsectrl`; the contrast row without it, and the ceiling row: the keyframes through the autoencoder."""
    return [
        measure(
            pipeline, "keyframes through the autoencoder alone, the ceiling", prompts, through_autoencoder, seeds, steps
        ),
        measure(pipeline, "no SparseCtrl, for contrast", prompts, partial(from_keyframes, ends=True), seeds, steps),
        measure(
            pipeline, "SparseCtrl, keyframe 0", prompts, partial(from_keyframes, sparsectrl=sparsectrl), seeds, steps
        ),
        measure(
            pipeline,
            "SparseCtrl, keyframes 0 and 15",
            prompts,
            partial(from_keyframes, sparsectrl=sparsectrl, ends=True),
            seeds,
            steps,
        ),
    ]


def write_keyframe_media(pipeline, sparsectrl, media: Path, steps: int = 25) -> list[tuple[str, str, str]]:
    """A held-out clip's first frame as the keyframe (PNG) and the clips made from it and from its first and
    last frames (GIFs), 4× enlarged: (caption, prompt, file name) each."""
    prompt = "a red triangle moving right on a white background"
    clip = input_clip(prompt, 1, pipeline.default_size, trail=True)
    made = []
    Image.fromarray(clip[0].repeat(4, axis=0).repeat(4, axis=1)).save(media / "sparsectrl-keyframe.png")
    made.append(("keyframe: the input's first frame", prompt, "sparsectrl-keyframe.png"))
    for caption, name, indices in (
        ("SparseCtrl from keyframe 0", "sparsectrl-first.gif", (0,)),
        ("SparseCtrl from keyframes 0 and 15", "sparsectrl-ends.gif", (0, FRAMES - 1)),
    ):
        keyframes = SparseCtrlInput(sparsectrl, as_tensor(clip[list(indices)]), indices, FRAMES, encode=True)
        frames = pipeline(
            prompt, progress=False, conditions=Conditions(sparsectrl=keyframes), num_frames=FRAMES, seed=1, steps=steps
        )
        write_video(frames.repeat(4, axis=1).repeat(4, axis=2), media / name, fps=8)
        made.append((caption, prompt, name))
    return made
