"""The page in a real browser: Playwright drives Debian's Chromium (`apt-get install chromium`; no browser
download) against `animatediff serve`'s app on loopback. Without Chromium the test is skipped, unless
ANIMATEDIFF_REQUIRE_BROWSER is set (CI sets it)."""

import os
import shutil
import socket
import threading
import time
from urllib.parse import urlparse

import pytest

from animatediff.app.requests import Limits
from animatediff.app.server import ServerOptions, create_app

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and not os.environ.get("ANIMATEDIFF_REQUIRE_BROWSER"):
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    outputs = tmp_path_factory.mktemp("outputs")
    app = create_app(ServerOptions(outputs=outputs, limits=Limits(frames=16, size=64, steps=25)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.1)
    assert server.started, "the app did not start"
    yield f"http://127.0.0.1:{port}/", outputs
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_the_page_generates_plays_shows_the_seed_and_downloads(server, browser, tmp_path):
    url, outputs = server
    page = browser.new_page(accept_downloads=True)
    hosts = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).hostname))
    page.goto(url, wait_until="networkidle")
    page.fill("#prompt textarea", "a red circle moving right on a blue background")
    page.fill("#seed input", "4242")
    page.fill("#steps input", "4")
    page.click("#generate")
    video = page.locator("#result video")
    video.wait_for(state="attached", timeout=120_000)
    page.wait_for_function("document.querySelector('#result video').readyState >= 2", timeout=60_000)
    page.evaluate("document.querySelector('#result video').play()")
    page.wait_for_function("document.querySelector('#result video').currentTime > 0", timeout=30_000)
    settings = page.locator("#settings").inner_text()
    assert "4242" in settings and "seed" in settings
    with page.expect_download() as download:
        page.locator("#download a").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".mp4" and saved.read_bytes()[4:8] == b"ftyp"
    assert hosts == {"127.0.0.1"}  # nothing from a CDN: every request went to the app itself
    page.locator("#random-seed").click()
    page.wait_for_function("document.querySelector('#seed input').value !== '4242'", timeout=10_000)


def readme_curl_commands() -> list[list[str]]:
    """The README's curl example (a `console` block), one argument list per `$ curl` line."""
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"^```console\n(.*?)^```", readme, flags=re.S | re.M) if "$ curl" in b)
    return [shlex.split(line[2:]) for line in block.splitlines() if line.startswith("$ curl")]


def as_curl(words: list[str], base: str, job_id: str | None, folder) -> tuple[int, bytes]:
    """What curl does with these arguments (-s, -X, -H, -d, -o and the URL), done with httpx."""
    import httpx

    method, headers, data, output, url = "GET", {}, None, None, None
    items = iter(words[1:])
    for word in items:
        if word == "-X":
            method = next(items)
        elif word == "-H":
            name, _, value = next(items).partition(": ")
            headers[name] = value
        elif word == "-d":
            data = next(items)
        elif word == "-o":
            output = folder / next(items)
        elif not word.startswith("-"):
            url = word.replace("http://127.0.0.1:7860/", base).replace("<id>", job_id or "<id>")
    answer = httpx.request(method, url, headers=headers, content=data, timeout=60)
    if output is not None:
        output.write_bytes(answer.content)
    return answer.status_code, answer.content


def test_the_readme_curl_example_runs_against_the_app(server, tmp_path):
    import json

    url, _ = server
    post, *rest = readme_curl_commands()
    status, body = as_curl(post, url, None, tmp_path)
    assert status == 202
    job_id = json.loads(body)["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        status, body = as_curl(rest[0], url, job_id, tmp_path)
        if json.loads(body)["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert status == 200 and json.loads(body)["state"] == "done"
    for words in rest[1:]:
        status, body = as_curl(words, url, job_id, tmp_path)
        assert status == 200
    assert json.loads(as_curl(rest[1], url, job_id, tmp_path)[1])["seed"] == 3
    assert (tmp_path / "clip.mp4").read_bytes()[4:8] == b"ftyp"
