"""The web app's warm path: how long its API takes to answer a default clip once its models are loaded.

    python bench/app_warm.py [--clips 3] [--threads N] [--fast] [--poll SECONDS] [--profile]

The API (`create_app`, without the page) behind FastAPI's TestClient, as `animatediff serve` runs it: one
default clip (the embedded default, 16 frames, 25 steps, a GIF) to load the models, then `--clips` more with
other seeds. Each clip's time runs from the POST to the answer saying done: by default one
`GET /api/jobs/{id}?wait=600`, which the app answers when the job finishes; with `--poll S` the client asks
again every S seconds instead (10 ms: what this bench did before the API could wait). The time is split into the
request's planning (the POST) and the job's own run, which is set beside the pipeline's generation alone (the
same clip, no HTTP, no writing; run afterwards in the app's worker thread, where the jobs run: a generation in
another thread would give OpenMP a second team of threads, and libgomp then spins less in the worker's, which
slows its clips by about 1.5× on 2 cores) and the 1.5 s target. `--fast` asks every clip with the `--fast`
preset (the pipeline alone with the same settings). `--profile` runs one more clip under cProfile in the worker
and splits the job's time into the stages it spends it in: the text encoder, the denoising steps (UNet with its
motion modules), the VAE decode, writing the GIF and its sidecar, and the rest (planning the run, the job
records). Like `animatediff serve`, it sets OpenMP's passive wait policy first when the CPU is busy
(`cli.busy_cpu_wait_policy`); the line "OMP_WAIT_POLICY" says which policy ran.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from animatediff.cli import wait_passively_when_busy

wait_passively_when_busy()  # as `animatediff serve` starts: before torch loads
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from animatediff.app.server import ServerOptions, create_app  # noqa: E402
from animatediff.planner import speed_settings  # noqa: E402
from animatediff.request import Request  # noqa: E402

PROMPT = "a red circle moving right on a blue background"
TARGET_SECONDS = 1.5


def one_clip(client: TestClient, seed: int, fast: bool = False, poll: float | None = None) -> dict:
    """A default clip through the API: the POST's time, the job's run, the whole (waiting for the answer, or
    asking every `poll` seconds)."""
    started, cpu = time.perf_counter(), process_cpu()
    asked = {"prompt": PROMPT, "seed": seed, "format": "gif"} | ({"fast": True} if fast else {})
    answer = client.post("/api/generate", json=asked)
    posted = time.perf_counter()
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    if poll is None:
        record = client.get(f"/api/jobs/{job_id}", params={"wait": 600}).json()
    else:
        while (record := client.get(f"/api/jobs/{job_id}").json())["state"] not in ("done", "failed"):
            time.sleep(poll)
    done = time.perf_counter()
    assert record["state"] == "done", record["error"]
    run = record["finished"] - record["started"]
    return {"post": posted - started, "run": run, "whole": done - started, "cpu": process_cpu() - cpu}


def process_cpu() -> float:
    """This process's CPU time so far (user + system, every thread)."""
    times = os.times()
    return times.user + times.system


def generation_alone(client: TestClient, app, seed: int, fast: bool = False) -> float:
    """The loaded pipeline's time for the same clip in the app's worker thread: text, denoising, decoding."""
    state = app.state.animatediff
    maker, run, seconds = next(iter(state.makers.values())), state.jobs.run, []
    speed = speed_settings(Request(prompt=PROMPT, fast=fast))

    def alone(*_) -> None:
        started = time.perf_counter()
        maker.pipeline(PROMPT, num_frames=16, seed=seed, progress=False, **speed)
        seconds.append(time.perf_counter() - started)

    state.jobs.run = alone
    try:
        answer = client.post("/api/generate", json={"prompt": PROMPT, "seed": seed, "format": "gif"})
        state.jobs.wait(answer.json()["id"], 600)  # in this thread: nothing of the API's runs meanwhile
    finally:
        state.jobs.run = run
    return seconds[0]


STAGES = {  # (file ending, function name) → stage; cumulative times, none of them inside another
    ("prompting.py", "encode_prompts"): "text encoder",
    ("pipeline.py", "denoise"): "denoising steps",
    ("pipeline.py", "decode"): "VAE decode",
    ("export.py", "write_video"): "writing the GIF and sidecar",
}


def profiled_clip(client: TestClient, app, seed: int, fast: bool = False) -> None:
    """One more clip with the worker's job under cProfile: its time by stage."""
    state = app.state.animatediff
    run, profile = state.jobs.run, cProfile.Profile()
    state.jobs.run = lambda *arguments: profile.runcall(run, *arguments)
    try:
        row = one_clip(client, seed, fast)
    finally:
        state.jobs.run = run
    stats = pstats.Stats(profile).stats
    spent = {stage: 0.0 for stage in STAGES.values()}
    for (file, _, function), (_, _, _, cumulative, _) in stats.items():
        stage = STAGES.get((file.rsplit("/", 1)[-1], function))
        if stage is not None:
            spent[stage] += cumulative
    spent["the rest"] = row["run"] - sum(spent.values())
    print(
        f"seed {seed} under cProfile: job {row['run']:.2f} s; "
        + ", ".join(f"{stage} {seconds:.2f} s ({seconds / row['run']:.0%})" for stage, seconds in spent.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help="one more clip, its job's time by stage")
    parser.add_argument("--fast", action="store_true", help="every clip with the --fast preset")
    parser.add_argument("--poll", type=float, help="ask for the job's state every POLL seconds instead of waiting")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"OMP_WAIT_POLICY: {os.environ.get('OMP_WAIT_POLICY', 'unset (torch default)')}")
    with tempfile.TemporaryDirectory() as outputs:
        app = create_app(ServerOptions(outputs=Path(outputs)), page=False)
        with TestClient(app) as client:
            cold = one_clip(client, seed=1)
            print(f"first clip (loads the models): {cold['whole']:.2f} s, process CPU {cold['cpu']:.2f} s")
            seeds = range(2, 2 + args.clips)
            warm = [one_clip(client, seed, args.fast, args.poll) for seed in seeds]
            alones = [generation_alone(client, app, seed, args.fast) for seed in seeds]
            for seed, row, alone in zip(seeds, warm, alones, strict=True):
                print(
                    f"seed {seed}: {row['whole']:.2f} s from the POST to done (POST {row['post'] * 1000:.0f} ms, "
                    f"job {row['run']:.2f} s, process CPU {row['cpu']:.2f} s; the pipeline alone {alone:.2f} s, "
                    f"{row['run'] / alone:.2f}×)"
                )
            if args.profile:
                profiled_clip(client, app, 2 + args.clips, args.fast)
    best = min(warm, key=lambda row: row["whole"])
    print(
        f"warm{' with --fast' if args.fast else ''}, best of {args.clips} ({torch.get_num_threads()} threads, "
        f"{'a waiting request' if args.poll is None else f'asking every {args.poll * 1000:.0f} ms'}): "
        f"{best['whole']:.2f} s; target ≤ "
        f"{TARGET_SECONDS} s: {'met' if best['whole'] <= TARGET_SECONDS else 'NOT met'} "
        f"({best['whole'] / TARGET_SECONDS:.2f}× the target)"
    )


if __name__ == "__main__":
    main()
