"""Real service processes for the API and browser tests.

Each server is ``python -m cleancut.server`` on a free loopback port, configured only through
``CLEANCUT_*`` variables, and ready when ``/readyz`` says so. They are session-scoped: start-up
loads models, so the suite starts as few as it can.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.conftest import GOLDEN

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=120, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=120, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(model_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEANCUT_")}
    env["CLEANCUT_MODEL_DIR"] = str(model_dir)
    env["CLEANCUT_HOST"] = "127.0.0.1"
    env.update({f"CLEANCUT_{k.upper()}": v for k, v in settings.items()})
    return env


def start_server(model_dir: Path, log: Path, **settings: str) -> Server:
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cleancut.server"],
            env=server_env(model_dir, port=str(port), **settings),
            stdout=out, stderr=subprocess.STDOUT,
        )
    return wait_ready(Server(f"http://127.0.0.1:{port}", process, log))


def wait_ready(server: Server, limit_s: float = 180) -> Server:
    """``server`` once /readyz answers 200; stopped, with its log in the error, otherwise."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log.read_text()}")
        try:
            if requests.get(server.url + "/readyz", timeout=5).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"server did not become ready:\n{server.log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with u2net and u2netp, two workers, default limits otherwise."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    srv = start_server(model_dir, log, models="u2net,u2netp", workers="2", queue_size="16")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def tight_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker and a queue of one: easy to overload. Small byte and pixel limits too."""
    log = tmp_path_factory.mktemp("tight") / "server.log"
    srv = start_server(model_dir, log, models="u2netp", default_model="u2netp", workers="1",
                       queue_size="1", max_upload_bytes="200000", max_pixels="300000")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def photo() -> bytes:
    """A real photograph (512×512 JPEG) with a clear subject."""
    return (GOLDEN / "inputs" / "astronaut.jpg").read_bytes()


@pytest.fixture(scope="session")
def photo_path() -> Path:
    return GOLDEN / "inputs" / "astronaut.jpg"


def open_image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def has_transparency(im: Image.Image) -> bool:
    """Both fully transparent and fully opaque pixels: a real cutout, not a flat alpha."""
    assert im.mode == "RGBA", im.mode
    low, high = im.getchannel("A").getextrema()
    return low == 0 and high == 255


# --- a real headless Chromium (Debian's, installed by scripts/setup) ---------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser per test module, driven through Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
