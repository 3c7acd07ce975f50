"""The web app's clips against OpenMP's wait policy: wall and process CPU time of each step of a sequence.

    python bench/app_wait_policy.py clip clip clip alone clip clip
    OMP_WAIT_POLICY=PASSIVE python bench/app_wait_policy.py clip clip clip alone clip clip

`clip`: a default clip through the API (`create_app` behind FastAPI's TestClient, polled every 10 ms; the
first loads the models in the worker thread); `clip:S` polls every S seconds; `alone`: the same clip by the
loaded pipeline in the main thread. Each line gives the wall time, the process's CPU time (user + system,
every thread) and the load average. On a busy CPU, OpenMP threads spinning at their barriers show as CPU
time far above the main thread's for the same clip (bench/RESULTS.md, "The first command").
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from animatediff.app.server import ServerOptions, create_app

PROMPT = "a red circle moving right on a blue background"


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def api_clip(client: TestClient, poll: float) -> None:
    job = client.post("/api/generate", json={"prompt": PROMPT, "seed": 2, "format": "gif"}).json()["id"]
    while client.get(f"/api/jobs/{job}").json()["state"] not in ("done", "failed"):
        time.sleep(poll)


def main() -> None:
    with tempfile.TemporaryDirectory() as outputs:
        app = create_app(ServerOptions(outputs=Path(outputs)), page=False)
        with TestClient(app) as client:
            for step in sys.argv[1:]:
                kind, _, poll = step.partition(":")
                wall, used = time.perf_counter(), cpu()
                if kind == "clip":
                    api_clip(client, float(poll or 0.01))
                else:
                    maker = next(iter(app.state.animatediff.makers.values()))
                    maker.pipeline(PROMPT, num_frames=16, seed=2, progress=False)
                wall, used = time.perf_counter() - wall, cpu() - used
                print(f"{step}: wall {wall:.2f} s, CPU {used:.2f} s, load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
