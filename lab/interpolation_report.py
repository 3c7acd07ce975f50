"""Frame interpolation measured against the shapes world's own in-between frames.

The world renders each held-out clip (16 frames at its own pace, seeds as given) at K times the frame rate
(the same motion at 1/K of the speed per frame, (16 − 1)·K + 1 frames), so every K-th frame is the clip a
generator would have made and the frames between are the truth. The clip is interpolated back ×K by each
method and its new frames are scored against the truth: PSNR over the whole frame, PSNR on the moving
object (the pixels that differ between the pair's two frames or between the truth and the first of them;
the still prompt has none and is left out of that column), SSIM (Wang et al. 2004: 11×11 Gaussian window,
σ 1.5, per channel), and the `smooth` metric of the whole interpolated clip beside the truth's own at the
full rate. Methods: frame duplication, linear blending, the built-in optical flow, and RIFE when weights
are given (`RIFE_WEIGHTS`). `python -m lab.interpolation_report` prints the table; `animatediff shapes results`
writes it into docs/results.md with a GIF pair.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from animatediff.export import write_video
from animatediff.finishing.interpolation import (
    Between,
    blend_between,
    duplicate_between,
    flow_between,
    interpolate,
    interpolator,
)
from animatediff.shapes.metrics import smooth_score
from animatediff.shapes.render import render_clip
from animatediff.shapes.world import prompt_clip

FACTORS = (2, 4)
SIZE = 64  # rendered frame size (the world renders at any size; the embedded models make 32×32)
FRAMES = 16


def held_out_prompts() -> list[str]:
    """The held-out prompts of the quality table (lab.report), imported late: report imports this module."""
    from lab.report import held_out_prompts as prompts

    return prompts()


def methods() -> dict[str, Between]:
    found = {
        "duplicate frames": duplicate_between,
        "linear blend": blend_between,
        "optical flow (built in)": flow_between,
    }
    weights = os.environ.get("RIFE_WEIGHTS")
    if weights:
        found["RIFE (" + Path(weights).name + ")"] = interpolator(Path(weights))[0]
    return found


def full_rate(prompt: str, seed: int, factor: int, size: int = SIZE) -> np.ndarray:
    """The world's clip of `prompt` at `factor` times its frame rate: every factor-th frame is the clip itself."""
    spec = prompt_clip(prompt, seed, FRAMES)
    return render_clip(replace(spec, speed=spec.speed / factor), frames=(FRAMES - 1) * factor + 1, size=size)


def psnr(made: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    error = (made.astype(np.float64) - truth) ** 2
    mse = error.mean() if where is None else error[where].mean()
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def ssim(made: np.ndarray, truth: np.ndarray) -> float:
    """The structural similarity of two H×W×3 uint8 frames (mean over pixels and channels)."""
    a, b = made.astype(np.float64), truth.astype(np.float64)
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mean_a, mean_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mean_a**2, blur(b * b) - mean_b**2
    cov = blur(a * b) - mean_a * mean_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(
        ((2 * mean_a * mean_b + c1) * (2 * cov + c2) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))).mean()
    )


def moving(truth: np.ndarray, index: int, factor: int) -> np.ndarray:
    """H×W×3 mask of the moving object around new frame `index`: pixels that differ between the pair's frames,
    or between the truth and the pair's first frame."""
    first, second = truth[index - index % factor], truth[index - index % factor + factor]
    changed = (first != second).any(-1) | (truth[index] != first).any(-1)
    return np.repeat(changed[..., None], 3, -1)


@dataclass
class Scores:
    psnr: list[float] = field(default_factory=list)
    psnr_moving: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)
    truth_smooth: list[float] = field(default_factory=list)
    seconds: float = 0.0


def interpolation_rows(seeds: list[int], size: int = SIZE, prompts: list[str] | None = None) -> dict:
    """{(factor, method): Scores} over the held-out prompts and `seeds`."""
    rows = {}
    for factor in FACTORS:
        for name, between in methods().items():
            scores = rows.setdefault((factor, name), Scores())
            for prompt in prompts or held_out_prompts():
                for seed in seeds:
                    truth = full_rate(prompt, seed, factor, size)
                    start = time.perf_counter()
                    made = interpolate(truth[::factor], factor, between=between, progress=False)
                    scores.seconds += time.perf_counter() - start
                    new = [index for index in range(len(truth)) if index % factor]
                    scores.psnr.append(np.mean([psnr(made[i], truth[i]) for i in new]))
                    scores.ssim.append(np.mean([ssim(made[i], truth[i]) for i in new]))
                    if "staying still" not in prompt:
                        scores.psnr_moving.append(
                            np.mean([psnr(made[i], truth[i], moving(truth, i, factor)) for i in new])
                        )
                    scores.smooth.append(smooth_score(made))
                    scores.truth_smooth.append(smooth_score(truth))
    return rows


def format_interpolation_rows(rows: dict) -> list[str]:
    lines = [
        "| ×K | method | PSNR, new frames (dB) | PSNR on the moving object (dB) | SSIM | `smooth` (the truth's own) |",
        "|---|---|---|---|---|---|",
    ]
    for (factor, name), s in rows.items():
        lines.append(
            f"| ×{factor} | {name} | {np.mean(s.psnr):.1f} | {np.mean(s.psnr_moving):.1f} | {np.mean(s.ssim):.4f} | "
            f"{np.mean(s.smooth):.3f} ({np.mean(s.truth_smooth):.3f}) |"
        )
    return lines


def write_interpolation_media(media: Path, size: int = SIZE) -> list[tuple[str, str, str]]:
    """A GIF pair: a held-out clip as made (8 fps) and interpolated ×4 by the built-in method (32 fps)."""
    prompt = held_out_prompts()[0]
    clip = full_rate(prompt, 1, 1, size)
    made = interpolate(clip, 4, progress=False)
    media.mkdir(parents=True, exist_ok=True)
    write_video(clip, media / "interpolation-input.gif", fps=8)
    write_video(made, media / "interpolation-x4.gif", fps=32)
    return [
        ("as made, 16 frames at 8 fps", prompt, "interpolation-input.gif"),
        ("×4 by optical flow, 61 frames at 32 fps", prompt, "interpolation-x4.gif"),
    ]


def interpolation_section(media: Path, relative: str, seeds: list[int], max_prompts: int | None = None) -> list[str]:
    """The frame-interpolation rows and their GIF pair (written into `media`, linked as `relative`)."""
    rows = interpolation_rows(seeds, prompts=held_out_prompts()[:max_prompts])
    made = write_interpolation_media(media)
    return [
        "## Frame interpolation",
        "",
        f"The held-out prompts' clips as the world renders them ({FRAMES} frames, {SIZE}×{SIZE}, seeds "
        f"{', '.join(map(str, seeds))}), interpolated ×2 and ×4 and scored against the world's own in-between "
        "frames (`lab.interpolation_report` says how each number is measured). No RIFE weights are in this "
        "repository, so the learned interpolator has no row here.",
        "",
        *format_interpolation_rows(rows),
        "",
        "| " + " | ".join(caption for caption, _, _ in made) + " |",
        "|" + "---|" * len(made),
        "| " + " | ".join(f"![{caption}]({relative}/{name})" for caption, _, name in made) + " |",
        "",
    ]


def main(seeds: list[int]) -> None:
    rows = interpolation_rows(seeds)
    print("\n".join(format_interpolation_rows(rows)))
    flow = {factor: rows[(factor, "optical flow (built in)")] for factor in FACTORS}
    for factor, s in flow.items():
        frames = len(seeds) * len(held_out_prompts()) * (FRAMES - 1) * factor
        print(
            f"×{factor}: optical flow {s.seconds / frames * 1000:.1f} ms per output frame at {SIZE}²", file=sys.stderr
        )


if __name__ == "__main__":
    main([int(seed) for seed in sys.argv[1:]] or [1, 2, 3])
