"""The embedded default's training recipe: every dataset and stage, from nothing to the shipped files.

`retrain(folder)` renders the datasets (seeded), writes one training config per stage and runs them in
order with `animatediff train`'s own code, each stage reading the previous stages' results:

    scaffold → vae → text_to_image (base) → text_to_image (shadow_trails: the base fine-tuned)
             → image_finetune (outlined, DreamBooth-style) → image_lora (striped)
             → domain_adapter → motion_module → motion_lora × 2
             → controlnet (edges: Canny edge maps of the shadow-trail images)
             → distill (lcm: a 4-step student of the base with the motion module)
             → sparsectrl (keyframes: an RGB SparseCtrl for the base with the motion module)

The base first learns the motion words from trails drawn in the object's colour, then a short fine-tune
on the same images with the trails in the background's shadow colour teaches it to keep the trail apart
from the silhouette (docs/shapes-model.md); that fine-tuned base is the one shipped, and every later
stage learns from data whose trails are shadow-coloured. The DreamBooth-style stage keeps the base's prior
(DreamBooth's prior preservation, on the base's own last training images), so that the 8 images it learns
its style from do not overwrite what the base drew for every motion word.

Two recipes share that plan: `cpu` fits 2 CPU cores (about 3 h; the shipped models) and `gpu`
is for one GPU (about 15 minutes on an H200, from measured step times), with larger batches, more steps
and more clips. Both autoencoders learn from images in every style (the personalized styles must
survive the latents); the base never sees a style.

Every stage checkpoints as it goes; run it again with `resume=True` after an interruption (or to go on
from one time-limited chunk to the next) and it skips finished stages and continues the current one
from its last checkpoint; a finished stage that learned from another dataset or built on another stage, or
a dataset rendered with other settings (a folder begun with an earlier version of the recipe, or resumed at
another `data_scale`), is refused rather than mixed in. `export` then copies
the results into the package's layout (`models/`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from animatediff.errors import ConfigError
from animatediff.files import atomic_path, check_output, holds_only
from animatediff.shapes.world import IMAGE_SIZE

log = logging.getLogger(__name__)

FRAMES = 16
DATASETS = {  # name: render_dataset arguments; moving objects leave a trail (what tells the base motion words apart)
    "images": dict(kind="images", count=20000, seed=1, trail=True),
    "shadow_images": dict(kind="images", count=20000, seed=1, trail=True, trail_colour="shadow"),  # the same scenes
    "autoencoder": dict(kind="images", count=20000, seed=7, style="any", trail=True),  # plain, outlined, striped
    "clips": dict(kind="clips", count=4000, seed=2, trail=True, trail_colour="shadow"),
    "outlined": dict(kind="images", count=8, seed=3, style="outlined", trail=True, trail_colour="shadow"),
    "striped": dict(kind="images", count=40, seed=4, style="striped", trail=True, trail_colour="shadow"),
    "zoom_in": dict(kind="camera", count=50, seed=5, camera="zooming in"),
    "pan_left": dict(kind="camera", count=50, seed=6, camera="panning left"),
}


@dataclass
class StagePlan:
    name: str
    stage: str
    data: str
    base: str  # a stage name whose result is the base folder, or "scaffold"
    train: dict
    extra: dict = field(default_factory=dict)  # further top-level config fields (paths name stages)
    prior: str | None = None  # a dataset of class images for DreamBooth's prior preservation


def _train(steps: int, batch: int, lr: float, **more) -> dict:
    every = max(1, min(250, steps // 4))
    return {**dict(steps=steps, batch_size=batch, learning_rate=lr, checkpoint_every=every, seed=0), **more}


LCM_STEPS = 300  # enough: the student matches the 25-step teacher (docs/shapes-model.md)
KEYFRAME_STEPS = 1500
SHIPPED_BASE = "shadow_trails"  # the stage whose result is the shipped base, and what every later stage builds on
PLAN = [
    StagePlan(
        "vae",
        "vae",
        "autoencoder",
        "scaffold",
        _train(2500, 32, 1e-3, lr_scheduler="cosine", lr_warmup_steps=50, contrast_weight=8.0),
    ),
    StagePlan(
        "base",
        "text_to_image",
        "images",
        "vae",
        _train(7000, 64, 1e-3, lr_scheduler="cosine", lr_warmup_steps=200, snr_gamma=5.0),
    ),
    StagePlan(
        "shadow_trails",
        "text_to_image",
        "shadow_images",
        "base",
        _train(1500, 64, 3e-4, lr_scheduler="cosine", lr_warmup_steps=50, snr_gamma=5.0),
    ),
    StagePlan("outlined", "image_finetune", "outlined", SHIPPED_BASE, _train(300, 8, 1e-4), prior="shadow_images"),
    StagePlan("striped", "image_lora", "striped", SHIPPED_BASE, _train(400, 16, 1e-3), dict(lora_rank=8)),
    StagePlan("adapter", "domain_adapter", "clips", SHIPPED_BASE, _train(600, 32, 1e-3), dict(lora_rank=16)),
    StagePlan(
        "motion",
        "motion_module",
        "clips",
        SHIPPED_BASE,
        _train(4000, 4, 1e-3, lr_scheduler="cosine", lr_warmup_steps=100, snr_gamma=5.0),
        dict(domain_adapter="adapter", motion_module_version="v3"),
    ),
    StagePlan(
        "zoom_in",
        "motion_lora",
        "zoom_in",
        SHIPPED_BASE,
        _train(300, 4, 1e-3),
        dict(domain_adapter="adapter", motion_module="motion", lora_rank=16),
    ),
    StagePlan(
        "pan_left",
        "motion_lora",
        "pan_left",
        SHIPPED_BASE,
        _train(300, 4, 1e-3),
        dict(domain_adapter="adapter", motion_module="motion", lora_rank=16),
    ),
    StagePlan(
        "edges",
        "controlnet",
        "shadow_images",
        SHIPPED_BASE,
        _train(600, 16, 3e-4, lr_scheduler="cosine", lr_warmup_steps=20),
    ),
    StagePlan(
        "lcm",
        "distill",
        "clips",
        SHIPPED_BASE,
        _train(LCM_STEPS, 4, 1e-4, lr_scheduler="cosine", lr_warmup_steps=50),
        dict(motion_module="motion", lora_rank=32),
    ),
    StagePlan(
        "keyframes",
        "sparsectrl",
        "clips",
        SHIPPED_BASE,
        _train(KEYFRAME_STEPS, 4, 1e-3, lr_scheduler="cosine", lr_warmup_steps=20, loss="v"),
        dict(motion_module="motion"),
    ),
]
PLANS = {plan.name: plan for plan in PLAN}
GPU_DATASETS = {
    **DATASETS,
    "clips": dict(kind="clips", count=8000, seed=2, trail=True, trail_colour="shadow"),
}
GPU_PLAN = [  # sized from seconds per step measured on an H200 (docs/shapes-model.md): about 15 minutes in all
    StagePlan(
        "vae",
        "vae",
        "autoencoder",
        "scaffold",
        _train(
            3000,
            128,
            1e-3,
            lr_scheduler="cosine",
            lr_warmup_steps=100,
            contrast_weight=8.0,
            num_workers=6,
            checkpoint_every=750,
        ),
    ),
    StagePlan(
        "base",
        "text_to_image",
        "images",
        "vae",
        _train(
            2500,
            256,
            1e-3,
            lr_scheduler="cosine",
            lr_warmup_steps=200,
            snr_gamma=5.0,
            num_workers=10,
            checkpoint_every=500,
        ),
    ),
    StagePlan(
        "shadow_trails",
        "text_to_image",
        "shadow_images",
        "base",
        _train(400, 256, 3e-4, lr_scheduler="cosine", lr_warmup_steps=50, snr_gamma=5.0, num_workers=10),
    ),
    PLANS["outlined"],
    PLANS["striped"],  # they learn from 8 and 40 images: more steps would only overfit them
    StagePlan(
        "adapter", "domain_adapter", "clips", SHIPPED_BASE, _train(250, 32, 1e-3, num_workers=14), dict(lora_rank=16)
    ),
    StagePlan(
        "motion",
        "motion_module",
        "clips",
        SHIPPED_BASE,
        _train(
            1200,
            32,
            1e-3,
            lr_scheduler="cosine",
            lr_warmup_steps=100,
            snr_gamma=5.0,
            num_workers=14,
            checkpoint_every=300,
        ),
        dict(domain_adapter="adapter", motion_module_version="v3"),
    ),
    PLANS["zoom_in"],
    PLANS["pan_left"],  # MotionLoRAs: 50 clips each, as in the cpu recipe
    PLANS["edges"],
    PLANS["lcm"],
    PLANS["keyframes"],  # ControlNet, few-step student, SparseCtrl: as in cpu
]
RECIPES = {"cpu": (DATASETS, PLAN), "gpu": (GPU_DATASETS, GPU_PLAN)}


def stage_result(folder: Path, plan: StagePlan) -> Path:
    from animatediff.training.stages import STAGES

    return folder / "runs" / plan.name / STAGES[plan.stage].result_name


def render_datasets(
    folder: Path, data_scale: float | None = 1.0, recipe: str = "cpu", processes: int | None = None
) -> None:
    """Render the recipe's datasets not rendered yet, in up to `processes` processes at once (default: one per
    CPU core). Each dataset is seeded on its own, so the order they are made in changes nothing. A dataset
    rendered with other settings than the recipe's, or at another `data_scale`, is refused (`None`: at any
    scale, for users of a finished folder such as the ablations)."""
    datasets = RECIPES[recipe][0]
    for name in datasets:
        check_data(folder, name, data_scale, recipe)
    data_scale = 1.0 if data_scale is None else data_scale
    names = sorted(
        (name for name in datasets if not _rendered(folder, name)),  # the longest to draw first
        key=lambda name: -datasets[name]["count"] * (1 if datasets[name]["kind"] == "images" else FRAMES),
    )
    processes = min(len(names), processes or os.cpu_count() or 1)
    if processes <= 1 or "fork" not in multiprocessing.get_all_start_methods():  # Windows has no fork
        for name in names:
            render_data(folder, name, data_scale, recipe)
        return
    # forked, not spawned: the workers draw with numpy and PIL and write with PyAV (no torch), and
    # re-importing the package would cost seconds in each
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.starmap(render_data, [(folder, name, data_scale, recipe) for name in names])


def _rendered(folder: Path, name: str) -> bool:
    return (folder / "data" / name / "ground_truth.jsonl").exists()  # written last


def _data_settings(name: str, recipe: str) -> dict:
    return {**RECIPES[recipe][0][name], "size": IMAGE_SIZE, "frames": FRAMES}


def _settings_path(folder: Path, name: str) -> Path:
    return folder / "data" / name / "settings.json"


def check_data(folder: Path, name: str, data_scale: float | None, recipe: str) -> None:
    """Refuse a rendered dataset whose recorded settings are not the recipe's (a folder begun before the
    recipe changed): its stages would learn from other data than the recipe says."""
    path = _settings_path(folder, name)
    if not (_rendered(folder, name) and path.exists()):  # not rendered yet, or before settings were recorded
        return
    recorded = json.loads(path.read_text())
    if recorded["arguments"] != _data_settings(name, recipe):
        what = "other settings than this recipe's"
    elif data_scale not in (None, recorded["data_scale"]):
        what = f"other settings than this recipe's (data_scale {recorded['data_scale']}, not {data_scale})"
    else:
        return
    raise ConfigError(
        f"dataset {name} of {folder} was rendered with {what} (see {path}); retrain into a new "
        f"folder, or remove {path.parent} to render it again."
    )


def render_data(folder: Path, name: str, data_scale: float = 1.0, recipe: str = "cpu") -> None:
    """Render the recipe's dataset `name` into `folder/data/name`, unless it is there already; its settings
    are recorded beside it (`settings.json`) for `check_data`."""
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    if not _rendered(folder, name):
        log.info("rendering dataset %s", name)
        settings = _data_settings(name, recipe)
        path = _settings_path(folder, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps({"arguments": settings, "data_scale": data_scale}, indent=2) + "\n")
        count = max(8, round(settings["count"] * data_scale))
        render_dataset(path.parent, DatasetSpec(**{**settings, "count": count}))


def stage_config(folder: Path, plan: StagePlan) -> dict:
    """The training config of `plan` in `folder`'s run: paths name the folder's data and earlier stages."""
    from animatediff.training.stages import STAGES

    base = folder / "scaffold" if plan.base == "scaffold" else stage_result(folder, PLANS[plan.base])
    config = {
        "stage": plan.stage,
        "output_dir": str(folder / "runs" / plan.name),
        "base": str(base),
        "data": {
            "format": "jsonl",
            "path": str(folder / "data" / plan.data),
            "size": IMAGE_SIZE,
            **({"frames": FRAMES, "stride": 1} if STAGES[plan.stage].clips else {}),
        },
        "train": plan.train,
    }
    if plan.prior is not None:  # the base's own training images keep what it drew apart from the new style
        config["prior_data"] = {"format": "jsonl", "path": str(folder / "data" / plan.prior)}
    for key, value in plan.extra.items():
        config[key] = str(stage_result(folder, PLANS[value])) if value in PLANS else value
    return config


def config_path(folder: Path, plan: StagePlan) -> Path:
    """Where `plan`'s training config is written (and stays, as the record of what the stage trained on)."""
    return folder / "configs" / f"{plan.name}.yaml"


def write_config(folder: Path, plan: StagePlan) -> Path:
    path = config_path(folder, plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(stage_config(folder, plan), sort_keys=False))
    return path


def _inputs(config: dict) -> str:
    """What a stage learned from and built on (all but its training budget), with the run folder's own
    path written as FOLDER, so that a moved folder still compares equal."""
    folder = str(Path(config["output_dir"]).parent.parent)
    return yaml.safe_dump({key: value for key, value in config.items() if key != "train"}).replace(folder, "FOLDER")


def check_inputs(folder: Path, plan: StagePlan) -> None:
    """Refuse a finished stage that learned from another dataset or built on another stage than this recipe
    says (a folder begun before the recipe changed): exporting it would mix two recipes' models."""
    path = config_path(folder, plan)
    if path.exists() and _inputs(yaml.safe_load(path.read_text())) != _inputs(stage_config(folder, plan)):
        raise ConfigError(
            f"stage {plan.name} of {folder} was trained on other inputs than this recipe's "
            f"(see {path}); retrain into a new folder, or remove {folder / 'runs' / plan.name} "
            "to train that stage again."
        )


def run_stage(folder: Path, plan: StagePlan) -> float:
    """Train one stage of `folder`'s run (from its last checkpoint, if any); returns the seconds it took."""
    from animatediff.training.config import load_train_config
    from animatediff.training.trainer import train

    started = time.perf_counter()
    train(load_train_config(write_config(folder, plan)), resume=True)
    return time.perf_counter() - started


def retrain(
    folder: str | os.PathLike,
    resume: bool = False,
    only: list[str] | None = None,
    steps_scale: float = 1.0,
    data_scale: float = 1.0,
    recipe: str = "cpu",
) -> dict[str, float]:
    """Run the recipe (`cpu` or `gpu`) into `folder`; returns the seconds each stage trained in this call.

    `only` runs just the named stages (their inputs must exist); `steps_scale` and `data_scale` shrink
    every stage's step count and every dataset (the CI smoke retrain uses a tiny fraction of both)."""
    from animatediff.shapes.models import scaffold

    folder = Path(folder).absolute()  # the stage configs name their data and bases by absolute paths
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}; got {recipe!r}.")
    if (folder / "runs").exists() and not resume and only is None:
        raise ConfigError(f"{folder} holds an earlier retrain; resume it (--resume) or choose another folder.")
    claim_folder(folder, recipe)
    render_datasets(folder, data_scale, recipe)
    if not (folder / "scaffold").exists():
        scaffold(folder / "scaffold", seed=0)
    seconds = {}
    for plan in RECIPES[recipe][1]:
        if only is not None and plan.name not in only:
            continue
        if stage_result(folder, plan).exists() and only is None:
            check_inputs(folder, plan)
            log.info("stage %s: done already", plan.name)
            continue
        if steps_scale != 1.0:
            scaled = max(1, round(plan.train["steps"] * steps_scale))
            batch = min(plan.train["batch_size"], max(1, round(plan.train["batch_size"] * data_scale)))
            plan = replace(plan, train={**plan.train, "steps": scaled, "checkpoint_every": scaled, "batch_size": batch})
        seconds[plan.name] = run_stage(folder, plan)
        record_time(folder, plan, seconds[plan.name])
        log.info("stage %s: %.0f s", plan.name, seconds[plan.name])
    return seconds


def claim_folder(folder: Path, recipe: str) -> None:
    """Note which recipe `folder` runs; a folder begun with the other recipe is refused (its data differ)."""
    path = folder / "recipe.txt"
    if path.exists() and path.read_text().strip() != recipe:
        raise ConfigError(
            f"{folder} was begun with the {path.read_text().strip()} recipe, not {recipe}; "
            "resume it with that recipe or choose another folder."
        )
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(recipe + "\n")


def folder_recipe(folder: Path) -> str:
    """The recipe `folder` was begun with (`recipe.txt`); folders from before it was written ran the cpu one."""
    path = folder / "recipe.txt"
    return path.read_text().strip() if path.exists() else "cpu"


def record_time(folder: Path, plan: StagePlan, seconds: float) -> None:
    """Add a stage's training time (over all resumed chunks) to `timings.json`."""
    path = folder / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    previous = timings.get(plan.name, {}).get("seconds", 0.0)
    timings[plan.name] = {
        "stage": plan.stage,
        "steps": plan.train["steps"],
        "batch_size": plan.train["batch_size"],
        "seconds": previous + seconds,
    }
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(timings, indent=2) + "\n")


EXPORT = {  # files in the package's models/ folder ← stage results (every weight stored in float16)
    SHIPPED_BASE: "base",
    "outlined": "outlined",
    "striped": "striped.safetensors",
    "adapter": "adapter.safetensors",
    "motion": "motion_module.safetensors",
    "zoom_in": "motion_lora_zoom_in.safetensors",
    "pan_left": "motion_lora_pan_left.safetensors",
    "edges": "controlnet_edges",
    "lcm": "lcm",
    "keyframes": "sparsectrl.safetensors",
}
EXPORTED = holds_only("recipe.json", *EXPORT.values(), *(f"{name}/*" for name in EXPORT.values()))


def _to_half_precision(path: Path) -> None:
    """Rewrite a safetensors file (or every one under a folder) with its float tensors stored as float16:
    half the bytes, and the measured results hold (docs/shapes-model.md)."""
    from safetensors import safe_open

    from animatediff.formats import save_state_dict

    for file in [path] if path.is_file() else path.rglob("*.safetensors"):
        with safe_open(file, "pt") as handle:
            metadata = handle.metadata()
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        tensors = {key: value.half() if value.is_floating_point() else value for key, value in tensors.items()}
        save_state_dict(tensors, file, metadata)


def _drop_build_paths(folder: Path) -> None:
    """Remove the `_name_or_path` diffusers writes into each config: a path on the machine that trained it."""
    for path in folder.rglob("config.json"):
        config = json.loads(path.read_text())
        if config.pop("_name_or_path", None) is not None:
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_export(folder: Path, models: Path) -> None:
    models.mkdir(parents=True)
    for name, destination in EXPORT.items():
        source = stage_result(folder, PLANS[name])
        if source.is_dir():
            shutil.copytree(source, models / destination)
            _drop_build_paths(models / destination)
        else:
            shutil.copyfile(source, models / destination)
        _to_half_precision(models / destination)
    if (folder / "timings.json").exists():
        shutil.copyfile(folder / "timings.json", models / "recipe.json")


def _model_files(models: Path) -> dict[str, bytes]:
    """Every file of an exported models folder but the timings (`recipe.json`), by its path inside."""
    files = (path for path in models.rglob("*") if path.is_file() and path.name != "recipe.json")
    return {path.relative_to(models).as_posix(): path.read_bytes() for path in files}


def export(folder: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy the recipe's results into a models folder laid out as the package ships it.

    A retrain that made the same models (the same recipe and seeds give byte-identical files) leaves the
    target untouched, its timings included, so shipping it again adds nothing to the repository."""
    folder, target = Path(folder), Path(target)
    check_output(target, directory=True, replaceable=EXPORTED)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.staging-", dir=target.parent) as staging:
        staged = Path(staging) / "models"
        _write_export(folder, staged)
        if target.is_dir() and _model_files(staged) == _model_files(target):
            log.info("the models are byte-identical to those in %s: nothing rewritten", target)
            return target
        with atomic_path(target, directory=True, replaceable=EXPORTED) as temporary:
            shutil.copytree(staged, temporary, dirs_exist_ok=True)
    return target
