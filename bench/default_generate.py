"""Time the first thing a new user runs: `animatediff generate PROMPT -o out.gif` on the embedded default.

    python bench/default_generate.py [--runs 3]

Runs the command as a user would (a fresh process: imports, loading the shipped weights, 16 frames,
25 DDIM steps with guidance, writing the GIF) and reports the wall time of each run against the
4-second target. Alternating with it, the same command through `cli.main` with Python's normal
teardown at exit (what the program skips after a finished generate), for the time that saves; then
one run split into imports, loading and generation in this process. `--also-module NAME` times the same
command with that motion module in turn with the default (e.g. `shapes-lcm`: 4 LCM steps without
guidance, against 25 DDIM steps with it) and prints the ratio; `--also-fast` the same with `--fast`.

`--imports` times, instead, what the command imports against what it cannot do without, each in fresh
processes (best of `--runs`, alternating): torch alone; the narrowest modules of the dependencies that
serve the default (diffusers' `unet_2d_condition`, `autoencoder_kl` and `scheduling_ddim` modules,
transformers' CLIP text model and tokenizer); the same with peft, scipy and jinja2 hidden from the libraries'
availability checks (what they cost the default, which uses none of them; the package does not do this, as it
would take LoRA loading and scipy's samplers from the process); and the package's modules as `generate`
imports them. Each row gives its wall time and its CPU time (user + system: imports run on one thread, so this
is what they take on an idle core, and it moves less with other jobs' load). Then the command's `python -X
importtime` profile: each package's own import time summed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red circle moving right on a blue background"
TARGET_SECONDS = 4.0


TEARDOWN = "import sys; from animatediff.cli import main; sys.exit(main(sys.argv[1:]))"
IMPORTS = {
    "torch alone": "import torch",
    "the dependencies' narrowest modules": (
        "from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel\n"
        "from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL\n"
        "from diffusers.schedulers.scheduling_ddim import DDIMScheduler\n"
        "from transformers import CLIPTextModel, CLIPTokenizer\n"
        "CLIPTextModel, CLIPTokenizer  # transformers' lazy module imports them here"
    ),
    "the same, peft, scipy and jinja2 hidden": (
        "import sys\nsys.modules.update(dict.fromkeys(('peft', 'scipy', 'jinja2')))  # find_spec: not installed\n"
    ),
    "the command's imports": "import animatediff.cli, animatediff.generation, animatediff.export",
}
IMPORTS["the same, peft, scipy and jinja2 hidden"] += IMPORTS["the dependencies' narrowest modules"]


def wall_time(command: list[str]) -> float:
    return timed(command)[0]


def timed(command: list[str]) -> tuple[float, float]:
    """The command's wall time and its CPU time (user + system, its children included)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def import_profile(runs: int) -> None:
    """Fresh processes' wall time for each of `IMPORTS` (best of `runs`), then the command's import profile."""
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for _ in range(runs):
        for name, code in IMPORTS.items():
            seconds, used = timed([sys.executable, "-c", code])
            best[name] = min(best.get(name, seconds), seconds)
            cpu[name] = min(cpu.get(name, used), used)
    floor, cpu_floor = best["the dependencies' narrowest modules"], cpu["the dependencies' narrowest modules"]
    for name, seconds in best.items():
        print(
            f"{name}: {seconds:.2f} s wall ({seconds / floor:.2f}× the narrowest modules), "
            f"{cpu[name]:.2f} s CPU ({cpu[name] / cpu_floor:.2f}×)"
        )
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-X", "importtime", "-m", "animatediff", "generate", PROMPT, "-o"]
        profile = subprocess.run([*command, str(Path(folder) / "out.gif")], capture_output=True, text=True).stderr
    own: dict[str, float] = {}
    for line in profile.splitlines()[1:]:
        if line.startswith("import time:"):
            self_time, _, name = line.removeprefix("import time:").split("|")
            package = name.strip().split(".")[0]
            if name.strip().startswith("torch._dynamo") or package == "sympy":
                package = "torch._dynamo (with sympy)"
            own[package] = own.get(package, 0.0) + int(self_time) / 1e6
    print(f"python -X importtime, the command: {sum(own.values()):.2f} s of imports; by package (own time):")
    for package, seconds in sorted(own.items(), key=lambda item: -item[1])[:12]:
        print(f"  {package}: {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--imports", action="store_true", help="time the imports against the dependencies' own")
    parser.add_argument("--also-module", metavar="NAME", help="time the command with this motion module too")
    parser.add_argument(
        "--also-dtype",
        metavar="DTYPE",
        help="time the command with --dtype DTYPE too (e.g. float32 beside auto's bfloat16)",
    )
    parser.add_argument("--also-fast", action="store_true", help="time the command with --fast too")
    args = parser.parse_args()
    if args.imports:
        import_profile(args.runs)
        return
    walls, torn_down, also = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            arguments = ["generate", PROMPT, "-o", str(Path(folder) / f"out-{run}.gif"), "--seed", "1"]
            walls.append(wall_time([sys.executable, "-m", "animatediff", *arguments]))
            torn_down.append(wall_time([sys.executable, "-c", TEARDOWN, *arguments]))
            print(f"run {run + 1}: {walls[-1]:.2f} s wall (whole command); {torn_down[-1]:.2f} s with the teardown")
            extra = ["--motion-module", args.also_module] * bool(args.also_module)
            extra += ["--dtype", args.also_dtype] * bool(args.also_dtype)
            extra += ["--fast"] * args.also_fast
            if extra:
                also.append(wall_time([sys.executable, "-m", "animatediff", *arguments, *extra]))
                print(f"run {run + 1}: {also[-1]:.2f} s wall with {' '.join(extra)}")
    if also:
        print(
            f"{' '.join(extra)}: best {min(also):.2f} s against {min(walls):.2f} s "
            f"({min(also) / min(walls):.2f}× the default command)"
        )
    best = min(walls)
    print(
        f"best {best:.2f} s, median {sorted(walls)[len(walls) // 2]:.2f} s; target ≤ {TARGET_SECONDS:.0f} s: "
        f"{'met' if best <= TARGET_SECONDS else 'NOT met'} ({best / TARGET_SECONDS:.2f}× the target); "
        f"with Python's teardown best {min(torn_down):.2f} s ({best / min(torn_down):.2f}×)"
    )

    started = time.perf_counter()
    import torch

    from animatediff.embedded import MODELS
    from animatediff.loading import ModelSpec, build_pipeline
    from animatediff.planner import device_and_dtype

    imported = time.perf_counter()
    _, dtype, _ = device_and_dtype("cpu", "auto")  # as the command's --dtype auto
    pipeline = build_pipeline(
        ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path), dtype=getattr(torch, dtype)
    )
    loaded = time.perf_counter()
    pipeline(PROMPT, num_frames=16, seed=1, progress=False)
    generated = time.perf_counter()
    print(
        f"in one process ({torch.get_num_threads()} threads, {dtype}): imports {imported - started:.2f} s, "
        f"loading {loaded - imported:.2f} s, generation {generated - loaded:.2f} s"
    )


if __name__ == "__main__":
    main()
