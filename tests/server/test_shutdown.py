"""Issue 4, section 6: SIGTERM drains. The request in flight finishes (200), new requests get 503
``shutting_down`` with Retry-After while it does (``/readyz`` too, so balancers stop sending;
``/healthz`` still answers), then the listener closes and the process exits with status 0."""

from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import start_server, stop_server


def _busy(url: str) -> float:
    text = requests.get(url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cleancut_workers_busy":
                return sample.value
    return 0.0


def _slow_photo(photo: bytes) -> bytes:
    im = Image.open(io.BytesIO(photo)).convert("RGB").resize((4000, 3000))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_sigterm_drains_in_flight_work_refuses_new_work_and_exits_0(
        model_dir: Path, tmp_path: Path, photo: bytes) -> None:
    server = start_server(model_dir, tmp_path / "server.log", models="u2net",
                          default_model="u2net", workers="1", request_timeout_s="300",
                          shutdown_grace_s="300")
    try:
        big = _slow_photo(photo)
        outcome: dict[str, requests.Response | BaseException] = {}

        def slow() -> None:
            try:
                outcome["slow"] = requests.post(
                    server.url + "/api/remove", files={"file": ("big.jpg", big)},
                    data={"model": "u2net", "alpha_matting": "true"}, timeout=300)
            except BaseException as exc:  # reported below
                outcome["slow"] = exc

        thread = threading.Thread(target=slow)
        thread.start()
        for _ in range(600):  # until the worker has the slow image (bounded: 2 minutes)
            if _busy(server.url) >= 1:
                break
            time.sleep(0.2)
        assert _busy(server.url) >= 1

        server.process.send_signal(signal.SIGTERM)
        try:
            ready = requests.get(server.url + "/readyz", timeout=30)
            new = requests.post(server.url + "/api/remove", files={"file": photo}, timeout=30)
            alive = requests.get(server.url + "/healthz", timeout=30)
        except requests.ConnectionError:
            pytest.fail("the listener closed while a request was still in flight")
        for response in (ready, new):
            assert response.status_code == 503
            assert response.json()["errors"][0]["code"] == "shutting_down"
            assert response.headers["retry-after"] == "5"
            assert response.headers["connection"] == "close"
        assert alive.status_code == 200

        thread.join(300)
        slow_response = outcome["slow"]
        assert isinstance(slow_response, requests.Response), slow_response
        assert slow_response.status_code == 200
        assert slow_response.headers["x-width"] == "4000"

        assert server.process.wait(timeout=120) == 0
        with pytest.raises(requests.ConnectionError):  # and nothing listens any more
            requests.get(server.url + "/healthz", timeout=5)
        log = server.log.read_text()
        assert "SIGTERM received" in log
    finally:
        if server.process.poll() is None:
            stop_server(server)


def test_sigterm_with_nothing_in_flight_exits_0_at_once(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path / "server.log", models="u2netp",
                          default_model="u2netp", workers="1")
    server.process.send_signal(signal.SIGTERM)
    try:
        assert server.process.wait(timeout=60) == 0
    finally:
        if server.process.poll() is None:
            stop_server(server)
