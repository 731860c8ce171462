"""Bounded pool and queue: 503 + Retry-After at once when full; 504 past the deadline."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import requests

from .conftest import Server, server_env, start_server, stop_server
from .test_ops import scrape, value


def test_a_full_queue_answers_503_with_retry_after(tight_server: Server, photo: bytes) -> None:
    before = scrape(tight_server)
    clients = 10
    barrier = threading.Barrier(clients)
    responses: list[requests.Response] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        # alpha matting keeps the single worker busy long enough for the queue to fill
        response = requests.post(tight_server.url + "/api/remove", files={"file": photo},
                                 data={"a": "true"}, timeout=300)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    rejected = [r for r in responses if r.status_code == 503]
    assert rejected, "ten simultaneous requests against one worker and a queue of one"
    assert statuses.count(200) >= 1
    for response in rejected:
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["code"] == "overloaded"
    after = scrape(tight_server)
    assert value(after, "cleancut_rejects_total", reason="overloaded") - \
        value(before, "cleancut_rejects_total", reason="overloaded") == len(rejected)
    assert value(after, "cleancut_queue_depth") == 0
    assert value(after, "cleancut_workers_busy") == 0
    # and the service is fine afterwards
    ok = requests.post(tight_server.url + "/api/remove", files={"file": photo}, timeout=120)
    assert ok.status_code == 200


@pytest.fixture(scope="module")
def hasty_server(model_dir, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A deadline far shorter than any image takes."""
    log = tmp_path_factory.mktemp("hasty") / "server.log"
    srv = start_server(model_dir, log, models="u2netp", default_model="u2netp", workers="1",
                       request_timeout_s="0.001")
    yield srv
    stop_server(srv)


def test_past_the_deadline_is_504(hasty_server: Server, photo: bytes) -> None:
    response = hasty_server.post("/api/remove", files={"file": photo})
    assert response.status_code == 504
    entry = response.json()["errors"][0]
    assert entry["code"] == "processing_timeout"
    assert "CLEANCUT_REQUEST_TIMEOUT_S" in entry["detail"]
    compat = hasty_server.post("/v1.0/removebg", files={"image_file": photo})
    assert compat.status_code == 504
    # the worker is free again: the work was abandoned, not left queued
    assert value(scrape(hasty_server), "cleancut_queue_depth") == 0


def test_a_missing_model_stops_start_up_with_the_store_error(model_dir) -> None:
    env = server_env(model_dir, models="u2netp,u2net_human_seg", port="0")
    done = subprocess.run([sys.executable, "-m", "cleancut.server"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "u2net_human_seg" in lines[0] and "not installed" in lines[0]
    assert "install it with: cleancut models" in lines[0]
    assert "Traceback" not in done.stderr


def test_an_unknown_start_up_model_stops_start_up(model_dir) -> None:
    env = server_env(model_dir, models="nonsense", port="0")
    done = subprocess.run([sys.executable, "-m", "cleancut.server"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "unknown model 'nonsense'" in done.stderr
    assert "Traceback" not in done.stderr
