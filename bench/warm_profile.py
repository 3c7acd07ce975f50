"""Where a warm default clip's time goes: profiles, the UNet call's fixed cost, threads and dtypes in one process.

    python bench/warm_profile.py [--rounds 4] [--threads 1] [--top 15]

The embedded default (seed 1, `--dtype auto`'s dtype), once to warm up, then: `torch.profiler`'s operators by
self CPU time for one clip (`--top` rows, with `record_shapes`, and the same grouped by input shapes); cProfile's
count of Python function calls for one clip; the video UNet's CPU time per call for batches of 1-32 folded
frames, whose intercept is the cost of a call that does not grow with the batch (Python's module calls, hooks,
per-call kernel set-up); then, alternating for `--rounds`, the clip with 1 and 2 threads and in float32 beside
the auto dtype, each clip's wall and CPU time, and whether its uint8 frames equal its dtype's first clip's. CPU time
(this process, every thread) is the figure to compare on a machine that other jobs load; state `uptime`.
"""

from __future__ import annotations

import argparse
import cProfile
import time

from animatediff.cli import wait_passively_when_busy

wait_passively_when_busy()  # as `animatediff generate` starts: before torch loads
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from animatediff.embedded import MODELS  # noqa: E402
from animatediff.loading import ModelSpec, build_pipeline  # noqa: E402
from animatediff.planner import device_and_dtype  # noqa: E402

PROMPT = "a red circle moving right on a blue background"
BATCHES = ((1, 1), (2, 2), (1, 16), (2, 16))  # (clips, frames) per UNet call; the last is the default's CFG batch


def timed(function, *arguments, **keywords) -> tuple[float, float, object]:
    """Wall and process CPU seconds of `function(*arguments, **keywords)`, and what it returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*arguments, **keywords)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def unet_calls(unet, latents: torch.Tensor, text: torch.Tensor, count: int = 5) -> None:
    for _ in range(count):
        unet(latents, torch.tensor(500), text)


def operator_profile(pipeline, top: int) -> None:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as run:
        pipeline(PROMPT, num_frames=16, seed=1, progress=False)
    print(run.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    print(run.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=top))
    python = cProfile.Profile()
    python.runcall(pipeline, PROMPT, num_frames=16, seed=1, progress=False)
    print(f"cProfile: {sum(calls for _, calls, *_ in python.getstats())} Python function calls in one clip")


def unet_call_costs(pipeline) -> None:
    """CPU time of one video UNet call for each of `BATCHES` (best of 3 × 5 calls), and the fixed part."""
    text = pipeline.text_states(pipeline.sample(PROMPT, num_frames=16, seed=1))
    size = pipeline.default_size // pipeline.vae_scale_factor
    costs = {}
    with torch.no_grad():
        for clips, frames in BATCHES:
            latents = torch.randn(clips, 4, frames, size, size)
            unet_calls(pipeline.unet, latents, text[:clips], count=1)
            runs = [timed(unet_calls, pipeline.unet, latents, text[:clips])[1] / 5 for _ in range(3)]
            costs[clips * frames] = min(runs)
            print(f"UNet call, {clips} clip(s) × {frames} frame(s): {costs[clips * frames] * 1000:.1f} ms CPU")
    (small, low), (large, high) = min(costs.items()), max(costs.items())
    slope = (high - low) / (large - small)
    fixed = low - slope * small
    print(f"fixed part of a call: {fixed * 1000:.1f} ms ({fixed / high:.0%} of the default's call)")


def alternating(pipelines: dict, rounds: int) -> None:
    """Each (threads, dtype) in turn, `rounds` times: wall and CPU seconds, frames against the dtype's first clip."""
    first, times = {}, {key: [] for key in pipelines}
    for _ in range(rounds):
        for (threads, dtype), pipeline in pipelines.items():
            torch.set_num_threads(threads)
            wall, cpu, frames = timed(pipeline, PROMPT, num_frames=16, seed=1, progress=False)
            times[threads, dtype].append((wall, cpu))
            first.setdefault(dtype, frames)
            same = "the same frames" if (frames == first[dtype]).all() else "other frames"
            print(f"{threads} thread(s), {dtype}: {wall:.2f} s wall, {cpu:.2f} s CPU, {same}", flush=True)
    for (threads, dtype), rows in times.items():
        wall, cpu = min(w for w, _ in rows), min(c for _, c in rows)
        print(f"{threads} thread(s), {dtype}: best {wall:.2f} s wall, {cpu:.2f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="for the profiles and the UNet calls")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    _, auto, _ = device_and_dtype("cpu", "auto")
    spec = ModelSpec(MODELS["shapes"].path, MODELS["shapes-motion"].path)
    pipelines = {dtype: build_pipeline(spec, dtype=getattr(torch, dtype)) for dtype in dict.fromkeys((auto, "float32"))}
    torch.set_num_threads(args.threads)
    pipeline = pipelines[auto]
    pipeline(PROMPT, num_frames=16, seed=1, progress=False)
    print(f"{auto} (auto), {args.threads} thread(s)")
    operator_profile(pipeline, args.top)
    unet_call_costs(pipeline)
    runs = {(threads, auto): pipeline for threads in (1, 2)} | {(1, "float32"): pipelines["float32"]}
    alternating(runs, args.rounds)


if __name__ == "__main__":
    main()
