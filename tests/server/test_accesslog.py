"""Issue 4, section 5: one JSON access line per request on stdout, with the fields an operator
needs and nothing a client could abuse (no key, no image, control characters escaped)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from cleancut.server.accesslog import TextFormatter
from tests.server.conftest import free_port, server_env

KEY = "s3cret-test-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


@dataclass
class LoggedServer:
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def lines(self) -> list[str]:
        return self.stdout.read_text(encoding="ascii").splitlines()


@pytest.fixture(scope="module")
def logged(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedServer]:
    """A server with one API key, its stdout and stderr kept apart."""
    folder = tmp_path_factory.mktemp("accesslog")
    port = free_port()
    env = server_env(model_dir, port=str(port), models="u2netp", default_model="u2netp",
                     workers="1", api_keys=f"ops-team:{KEY}",
                     access_log_file=str(folder / "access.log"))
    with open(folder / "stdout", "wb") as out, open(folder / "stderr", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "cleancut.server"], env=env,
                                   stdout=out, stderr=err)
    srv = LoggedServer(f"http://127.0.0.1:{port}", process, folder / "stdout", folder / "stderr")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, srv.stderr.read_text()
        try:
            if requests.get(srv.url + "/readyz", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail(f"server did not become ready:\n{srv.stderr.read_text()}")
    yield srv
    process.terminate()
    process.wait(timeout=60)


def _record(server: LoggedServer, request_id: str) -> dict[str, Any]:
    """The access record of ``request_id`` (written once the response is sent; bounded wait)."""
    for _ in range(100):
        for line in server.lines():
            record = json.loads(line)  # every stdout line is one JSON object
            if record.get("request_id") == request_id:
                return record  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}:\n{server.stdout.read_text()}")


def test_a_processed_image_is_logged_with_every_field(logged: LoggedServer,
                                                      photo: bytes) -> None:
    response = requests.post(logged.url + "/api/remove", files={"file": ("a.jpg", photo)},
                             headers={**HEADERS, "User-Agent": "pytest-agent/1.0"}, timeout=120)
    assert response.status_code == 200
    record = _record(logged, response.headers["x-request-id"])
    assert datetime.fromisoformat(record["time"].replace("Z", "+00:00")).utcoffset() is not None
    assert record["client"] == "127.0.0.1"
    assert record["user_agent"] == "pytest-agent/1.0"
    assert record["key_id"] == "ops-team"
    assert record["method"] == "POST"
    assert record["route"] == "/api/remove"
    assert record["model"] == "u2netp"
    assert record["image_format"] == "jpeg"
    assert (record["width"], record["height"]) == (512, 512)
    assert record["bytes_in"] > len(photo)
    assert record["bytes_out"] == len(response.content)
    for stage in ("queue_ms", "decode_ms", "inference_ms", "encode_ms", "duration_ms"):
        assert isinstance(record[stage], (int, float)) and record[stage] >= 0, stage
    assert record["status"] == 200
    assert record["error_code"] is None


def test_errors_are_logged_with_their_code_and_never_the_key(logged: LoggedServer) -> None:
    text = requests.post(logged.url + "/api/remove", files={"file": ("a.txt", b"hello")},
                         headers=HEADERS, timeout=60)
    assert text.status_code == 415
    record = _record(logged, text.headers["x-request-id"])
    assert (record["status"], record["error_code"]) == (415, "invalid_file_type")
    wrong = requests.get(logged.url + "/api/models", headers={"X-API-Key": "x" * 20}, timeout=60)
    assert wrong.status_code == 401
    record = _record(logged, wrong.headers["x-request-id"])
    assert (record["error_code"], record["key_id"]) == ("unauthorized", None)
    assert KEY not in logged.stdout.read_text()
    assert "x" * 20 not in logged.stdout.read_text()
    assert KEY not in logged.stderr.read_text()


def test_control_characters_from_clients_are_escaped(logged: LoggedServer) -> None:
    # h11 admits bytes 0x80-0xff in header values: C1 controls such as CSI (0x9b) and NEL
    # (0x85); a path may carry any byte percent-encoded.
    agent = "evil\x9b31m\x85agent" + "A" * 1000
    response = requests.get(logged.url + "/api/%1b%5b31m%0aforged%00", timeout=60,
                            headers={**HEADERS, "User-Agent": agent})
    assert response.status_code == 404
    raw = logged.stdout.read_bytes()
    assert all(b >= 0x20 or b == 0x0A for b in raw)  # newline only as the line separator
    assert all(b < 0x7F for b in raw)
    record = _record(logged, response.headers["x-request-id"])
    assert record["user_agent"].startswith("evil\x9b31m\x85agent")
    assert len(record["user_agent"]) <= 260  # capped
    assert record["path"] == "/api/\x1b[31m\nforged\x00"
    assert record["route"] is None
    line = TextFormatter().format(_access_record(record))
    assert "\x1b" not in line and "\n" not in line and "\\u001b" in line


def test_the_rotating_file_gets_the_same_lines(logged: LoggedServer) -> None:
    response = requests.get(logged.url + "/healthz", timeout=60)
    _record(logged, response.headers["x-request-id"])
    copy = logged.stdout.parent / "access.log"
    for _ in range(100):  # the file handler writes just after the stdout one
        if response.headers["x-request-id"] in copy.read_text(encoding="ascii"):
            break
        time.sleep(0.05)
    assert response.headers["x-request-id"] in copy.read_text(encoding="ascii")


def _access_record(record: dict[str, Any]) -> Any:
    import logging

    entry = logging.LogRecord("cleancut.access", logging.INFO, __file__, 0, "x", None, None)
    entry.access = record
    return entry


def test_an_unexpected_failure_is_logged_as_internal_error(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """In process: a route that raises stands for a bug; the client gets the generic 500 and
    the access line carries the code the client saw."""
    import asyncio

    from cleancut.config import Settings
    from cleancut.server import create_app

    app = create_app(Settings(model_dir=model_dir, models=[]))

    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/boom", "raw_path": b"/boom", "query_string": b"",
             "root_path": "", "headers": [], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {}}
    with caplog.at_level("INFO", logger="cleancut.access"), pytest.raises(RuntimeError):
        asyncio.run(app(scope, receive, send))  # Starlette re-raises after answering
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"])["errors"][0]["code"] == "internal_error"
    records = [r.access for r in caplog.records if hasattr(r, "access")]
    assert [(r["path"], r["status"], r["error_code"]) for r in records] == [
        ("/boom", 500, "internal_error")]
