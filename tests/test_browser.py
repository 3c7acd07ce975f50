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
    app = create_app(ServerOptions(outputs=outputs, limits=Limits(frames=16, size=64, steps=8)))
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
