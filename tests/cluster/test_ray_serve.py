"""``cleancut serve --engine ray``: the service on Ray Serve, on a two-node cluster and on a
local Ray of its own. The clients of the single-process tests run against it unchanged."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.server import test_native, test_overload, test_removebg
from tests.server.conftest import Server, free_port, has_transparency, open_image

from .conftest import (
    CLEANCUT,
    Cluster,
    our_processes,
    short_root,
    stop_processes,
    wait_gone,
    wait_serving,
)

pytestmark = pytest.mark.cluster


def _start(cluster: Cluster, name: str, *, joining: bool, **settings: str) -> Server:
    port = free_port()
    folder = cluster.root / name
    folder.mkdir()
    log = folder / "serve.log"
    args = [CLEANCUT, "serve", "--engine", "ray"]
    if joining:
        args += ["--address", cluster.address]
    env = cluster.env("driver", joining=joining, CLEANCUT_PORT=str(port),
                      **{f"CLEANCUT_{k.upper()}": v for k, v in settings.items()})
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", process, log)


def _stop(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def _serving(server: Server, seen: list[requests.Response]) -> Server:
    """``server`` once it says it serves; ``seen`` gets every answer /readyz gave meanwhile."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.2):
            with contextlib.suppress(requests.ConnectionError):
                seen.append(requests.get(server.url + "/readyz", timeout=10))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        wait_serving(server.process, server.log)
    finally:
        stop.set()
        poller.join()
    return server


@pytest.fixture(scope="module")
def startup() -> list[requests.Response]:
    return []


@pytest.fixture(scope="module")
def server(cluster: Cluster, startup: list[requests.Response]) -> Iterator[Server]:
    """Two replicas (one per node, each one worker and a queue of 8), one HTTP proxy on the
    head, u2net and u2netp."""
    srv = _start(cluster, "serve", joining=True, models="u2net,u2netp", workers="1",
                 queue_size="8", ray_serve_replicas="2", ray_serve_proxy_location="HeadOnly")
    try:
        yield _serving(srv, startup)
    finally:
        _stop(srv)
    assert srv.process.returncode == 0, srv.log.read_text()


def test_a_replica_gets_traffic_only_once_its_models_are_warm(
        server: Server, startup: list[requests.Response]) -> None:
    # before: Ray Serve's own answers (no application yet), never cleancut's "loading"
    assert all(r.status_code == 200 or "loading" not in r.text for r in startup), \
        [r.text[:200] for r in startup]
    body = server.get("/readyz").json()
    assert body["status"] == "ready" and set(body["models"]) == {"u2net", "u2netp"}


def test_the_replicas_run_on_both_nodes(server: Server, cluster: Cluster) -> None:
    for node in ("head", "worker"):
        replicas = [cmd for cmd in our_processes(cluster.root / node).values()
                    if "ServeReplica" in cmd]
        assert len(replicas) == 1, (node, replicas)


def test_concurrent_requests_through_serve_all_succeed(server: Server, photo: bytes) -> None:
    def post(_: int) -> requests.Response:
        return server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2netp"})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(post, range(8)))
    assert [r.status_code for r in responses] == [200] * 8
    assert all(has_transparency(open_image(r.content)) for r in responses)
    # one request id each, as the single process answers
    assert len({r.headers["X-Request-Id"] for r in responses}) == 8
    assert all("," not in r.headers["X-Request-Id"] for r in responses)


def test_the_remove_bg_client_call(server: Server, photo_path: Path) -> None:
    test_removebg.test_client_library_call_multipart_size_regular_api_key(server, photo_path)


def test_the_seed_requests_client(server: Server, photo_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    test_native.test_the_issue_client_verbatim_gets_a_png_with_real_transparency(
        server, photo_path, monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def tight_local(model_dir: Path) -> Iterator[tuple[Server, Path]]:
    """On a local Ray that `serve` starts itself: one replica with one worker and a queue of
    one, as tests/server's tight server."""
    root = short_root()
    cluster = Cluster(root, model_dir)  # no node: its folders and environment only
    srv = _start(cluster, "tight", joining=False, models="u2netp", default_model="u2netp",
                 workers="1", queue_size="1", max_upload_bytes="200000", max_pixels="300000")
    try:
        yield _serving(srv, []), root
    finally:
        _stop(srv)
        left = wait_gone(root, 30.0)
        stop_processes(root)
        assert not left, f"processes outlived `cleancut serve`: {left}"
        assert list((root / "home").iterdir()) == []  # no ~/.ray, no ~/.cache
        shutil.rmtree(root, ignore_errors=True)


def test_overload_is_cleancuts_503_with_retry_after(tight_local: tuple[Server, Path],
                                                    photo: bytes) -> None:
    server, _ = tight_local
    test_overload.test_a_full_queue_answers_503_with_retry_after(server, photo)


def test_a_local_ray_keeps_its_token_private(tight_local: tuple[Server, Path]) -> None:
    _, root = tight_local
    token = root / "d" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("check", [
    test_native.test_a_valid_request_id_is_echoed,
    test_native.test_errors_carry_the_request_id,
    test_native.test_unknown_route_is_404_json,
], ids=lambda check: check.__name__)
def test_request_ids_and_errors_as_in_one_process(server: Server, check: Any) -> None:
    check(server)


@pytest.mark.parametrize("check", [
    test_native.test_too_many_bytes_is_413,
    test_native.test_too_many_pixels_is_413,
    test_native.test_limits_reports_the_settings_in_force,
    test_removebg.test_too_large_is_400_in_the_compat_route,
], ids=lambda check: check.__name__)
def test_the_limits_hold_as_in_one_process(tight_local: tuple[Server, Path], check: Any) -> None:
    check(tight_local[0])
