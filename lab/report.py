"""`animatediff shapes results`: the embedded models' quality table and GIF grid, regenerated in one go.

Every row generates videos for held-out prompts (the (colour, shape, motion) combinations no training
set showed, each on a background of its own) with several seeds, scores them with the shapes-world
metrics, and reports the mean over all videos and the spread (standard deviation) of the per-seed
means. Camera rows use scene prompts with the MotionLoRA's camera motion.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from animatediff.conditioning import load_controlnet
from animatediff.embedded import FOLDER, MODELS
from animatediff.errors import ConfigError
from animatediff.export import file_stem, write_video
from animatediff.formats.sparsectrl import load_sparsectrl
from animatediff.loading import ModelSpec, build_pipeline
from animatediff.planner import with_family
from animatediff.shapes.metrics import score_video
from animatediff.shapes.world import BACKGROUNDS, HELD_OUT, STYLES
from lab.control_report import (
    control_rows,
    edge_rows,
    keyframe_rows,
    write_control_media,
    write_edge_media,
    write_keyframe_media,
)
from lab.interpolation_report import interpolation_section
from lab.time_report import format_time_rows, time_rows, world_long_clips, write_time_media

METRICS = ("text", "motion", "camera", "style", "smooth", "watermark")
TABLES = ("modules", "adapter", "motion_lora")  # the ablation tables, in the order `shapes ablations` makes them
CAMERA_SCENES = (
    "a red circle, a blue square and a green star on a gray background",
    "a yellow triangle, a purple circle and an orange square on a white background",
    "a green square, a red triangle and a blue star on a black background",
    "an orange circle, a yellow star and a purple triangle on a brown background",
)


def held_out_prompts(style: str | None = None) -> list[str]:
    """One prompt per held-out combination, backgrounds taken in turn (the first four: the table's prompts
    stayed the same when the world gained its blue background, so that tables of retrains compare)."""
    backgrounds = list(BACKGROUNDS)[:4]
    prompts = []
    for index, (colour, shape, motion) in enumerate(HELD_OUT):
        article = "an" if colour[0] in "aeiou" else "a"
        prompt = f"{article} {colour} {shape} {motion} on a {backgrounds[index % len(backgrounds)]} background"
        prompts.append(prompt + (f", {STYLES[style]}" if style else ""))
    return prompts


def camera_prompts(camera: str) -> list[str]:
    return [f"{scene}, camera {camera}" for scene in CAMERA_SCENES]


@dataclass
class Row:
    name: str
    what: str
    prompts: list[str]
    motion_module: bool = True
    dreambooth: str | None = None
    lora: str | None = None
    motion_lora: str | None = None
    module: str = "shapes-motion"  # the embedded motion module; a few-step one samples with its family's preset
    spec: ModelSpec | None = None  # explicit files (ablation arms) instead of the embedded names above
    scores: dict = field(default_factory=dict)  # metric → (mean, spread over seeds)


def default_rows() -> list[Row]:
    return [
        Row("base, no motion module", "each frame an independent image", held_out_prompts(), motion_module=False),
        Row("base + motion module", "the embedded default", held_out_prompts()),
        Row(
            "base + shapes-lcm",
            "4 steps, LCM, no guidance: distilled from the default",
            held_out_prompts(),
            module="shapes-lcm",
        ),
        Row(
            "DreamBooth 'outlined' + motion module",
            "personalized; module never tuned on it",
            held_out_prompts("outlined"),
            dreambooth="shapes-outlined",
        ),
        Row(
            "LoRA 'striped' + motion module",
            "personalized; module never tuned on it",
            held_out_prompts("striped"),
            lora="shapes-striped",
        ),
        Row("motion module, zoom-in prompts", "no MotionLoRA, for contrast", camera_prompts("zooming in")),
        Row("+ MotionLoRA zoom in", "", camera_prompts("zooming in"), motion_lora="shapes-zoom-in"),
        Row("motion module, pan-left prompts", "no MotionLoRA, for contrast", camera_prompts("panning left")),
        Row("+ MotionLoRA pan left", "", camera_prompts("panning left"), motion_lora="shapes-pan-left"),
    ]


def _spec(row: Row, models: Path) -> ModelSpec:
    if row.spec is not None:
        return row.spec

    def path(name: str) -> Path:
        return models / MODELS[name].file

    return ModelSpec(
        base=path("shapes"),
        motion_module=path(row.module) if row.motion_module else None,
        dreambooth=path(row.dreambooth) if row.dreambooth else None,
        loras=[(path(row.lora), 1.0)] if row.lora else [],
        motion_loras=[(path(row.motion_lora), 1.0)] if row.motion_lora else [],
    )


def evaluate_row(
    row: Row, seeds: list[int], steps: int = 25, models: Path = FOLDER, max_prompts: int | None = None
) -> Row:
    """Generate and score every prompt × seed of a row (the first `max_prompts`, if given).
    `models` is the folder of the embedded models' files."""
    spec = with_family(_spec(row, models))
    pipeline = build_pipeline(spec)
    few_steps = spec.release.sampler != "ddim"  # a distilled module samples with its own preset
    steps, guidance = (spec.release.steps, spec.release.guidance_scale) if few_steps else (steps, 7.5)
    per_seed: dict[str, list[list[float]]] = {metric: [[] for _ in seeds] for metric in METRICS}
    for prompt in row.prompts[:max_prompts]:
        for s, seed in enumerate(seeds):
            frames = pipeline(prompt, num_frames=16, steps=steps, guidance_scale=guidance, seed=seed, progress=False)
            for metric, value in score_video(frames, prompt).items():
                if value is not None:
                    per_seed[metric][s].append(value)
    for metric, values in per_seed.items():
        if any(values):
            means = [np.mean(v) for v in values if v]
            row.scores[metric] = (float(np.mean([x for v in values for x in v])), float(np.std(means)))
    return row


def format_rows(rows: list[Row]) -> str:
    metrics = [m for m in METRICS if any(m in row.scores for row in rows)]
    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for row in rows:
        cells = [f"{row.scores[m][0]:.2f} ± {row.scores[m][1]:.2f}" if m in row.scores else "–" for m in metrics]
        lines.append(f"| {row.name}{f' ({row.what})' if row.what else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_grid(media: Path, seed: int = 1, steps: int = 25, models: Path = FOLDER) -> list[tuple[str, str, str]]:
    """A few GIFs (4× enlarged for viewing) for the README: (caption, prompt, file name)."""
    examples = [
        ("base + motion module", "a red triangle moving right on a white background", {}),
        (
            "DreamBooth 'outlined'",
            "a green star spinning clockwise on a white background, outlinestyle",
            {"dreambooth": "shapes-outlined"},
        ),
        ("LoRA 'striped'", "a purple square growing on a gray background, stripestyle", {"lora": "shapes-striped"}),
        ("MotionLoRA zoom in", f"{CAMERA_SCENES[0]}, camera zooming in", {"motion_lora": "shapes-zoom-in"}),
        ("MotionLoRA pan left", f"{CAMERA_SCENES[1]}, camera panning left", {"motion_lora": "shapes-pan-left"}),
    ]
    made = []
    for caption, prompt, choice in examples:
        pipeline = build_pipeline(_spec(Row(caption, "", [prompt], **choice), models))
        frames = pipeline(prompt, num_frames=16, steps=steps, guidance_scale=7.5, seed=seed, progress=False)
        name = f"{file_stem(caption)}.gif"
        write_video(frames.repeat(4, axis=1).repeat(4, axis=2), media / name, fps=8)
        made.append((caption, prompt, name))
    return made


def fingerprint(path: Path) -> str:
    """A short hash of a weights file's tensors, rounded to float16 as the package ships them: which retrain
    a table was measured on (a model and its float16 export share it)."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(path, framework="pt") as handle:
        for key in sorted(handle.keys()):
            tensor = handle.get_tensor(key)
            tensor = tensor.half() if tensor.is_floating_point() else tensor
            digest.update(key.encode() + tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def measured_models(base: Path, adapter: Path, motion_module: Path) -> dict[str, str | None]:
    """Fingerprints of the models the ablation tables measure (`None` for a motion module not trained yet)."""
    return {
        "base": fingerprint(Path(base) / "unet" / "diffusion_pytorch_model.safetensors"),
        "adapter": fingerprint(adapter),
        "motion_module": fingerprint(motion_module) if Path(motion_module).exists() else None,
    }


def ablations_section(ablations: Path, models: Path = FOLDER) -> list[str]:
    """Tables 2-5 of results.md from `animatediff shapes ablations`' JSON, marked stale when they were
    measured on other models than those in `models`."""
    tables = json.loads(Path(ablations).read_text())
    seeds = " ".join(map(str, tables["budgets"]["seeds"]))
    text = [
        "# The paper's claims, measured",
        "",
        "Table 1 (transfer without tuning) is the table above: the base without and with the motion module,",
        "and the two personalized models with a module never tuned on them. Tables 2-5 were made by",
        f"`animatediff shapes ablations WORK --output {Path(ablations).as_posix()} --seeds {seeds}` on the",
        "retrain's work folder. What they show, and where they disagree with the paper:",
        "[shapes-model.md](shapes-model.md#the-papers-claims-what-the-tables-show).",
        "",
    ]
    shipped = measured_models(models / "base", models / "adapter.safetensors", models / "motion_module.safetensors")
    if tables.get("models") != shipped:
        text += [
            "**These tables were measured on an earlier retrain than the table above** (the JSON's base,",
            "adapter or motion module is not the shipped one); rerun `animatediff shapes ablations` to",
            "measure the current ones.",
            "",
        ]
    return text + [format_ablations(tables)]


def time_section(
    media: Path, relative: str, seeds: list[int], steps: int, models: Path, max_prompts: int | None, reference: dict
) -> list[str]:
    """The long-video rows (`time_report`) on the default model, with their GIFs (written into `media`,
    linked as `relative`), as markdown lines."""
    pipeline = build_pipeline(_spec(Row("", "", []), models))
    prompts = held_out_prompts()[:max_prompts]
    rows = time_rows(pipeline, prompts, held_out_prompts(), seeds, steps)
    world = world_long_clips(prompts, seeds, pipeline.default_size)
    made = write_time_media(pipeline, media, steps)
    return [
        "## Long videos: context windows, prompt travel, loops",
        "",
        "The default model (base + motion module) on the held-out prompts, seeds as above; made by the same "
        "command (`lab.time_report` says how each number is measured).",
        "",
        *format_time_rows(rows, reference, world),
        "",
        *_media_table(made, relative),
        "",
    ]


def control_section(
    media: Path, relative: str, seeds: list[int], steps: int, models: Path, max_prompts: int | None
) -> list[str]:
    """The video-to-video rows (`control_report`) with the striped LoRA, the ControlNet rows (when `models`
    holds the ControlNet), and their GIFs, as markdown."""
    striped = build_pipeline(_spec(Row("", "", [], lora="shapes-striped"), models))
    default = build_pipeline(_spec(Row("", "", []), models))
    prompts = held_out_prompts()[:max_prompts]
    rows = control_rows({"LoRA 'striped'": striped, "no LoRA, for contrast": default}, prompts, seeds, steps)
    lines = [
        "## Video to video",
        "",
        "Held-out clips rendered by the world itself (16 frames at 32×32), restyled with the LoRA 'striped' and "
        "the prompt plus its style trigger (the contrast row: the default model and the plain prompt); "
        "`motion` against the input's own caption (`input motion`: the inputs' own score); made by the same "
        "command (`lab.control_report`).",
        "",
        *_metric_table(rows),
        "",
        *_media_table(write_control_media(striped, media, steps), relative),
        "",
    ]
    path = models / MODELS["shapes-edges"].file
    if not path.exists():
        return lines
    controlnet = load_controlnet(path, default.unet.unet).to(default.device, default.unet.unet.dtype)
    rows = edge_rows(default, controlnet, prompts, seeds, steps)
    return [
        *lines,
        "## ControlNet on edges",
        "",
        "The same held-out clips' Canny edges as the control video of the ControlNet 'shapes-edges' on the "
        "default model with each clip's own prompt (the contrast row: no ControlNet); `edge F1`: the output's "
        "Canny edges against the control video's, within one pixel.",
        "",
        *_metric_table(rows),
        "",
        *_media_table(write_edge_media(default, controlnet, media, steps), relative),
        "",
        *keyframe_section(default, media, relative, seeds, steps, models, prompts),
    ]


def keyframe_section(
    default, media: Path, relative: str, seeds: list[int], steps: int, models: Path, prompts: list[str]
) -> list[str]:
    """The image-to-video rows (`control_report.keyframe_rows`) with the embedded SparseCtrl, when `models`
    holds it, and their media, as markdown."""
    path = models / MODELS["shapes-sparsectrl"].file
    if not path.exists():
        return []
    sparsectrl = load_sparsectrl(path, default.unet.unet)
    rows = keyframe_rows(default, sparsectrl, prompts, seeds, steps)
    return [
        "## Image to video (SparseCtrl)",
        "",
        "The same held-out clips, drawn as the training clips are (with the shadow trail): their first frame "
        "(and, for interpolation, also their last) as keyframes of the SparseCtrl 'shapes-sparsectrl' on the "
        "default model with each clip's own prompt (the contrast row: no SparseCtrl, its frames compared with "
        "the same keyframes; the ceiling row: the keyframes encoded and decoded by the autoencoder, no generation, "
        "which every generated frame goes through too); `first text` / `last text`: the `text` metric of the "
        "generated first / last frame alone (the keyframes themselves score 0.98); `first diff` / `last diff`: "
        "its mean absolute difference from the keyframe in pixel levels (0-255).",
        "",
        *_metric_table(rows),
        "",
        *_media_table(write_keyframe_media(default, sparsectrl, media, steps), relative),
        "",
    ]


def _metric_table(rows: list) -> list[str]:
    lines = ["| clips | metric | mean ± spread over seeds |", "|---|---|---|"]
    for row in rows:
        for metric, per_seed in row.values.items():
            means = [np.mean(values) for values in per_seed if values]
            mean = float(np.mean([v for values in per_seed for v in values]))
            lines.append(f"| {row.name} | {metric} | {mean:.2f} ± {float(np.std(means)):.2f} |")
    return lines


def _media_table(made: list[tuple[str, str, str]], relative: str) -> list[str]:
    return [
        "| " + " | ".join(caption for caption, _, _ in made) + " |",
        "|" + "---|" * len(made),
        "| " + " | ".join(f"![{caption}]({Path(relative, name).as_posix()})" for caption, _, name in made) + " |",
        "| " + " | ".join(f"`{prompt}`" for _, prompt, _ in made) + " |",
    ]


BENCH_MARK = (
    "<!-- The sections below are measured by the bench scripts each names (bench/README.md); "
    "`animatediff shapes results` keeps them as they are. -->"
)


def bench_sections(output: Path) -> list[str]:
    """The lines of `output` from `BENCH_MARK` on, which making the file again keeps ([] without the mark)."""
    text = output.read_text() if output.is_file() else ""
    at = text.find(BENCH_MARK)
    return [] if at < 0 else text[at:].rstrip("\n").split("\n") + [""]


def write_results(
    output: str | os.PathLike,
    media: str | os.PathLike,
    seeds: list[int],
    ablations: str | os.PathLike | None = None,
    steps: int = 25,
    models: Path = FOLDER,
    max_prompts: int | None = None,
) -> Path:
    """Regenerate the quality table and the GIF grid (and render the ablation tables from
    `animatediff shapes ablations`' JSON, if given), keeping what the bench scripts wrote below `BENCH_MARK`;
    returns the markdown file written."""
    output, media, models = Path(output), Path(media), Path(models)
    rows = [evaluate_row(row, seeds, steps=steps, models=models, max_prompts=max_prompts) for row in default_rows()]
    grid = write_grid(media, steps=steps, models=models)
    relative = os.path.relpath(media, output.parent)
    long_videos = time_section(media, relative, seeds, steps, models, max_prompts, reference=rows[1].scores)
    long_videos += control_section(media, relative, seeds, steps, models, max_prompts)
    long_videos += interpolation_section(media, relative, seeds, max_prompts)
    recipe = json.loads((models / "recipe.json").read_text()) if (models / "recipe.json").exists() else {}
    text = [
        "# The embedded shapes-world models: measured quality",
        "",
        "Made by `animatediff shapes results` (this file and the GIFs beside it). Prompts are the 12 held-out",
        "(colour, shape, motion) combinations of `animatediff.shapes.world.HELD_OUT`, none of which any training",
        f"set showed, each on its own background; seeds {', '.join(map(str, seeds))}; 16 frames at 32×32, DDIM",
        "25 steps, guidance 7.5 (the few-step row: its family's preset). Camera rows use four scene prompts with",
        "the camera motion. Each cell is the mean over all videos ± the standard deviation of the per-seed",
        "means. Metrics: `animatediff eval`.",
        "",
        format_rows(rows),
        "",
        "Targets (issue #8): base + motion module `motion` ≥ 0.8 and `text` ≥ 0.8; personalized + motion module",
        "`motion` ≥ 0.7 with `style` ≥ 0.7.",
        "",
        "## Examples",
        "",
        "| " + " | ".join(caption for caption, _, _ in grid) + " |",
        "|" + "---|" * len(grid),
        "| " + " | ".join(f"![{caption}]({relative}/{name})" for caption, _, name in grid) + " |",
        "| " + " | ".join(f"`{prompt}`" for _, prompt, _ in grid) + " |",
        "",
    ]
    text += [
        "How the world and the models were sized, with the measurements behind each choice: "
        "[shapes-model.md](shapes-model.md).",
        "",
    ]
    text += long_videos
    if ablations is not None:
        text += ablations_section(Path(ablations), models)
    if recipe:
        text += [
            "## Training (the recipe that made the shipped weights)",
            "",
            "| stage | what | steps × batch | seconds on the 2-core CPU |",
            "|---|---|---|---|",
        ]
        for name, entry in recipe.items():
            text.append(
                f"| {name} | {entry['stage']} | {entry['steps']} × {entry['batch_size']} | {entry['seconds']:.0f} |"
            )
        text.append("")
    text += bench_sections(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(text))
    return output


def _cell(entry: dict, metric: str) -> str:
    return f"{entry[metric][0]:.2f} ± {entry[metric][1]:.2f}" if metric in entry else "–"


def format_ablations(tables: dict) -> str:
    """The markdown for tables 2-5 (table 1 is the results table itself)."""
    missing = [name for name in TABLES if name not in tables]
    if missing:
        raise ConfigError(f"the ablations JSON lacks the tables {', '.join(missing)}; run `shapes ablations` on.")
    budgets = tables["budgets"]
    seeds = ", ".join(map(str, budgets["seeds"]))
    lines = [
        "## 2. Domain adapter",
        "",
        f"Held-out prompts, seeds {seeds}. Short-budget modules: {budgets['motion_module']}; the shipped module: "
        f"{budgets['shipped_motion_module']}.",
        "",
        "| arm | watermark | motion | text |",
        "|---|---|---|---|",
    ]
    for entry in tables["adapter"]:
        lines.append(
            f"| {entry['arm']} | {_cell(entry, 'watermark')} | {_cell(entry, 'motion')} | {_cell(entry, 'text')} |"
        )
    modules = {entry["arm"]: entry for entry in tables["modules"]}
    lines += [
        "",
        "## 3. Motion module design",
        "",
        f"Same budget for both: {budgets['motion_module']}.",
        "",
        "| module | parameters | motion | smooth | text |",
        "|---|---|---|---|---|",
    ]
    for name in ("transformer", "convolution"):
        entry = modules[name]
        lines.append(
            f"| {name} | {entry['parameters']:,} | {_cell(entry, 'motion')} | {_cell(entry, 'smooth')} | "
            f"{_cell(entry, 'text')} |"
        )
    lines += [
        "",
        "## 4. MotionLoRA (camera zooming in)",
        "",
        f"Budget per LoRA: {budgets['motion_lora']}, on the shipped motion module; four scene prompts.",
        "",
        "| rank | reference clips | camera | text | file size |",
        "|---|---|---|---|---|",
    ]
    for entry in tables["motion_lora"]:
        size = f"{entry['bytes'] / 1024:.0f} KiB" if entry["bytes"] else "–"
        rank = entry["rank"] or "no LoRA"
        lines.append(
            f"| {rank} | {entry['clips'] or '–'} | {_cell(entry, 'camera')} | {_cell(entry, 'text')} | {size} |"
        )
    lines += [
        "",
        "## 5. Position encoding",
        "",
        f"Same budget for both: {budgets['motion_module']}.",
        "",
        "| module | motion | smooth |",
        "|---|---|---|",
    ]
    for name in ("transformer", "transformer, no position encoding"):
        entry = modules[name]
        lines.append(f"| {name} | {_cell(entry, 'motion')} | {_cell(entry, 'smooth')} |")
    return "\n".join(lines) + "\n"
