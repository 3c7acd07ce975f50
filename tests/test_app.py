"""The HTTP API (`animatediff serve`): the round trip on the embedded model, the queue under 20 concurrent
requests, limits, and requests that try to reach files outside the app's folders."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from animatediff.app.requests import Limits
from animatediff.app.server import ServerOptions, create_app
from animatediff.cli import main

SMALL = {
    "prompt": "a red circle moving right on a blue background",
    "frames": 4,
    "steps": 2,
    "seed": 3,
    "format": "gif",
}


def wait(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    """The job's record once it has finished: one request that the app answers when the job is done or failed."""
    record = client.get(f"/api/jobs/{job_id}", params={"wait": timeout}).json()
    assert record["state"] in ("done", "failed"), f"job {job_id} did not finish in {timeout} s"
    return record


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("outputs")
    options = ServerOptions(outputs=outputs, limits=Limits(frames=8, size=64, steps=4), capacity=4)
    app = create_app(options, page=False)
    with TestClient(app) as client:
        client.outputs = outputs
        yield client


def test_a_job_goes_from_request_to_video_and_settings(client):
    answer = client.post("/api/generate", json=SMALL)
    assert answer.status_code == 202
    job_id = answer.json()["id"]
    record = wait(client, job_id)
    assert record["state"] == "done" and record["progress"] == 1.0 and record["error"] is None
    video = client.get(f"/api/jobs/{job_id}/video")
    assert video.status_code == 200 and video.content[:6] == b"GIF89a"
    settings = client.get(f"/api/jobs/{job_id}/settings").json()
    assert (settings["seed"], settings["frames"], settings["steps"], settings["prompt"]) == (3, 4, 2, SMALL["prompt"])
    assert settings["motion_module"].endswith("motion_module.safetensors")
    saved = json.loads((client.outputs / f"{job_id}.job.json").read_text())
    assert saved["state"] == "done" and saved["settings"]["seed"] == 3
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    schema = client.get("/openapi.json").json()
    assert "/api/generate" in schema["paths"] and "/api/jobs/{job_id}/video" in schema["paths"]


def test_the_same_request_makes_the_same_frames_as_the_command_line(client, tmp_path):
    job_id = client.post("/api/generate", json={**SMALL, "format": "webp"}).json()["id"]
    assert wait(client, job_id)["state"] == "done"
    assert (
        main(
            [
                "generate",
                SMALL["prompt"],
                "--frames",
                "4",
                "--steps",
                "2",
                "--seed",
                "3",
                "-o",
                str(tmp_path / "cli.webp"),
            ]
        )
        == 0
    )
    from animatediff import read_video

    assert (read_video(client.outputs / f"{job_id}.webp") == read_video(tmp_path / "cli.webp")).all()


def test_twenty_concurrent_requests_are_all_done_or_refused_with_429(client):
    def post(seed):
        return client.post("/api/generate", json={**SMALL, "seed": seed, "frames": 2, "steps": 1})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {202, 429} and codes.count(202) >= 4 and 429 in codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "queue is full" in refused.text and refused.headers["content-type"].startswith("text/plain")
    records = [wait(client, answer.json()["id"]) for answer in answers if answer.status_code == 202]
    assert all(record["state"] == "done" for record in records)  # none accepted was lost


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"frames": 9}, "frames"),
        ({"width": 128}, "width"),
        ({"steps": 0}, "steps"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"guidance_scale": 80}, "guidance_scale"),
        ({"prompt_map": {"12": "a blue square"}}, "prompt_map"),
        ({"fps": -1}, "fps"),
        ({"format": "exe"}, "format"),
        ({"unknown": 1}, "unknown"),
        ({"steps": None}, "steps"),  # the family's 25 is above this app's limit of 4
        ({"upscale": 4}, "upscale"),  # 64² × 4 is above twice this app's size limit
    ],
)
def test_values_out_of_bounds_answer_422_naming_the_field(client, change, field):
    answer = client.post("/api/generate", json={**SMALL, **change})
    assert answer.status_code == 422
    assert any(field in map(str, item["loc"]) for item in answer.json()["detail"]), answer.json()


@pytest.mark.parametrize(
    "change",
    [
        {"base": "../x"},
        {"base": "/etc"},
        {"motion_module": "../../src/animatediff/embedded/shapes/motion_module.safetensors"},
        {"loras": [{"name": "/etc/passwd"}]},
        {"dreambooth": "shapes-outlined/../../x"},
        {"motion_loras": [{"name": "shapes-striped"}]},  # a name, but of another kind
        {"upscale": 2, "upscaler": "/etc/passwd"},  # the app names no upscaler files
    ],
)
def test_model_names_not_in_the_lists_answer_404(client, change):
    answer = client.post("/api/generate", json={**SMALL, **change})
    assert answer.status_code == 404 and "not one of the models this app offers" in answer.text


def test_a_failing_job_keeps_its_error_and_settings(client, monkeypatch):
    state = client.app.state.animatediff
    original = state.makers["cpu"].make

    def broken(settings, on_step=None):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(state.makers["cpu"], "make", broken)
    job_id = client.post("/api/generate", json=SMALL).json()["id"]
    record = wait(client, job_id)
    monkeypatch.setattr(state.makers["cpu"], "make", original)
    assert record["state"] == "failed" and "out of memory (simulated)" in record["error"]
    assert record["settings"]["seed"] == 3
    assert client.get(f"/api/jobs/{job_id}/video").status_code == 409


def test_a_wait_answers_when_the_job_finishes_or_when_the_time_is_up(client, monkeypatch):
    state = client.app.state.animatediff
    release, original = threading.Event(), state.makers["cpu"].make

    def held(settings, on_step=None):
        release.wait(60)
        return original(settings, on_step=on_step)

    monkeypatch.setattr(state.makers["cpu"], "make", held)
    job_id = client.post("/api/generate", json=SMALL).json()["id"]
    started = time.monotonic()
    record = client.get(f"/api/jobs/{job_id}", params={"wait": 0.3}).json()
    assert record["state"] in ("queued", "running") and time.monotonic() - started >= 0.3
    assert not state.jobs._when_finished.get(job_id)  # the request that stopped waiting left no callback behind
    assert client.get(f"/api/jobs/{job_id}").json()["state"] in ("queued", "running")  # no wait: answers at once
    with ThreadPoolExecutor(50) as pool:  # more waiting requests than the server has threads for routes
        waiting = [pool.submit(client.get, f"/api/jobs/{job_id}", params={"wait": 60}) for _ in range(45)]
        time.sleep(0.5)
        posted = pool.submit(client.post, "/api/generate", json={**SMALL, "frames": 2, "steps": 1})
        assert posted.result(timeout=30).status_code == 202 and not release.is_set()  # answered while they wait
        release.set()
        records = [answer.result(timeout=60).json() for answer in waiting]
    assert all(record["state"] == "done" and record["finished"] >= record["started"] for record in records)
    wait(client, posted.result().json()["id"])
    assert client.get(f"/api/jobs/{job_id}/video").status_code == 200  # done means the file is there
    for bad in (-1, 601, "soon"):
        answer = client.get(f"/api/jobs/{job_id}", params={"wait": bad})
        assert answer.status_code == 422 and "wait" in map(str, answer.json()["detail"][0]["loc"])
    assert client.get("/api/jobs/0123456789abcdef", params={"wait": 0.1}).status_code == 404


def test_models_lists_the_embedded_models_and_a_folders_checkpoints(tmp_path):
    from animatediff.embedded import MODELS

    folder = tmp_path / "models"
    (folder / "loras").mkdir(parents=True)
    (folder / "loras" / "striped.safetensors").write_bytes(MODELS["shapes-striped"].path.read_bytes())
    (folder / "notes.safetensors").write_text("not a checkpoint")
    app = create_app(ServerOptions(outputs=tmp_path / "out", models=folder), page=False)
    with TestClient(app) as client:
        listing = client.get("/api/models").json()
    assert "shapes-motion" in listing["models"]["motion_module"] and "shapes" in listing["models"]["base"]
    assert "loras/striped.safetensors" in listing["models"]["lora"]
    assert all("notes" not in name for names in listing["models"].values() for name in names)
    assert listing["limits"]["frames"] == 32


def test_the_models_folders_embeddings_are_words_of_every_request(tmp_path):
    import json

    import torch

    from animatediff.embedded import MODELS

    width = json.loads((MODELS["shapes"].path / "text_encoder" / "config.json").read_text())["hidden_size"]
    folder = tmp_path / "models" / "embeddings"
    folder.mkdir(parents=True)
    torch.save(
        {"string_to_param": {"*": torch.randn(2, width, generator=torch.Generator().manual_seed(0))}},
        folder / "plainneg.pt",
    )
    app = create_app(ServerOptions(outputs=tmp_path / "out", models=tmp_path / "models"), page=False)
    with TestClient(app) as client:
        job_id = client.post("/api/generate", json={**SMALL, "negative_prompt": "(plainneg:1.2)"}).json()["id"]
        record = wait(client, job_id)
    assert record["state"] == "done", record
    assert [item["path"] for item in record["settings"]["embeddings"]] == [str((folder / "plainneg.pt").resolve())]
    assert client.post("/api/generate", json={**SMALL, "embeddings": ["/etc"]}).status_code == 422  # the app's own


def test_with_credentials_every_route_asks_for_them(tmp_path):
    options = ServerOptions(outputs=tmp_path, auth=("ann", "secret"), token="t" * 20)
    app = create_app(options, page=False)
    with TestClient(app) as client:
        assert client.get("/api/models").status_code == 401
        assert client.get("/api/models", auth=("ann", "wrong")).status_code == 401
        assert client.get("/api/models", auth=("ann", "secret")).status_code == 200
        assert client.get("/api/models", headers={"Authorization": "Bearer " + "t" * 20}).status_code == 200


def test_serve_warns_without_authentication_off_loopback(monkeypatch, tmp_path, capsys):
    import uvicorn

    ran = threading.Event()
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.set())
    assert main(["serve", "--host", "0.0.0.0", "--outputs", str(tmp_path)]) == 0
    assert ran.is_set() and "without authentication" in capsys.readouterr().err
    assert main(["serve", "--outputs", str(tmp_path)]) == 0
    assert "without authentication" not in capsys.readouterr().err
    assert main(["serve", "--auth", "nopassword", "--outputs", str(tmp_path)]) == 2


def test_accelerate_launch_splits_a_config_over_two_processes(tmp_path):
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    prompts = [
        "a red circle moving right on a blue background",
        "a green square moving left on a white background",
        "a blue triangle moving up on a black background",
    ]
    config = tmp_path / "prompts.yaml"
    config.write_text(json.dumps([{"prompt": prompts, "seed": [1, 2, 3], "steps": 2, "L": 4}]))
    fixed = ["--format", "png", "--dtype", "float32"]  # the launched processes see this CPU's own --dtype auto
    assert main(["generate", "--config", str(config), "--output-dir", str(tmp_path / "one"), *fixed]) == 0
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "animatediff",
            "generate",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "two"),
            *fixed,
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    said = launched.stdout
    assert said.count("wrote ") == 3 and "[1/2] wrote" in said and "[2/2] wrote" in said  # each clip made once
    one, two = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "two").iterdir())
    assert [path.name for path in one] == [path.name for path in two] and len(one) == 6  # 3 clips, 3 sidecars
    for first, second in zip(one, two, strict=True):
        if first.is_dir():
            frames = [
                (np.asarray(Image.open(a)), np.asarray(Image.open(b)))
                for a, b in zip(sorted(first.iterdir()), sorted(second.iterdir()), strict=True)
            ]
            assert len(frames) == 4 and all(np.array_equal(a, b) for a, b in frames)


def test_uploaded_inputs_are_taken_from_the_uploads_folder_only(client):
    from PIL import Image

    from lab.control_report import input_clip

    Image.fromarray(input_clip(SMALL["prompt"], 1, 32)[0]).save(client.outputs / "uploads" / "first.png")
    keyframe = {**SMALL, "sparsectrl": "shapes-sparsectrl", "control_image": ["0:first.png"]}
    job_id = client.post("/api/generate", json=keyframe).json()["id"]
    record = wait(client, job_id)
    assert record["state"] == "done" and record["settings"]["control_frames"] == [0]
    assert record["settings"]["sparsectrl"]["path"].endswith("sparsectrl.safetensors")
    started = client.post("/api/generate", json={**SMALL, "init_image": "first.png", "init_strength": 0.5}).json()
    assert wait(client, started["id"])["settings"]["init_strength"] == 0.5
    for trick in ("../../../etc/passwd", "/etc/passwd", "../uploads/first.png.missing"):
        answer = client.post("/api/generate", json={**SMALL, "init_image": trick})
        assert answer.status_code == 422 and "no such file" in answer.text, answer.text


def test_the_pages_form_hands_motion_pia_camera_mask_and_fast_to_the_request(tmp_path):
    from types import SimpleNamespace

    from animatediff.app.page import FORM, LORA_SLOTS, NONE, _request

    app = SimpleNamespace(uploads=tmp_path / "uploads")
    app.uploads.mkdir()
    image, video = tmp_path / "mask.PNG", tmp_path / "in.mp4"
    image.write_bytes(b"mask"), video.write_bytes(b"video")
    form = {name: None for name in FORM} | {
        "prompt": "a red circle",
        "base": "shapes",
        "motion_module": "shapes-motion",
        "domain_adapter_scale": 1,
        "frames": 4,
        "fps": 8,
        "format": "gif",
        "init_strength": 0.75,
        "strength": 0.6,
        "upscale": 1,
    }
    loras = [NONE, 1.0] * (2 * LORA_SLOTS)

    def request(**changes):
        return _request(tuple((form | changes)[name] for name in FORM) + tuple(loras), app)

    chosen = request(
        motion_scale=1.3,
        motion_effect=0.5,
        pia="pia.ckpt",
        pia_strength="large",
        camera_ctrl="CameraCtrl.ckpt",
        camera_poses="zoom-in",
        init_video=str(video),
        mask=str(image),
        fast=True,
    )
    assert (chosen.motion_scale, chosen.motion_effect, chosen.fast) == (1.3, 0.5, True)
    assert (chosen.pia, chosen.pia_strength, chosen.motion_module) == ("pia.ckpt", "large", None)
    assert (chosen.camera_ctrl, chosen.camera_poses) == ("CameraCtrl.ckpt", "zoom-in")
    assert chosen.mask.endswith(".png") and (app.uploads / chosen.mask).read_bytes() == b"mask"
    assert (app.uploads / chosen.init_video).read_bytes() == b"video"
    # the controls' neutral values: nothing asked (a preset without its model, a mask without a video)
    plain = request(motion_scale=1, motion_effect=1, pia=NONE, pia_strength="large", camera_ctrl=NONE)
    plain_mask = request(camera_poses="zoom-in", mask=str(image), fast=False)
    for made in (plain, plain_mask):
        assert (made.motion_scale, made.motion_effect, made.pia, made.pia_strength) == (None, None, None, None)
        assert (made.camera_ctrl, made.camera_poses, made.mask, made.fast) == (None, None, None, False)
        assert made.motion_module == "shapes-motion"
