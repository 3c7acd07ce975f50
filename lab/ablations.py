"""`animatediff shapes ablations`: the paper's claims as numbers on the shapes world.

Runs on a finished retrain folder (its base, domain adapter and motion module) and writes a JSON of
tables that `animatediff shapes results` renders into docs/results.md:

1. transfer without tuning: the embedded-model rows of the results table (base with and without the
   motion module, personalized models with it);
2. domain adapter: the shipped motion module with the adapter merged at α ∈ {0, 0.5, 1}, and two
   motion modules trained with the same short budget, with and without the adapter;
3. motion module design: temporal transformer vs 1-D temporal convolution, same short budget;
4. MotionLoRA: rank ∈ {2, 8, 32} × reference clips ∈ {5, 20, 50} for one camera motion;
5. position encoding: the transformer with and without the sinusoidal table, same short budget.

The arms of one table share a training budget (steps × batch), stated with the table; it is smaller
than the shipped model's (compute), and the shipped module appears beside them for scale.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from animatediff.errors import ConfigError
from animatediff.files import atomic_path
from animatediff.formats import load_motion_module
from animatediff.settings import ModelSpec
from animatediff.shapes.recipe import (
    FRAMES,
    PLANS,
    RECIPES,
    SHIPPED_BASE,
    StagePlan,
    folder_recipe,
    render_datasets,
    run_stage,
    stage_result,
)
from animatediff.shapes.world import IMAGE_SIZE
from lab.report import (  # noqa: F401 (format_ablations: the tables' markdown, used with them)
    TABLES,
    Row,
    camera_prompts,
    evaluate_row,
    format_ablations,
    held_out_prompts,
    measured_models,
)

MODULE_STEPS, MODULE_BATCH = 1000, 4
LORA_STEPS, LORA_BATCH = 100, 4
RANKS = (2, 8, 32)
CLIP_COUNTS = (5, 20, 50)
LORA_CAMERA = "zooming in"
# the models each table's numbers depend on: its arms train on them, or it evaluates them
USES = {
    "modules": ("base", "adapter"),
    "adapter": ("base", "adapter", "motion_module"),
    "motion_lora": ("base", "adapter", "motion_module"),
}


@dataclass
class Arm:
    name: str
    plan: StagePlan
    extra: dict = field(default_factory=dict)


def _scaled(steps: int, steps_scale: float) -> int:
    return max(1, round(steps * steps_scale))


def module_arms(steps_scale: float = 1.0) -> list[Arm]:
    """Short-budget motion modules: the reference and one change each."""
    reference = PLANS["motion"]
    steps = _scaled(MODULE_STEPS, steps_scale)
    train = {
        **reference.train,
        "steps": steps,
        "batch_size": MODULE_BATCH,
        "checkpoint_every": min(200, steps),
        "lr_warmup_steps": min(50, steps),
    }
    variants = {
        "transformer": {},
        "transformer, no adapter": {"domain_adapter": None},
        "convolution": {"motion_module_kind": "convolution"},
        "transformer, no position encoding": {"position_encoding": False},
    }
    arms = []
    for name, change in variants.items():
        extra = {key: value for key, value in {**reference.extra, **change}.items() if value is not None}
        slug = "ablation-" + name.replace(", ", "-").replace(" ", "-")
        arms.append(Arm(name, StagePlan(slug, "motion_module", "clips", SHIPPED_BASE, train, extra)))
    return arms


def lora_arms(steps_scale: float = 1.0) -> list[Arm]:
    reference = PLANS["zoom_in"]
    steps = _scaled(LORA_STEPS, steps_scale)
    arms = []
    for clips in CLIP_COUNTS:
        for rank in RANKS:
            train = {**reference.train, "steps": steps, "batch_size": LORA_BATCH, "checkpoint_every": steps}
            extra = {**reference.extra, "lora_rank": rank}
            name = f"ablation-lora-r{rank}-n{clips}"
            plan = StagePlan(name, "motion_lora", f"zoom_in_{clips}", SHIPPED_BASE, train, extra)
            arms.append(Arm(f"rank {rank}, {clips} clips", plan, extra={"rank": rank, "clips": clips}))
    return arms


def table_budgets(recipe: str, steps_scale: float = 1.0) -> dict[str, str]:
    """The training budgets the tables state: the arms' own, and the shipped module's under `recipe`."""
    shipped = next(plan for plan in RECIPES[recipe][1] if plan.name == "motion").train
    module, lora = _scaled(MODULE_STEPS, steps_scale), _scaled(LORA_STEPS, steps_scale)
    return {
        "motion_module": f"{module} steps × {MODULE_BATCH} clips of {FRAMES} frames",
        "shipped_motion_module": f"{shipped['steps']} steps × {shipped['batch_size']} clips",
        "motion_lora": f"{lora} steps × {LORA_BATCH} clips",
    }


def _own_budgets(budgets: dict) -> dict:
    """What the arms were made with: the shipped module's budget is only stated beside them, and a new
    shipped module is a new fingerprint, which the tables that use it check on their own."""
    return {key: value for key, value in budgets.items() if key != "shipped_motion_module"}


def _train(folder: Path, arm: Arm, trained_on: list[str | None]) -> Path:
    """The arm's result, trained unless there. Each set of input models (`trained_on`, fingerprints) gets
    its own run folder, so arms made on an earlier retrain's models are kept but never reused."""
    key = hashlib.sha256(" ".join(map(str, trained_on)).encode()).hexdigest()[:8]
    plan = replace(arm.plan, name=f"{arm.plan.name}-{key}")
    result = stage_result(folder, plan)
    if not result.exists():
        run_stage(folder, plan)
    return result


def _render_lora_sets(folder: Path) -> None:
    from animatediff.shapes.datasets import DatasetSpec, render_dataset

    for clips in CLIP_COUNTS:  # the first N clips of the shipped MotionLoRA's own set (same seed)
        target = folder / "data" / f"zoom_in_{clips}"
        if not (target / "ground_truth.jsonl").exists():
            spec = DatasetSpec(kind="camera", count=clips, seed=5, size=IMAGE_SIZE, frames=FRAMES, camera=LORA_CAMERA)
            render_dataset(target, spec)


def _scores(row: Row) -> dict:
    return {metric: [round(mean, 4), round(spread, 4)] for metric, (mean, spread) in row.scores.items()}


def _module_table(folder: Path, arms: list[Arm], base: Path, trained_on: list[str | None], evaluate) -> list[dict]:
    modules = []
    for arm in arms:
        path = _train(folder, arm, trained_on)
        parameters = sum(p.numel() for p in load_motion_module(path).parameters())
        row = evaluate(held_out_prompts(), ModelSpec(base, path))
        modules.append({"arm": arm.name, "parameters": parameters, **_scores(row)})
    return modules


def _adapter_table(base: Path, adapter: Path, shipped: Path, modules: list[dict], evaluate) -> list[dict]:
    rows = []
    for alpha in (0.0, 0.5, 1.0):
        spec = ModelSpec(base, shipped, domain_adapter=adapter, domain_adapter_scale=alpha)
        rows.append({"arm": f"shipped module, adapter α = {alpha}", **_scores(evaluate(held_out_prompts(), spec))})
    for entry in modules:
        if entry["arm"] in ("transformer", "transformer, no adapter"):
            rows.append({**entry, "arm": f"{entry['arm']} (short budget), α = 0"})
    return rows


def _lora_table(
    folder: Path, arms: list[Arm], models: tuple[Path, Path], trained_on: list[str | None], evaluate
) -> list[dict]:
    """`models`: the base and the shipped motion module the MotionLoRAs adapt."""
    base, shipped = models
    without = evaluate(camera_prompts(LORA_CAMERA), ModelSpec(base, shipped))
    loras = [{"arm": "no MotionLoRA", "rank": 0, "clips": 0, "bytes": 0, **_scores(without)}]
    for arm in arms:
        path = _train(folder, arm, trained_on)
        row = evaluate(camera_prompts(LORA_CAMERA), ModelSpec(base, shipped, motion_loras=[(path, 1.0)]))
        loras.append({"arm": arm.name, **arm.extra, "bytes": path.stat().st_size, **_scores(row)})
    return loras


def run_ablations(
    folder: str | os.PathLike,
    output: str | os.PathLike,
    seeds: list[int],
    steps: int = 25,
    max_prompts: int | None = None,
    only: list[str] | None = None,
    steps_scale: float = 1.0,
) -> Path:
    """Train every arm and evaluate it; write the tables as JSON, each as soon as it is done.

    Resumable: finished arms are kept, and a table already in `output` (made with the same budgets and
    seeds, on the same models of those it `USES`) is not made again: a new shipped motion module remakes
    only the tables that use it.
    `only` makes just the named tables (`modules`, `adapter`, `motion_lora`; the module table needs no
    shipped motion module, so it can run while that still trains). `steps` (sampling) and `max_prompts`
    shrink the evaluation, and `steps_scale` every arm's training, for smoke runs."""
    folder, output = Path(folder).absolute(), Path(output)
    unknown = sorted(set(only or ()) - set(TABLES))
    if unknown:
        raise ConfigError(f"--only {' '.join(unknown)}: no such table; the tables are {', '.join(TABLES)}.")

    def evaluate(prompts: list[str], spec: ModelSpec) -> Row:
        return evaluate_row(Row("", "", prompts, spec=spec), seeds, steps=steps, max_prompts=max_prompts)

    recipe = folder_recipe(folder)
    render_datasets(folder, data_scale=None, recipe=recipe)  # the retrain's own scale
    _render_lora_sets(folder)
    base, adapter = stage_result(folder, PLANS[SHIPPED_BASE]), stage_result(folder, PLANS["adapter"])
    shipped = stage_result(folder, PLANS["motion"])
    budgets = {**table_budgets(recipe, steps_scale), "seeds": seeds, "sampling_steps": steps, "prompts": max_prompts}
    models = measured_models(base, adapter, shipped)
    earlier = json.loads(output.read_text()) if output.exists() else {}
    if _own_budgets(earlier.get("budgets", {})) != _own_budgets(budgets):
        earlier = {}
    measured_on = earlier.get("models", {})
    tables = {"budgets": budgets, "models": models}
    tables |= {
        name: earlier[name]
        for name in TABLES  # kept while the models it depends on are the same
        if name in earlier and all(measured_on.get(model) == models[model] for model in USES[name])
    }
    uses = {name: [models[model] for model in USES[name]] for name in TABLES}
    makers = {
        "modules": lambda: _module_table(folder, module_arms(steps_scale), base, uses["modules"], evaluate),
        "adapter": lambda: _adapter_table(base, adapter, shipped, tables["modules"], evaluate),
        "motion_lora": lambda: _lora_table(
            folder, lora_arms(steps_scale), (base, shipped), uses["motion_lora"], evaluate
        ),
    }
    for name in TABLES:
        if name in tables or (only is not None and name not in only):
            continue
        tables[name] = makers[name]()
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output) as temporary:
            temporary.write_text(json.dumps(tables, indent=2) + "\n")
    return output
