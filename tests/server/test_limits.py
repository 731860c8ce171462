"""Issue 4, section 1 in the service: the byte limit while the body streams in, the body deadline
for slow clients, header bombs, uploads kept in memory, and work abandoned at the deadline
(a running ONNX Runtime inference terminated)."""

from __future__ import annotations

import asyncio
import io
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cleancut.config import Settings
from cleancut.engine import Engine
from cleancut.engine.session import _CONTROL, RunControl, controlled_by
from cleancut.errors import ProcessingTimeout
from cleancut.server import create_app
from cleancut.server.bodylimit import FRAMING_BYTES, body_limit
from cleancut.server.metrics import Metrics
from cleancut.server.workers import WorkerPool
from tests.server.conftest import Server, start_server, stop_server

MAX_BYTES = 10_000_000  # the default, so a 4000×3000 photo fits
BODY_TIMEOUT_S = 2
HEADER_TIMEOUT_S = 2
PART = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'


@pytest.fixture(scope="module")
def limits_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """u2net on one worker, a deadline far shorter than a 12 MP photo takes, a short body
    deadline and a small header limit."""
    log = tmp_path_factory.mktemp("limits") / "server.log"
    srv = start_server(model_dir, log, models="u2net", default_model="u2net", workers="1",
                       queue_size="1", request_timeout_s="0.3",
                       body_timeout_s=str(BODY_TIMEOUT_S), max_header_bytes="8192",
                       header_timeout_s=str(HEADER_TIMEOUT_S))
    yield srv
    stop_server(srv)


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _read_response(sock: socket.socket, limit_s: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed)."""
    sock.settimeout(limit_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _closed_by_peer(sock: socket.socket, chunks: int = 2000) -> bool:
    """Keep sending; True once the server has closed the connection (bounded)."""
    sock.settimeout(10)
    payload = b"x" * 65536
    try:
        for _ in range(chunks):
            sock.sendall(b"10000\r\n" + payload + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return True
    except TimeoutError:
        return False
    return False


def _request_head(path: str, port: int, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\n" + extra + "\r\n").encode()


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
        limits_server: Server) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request_head("/api/remove", port, "Content-Length: 2000000000\r\n"))
        status, headers, body = _read_response(sock)  # no byte of the body was sent
        assert status == 413
        assert headers["connection"] == "close"
        entry = json.loads(body)["errors"][0]
        assert entry["code"] == "file_too_large"
        assert "CLEANCUT_MAX_UPLOAD_BYTES" in entry["detail"]
        assert "2000000000" in entry["detail"]
        assert sock.recv(1) == b""  # and the server closed the connection


def test_a_streamed_body_is_cut_off_once_it_passes_the_limit(limits_server: Server) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request_head("/api/remove", port, "Transfer-Encoding: chunked\r\n"))
        sock.sendall(f"{len(PART):x}\r\n".encode() + PART + b"\r\n")
        limit = body_limit(MAX_BYTES, "/api/remove")
        sent = len(PART)
        sock.settimeout(10)
        while sent <= limit + 256 * 1024:  # a little past the limit, then stop and listen
            sock.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")
            sent += 65536
        status, headers, body = _read_response(sock)
        assert status == 413
        assert headers["connection"] == "close"
        assert json.loads(body)["errors"][0]["code"] == "file_too_large"
        # a client that keeps sending finds the connection closed (128 MB more at most)
        assert _closed_by_peer(sock)
    # and so does one that sends through an ordinary client
    big = b"\xff\xd8" + b"x" * (MAX_BYTES + 1)
    response = limits_server.post("/api/remove", files={"file": ("big.jpg", big)})
    assert response.status_code == 413
    assert response.json()["errors"][0]["code"] == "file_too_large"
    compat = limits_server.post("/v1.0/removebg", files={"image_file": ("big.jpg", big * 2)})
    assert compat.status_code == 400  # remove.bg's status for every input problem
    assert compat.json()["errors"][0]["code"] == "file_too_large"


def test_a_client_that_trickles_its_body_is_cut_off_with_408(limits_server: Server) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_request_head("/api/remove", port, "Content-Length: 100000\r\n"))
        sock.sendall(PART)
        answered = False
        for _ in range(4 * 60):  # a byte every quarter second, for at most a minute
            sock.sendall(b"-")
            readable, _, _ = select.select([sock], [], [], 0.25)
            if readable:
                answered = True
                break
        assert answered, "the server never cut the slow body off"
        status, headers, body = _read_response(sock)
        assert status == 408
        assert headers["connection"] == "close"
        entry = json.loads(body)["errors"][0]
        assert entry["code"] == "request_timeout"
        assert "CLEANCUT_BODY_TIMEOUT_S" in entry["detail"]
    assert limits_server.get("/healthz").status_code == 200


def test_a_client_that_trickles_its_headers_is_disconnected(limits_server: Server) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        started = time.monotonic()
        closed = False
        for i in range(4 * 30):  # a header byte every quarter second, for at most 30 s
            try:
                sock.sendall(b"X-Slow: 1\r\n"[i % 11 : i % 11 + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.25)
            if readable:
                closed = sock.recv(65536) == b""
                break
        elapsed = time.monotonic() - started
    assert closed, "the server kept a connection whose headers never finished"
    assert HEADER_TIMEOUT_S - 0.5 <= elapsed < HEADER_TIMEOUT_S + 10
    assert limits_server.get("/healthz").status_code == 200


def test_the_header_deadline_restarts_for_each_request_on_a_connection(
    limits_server: Server,
) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):  # together longer than the deadline, each well inside it
            time.sleep(HEADER_TIMEOUT_S * 0.6)
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status, _, _ = _read_response(sock)
            assert status == 200


def test_a_header_bomb_is_refused_and_the_service_stays_up(limits_server: Server) -> None:
    port = _port(limits_server)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        refused = False
        try:
            for _ in range(1000):  # up to 8 MB of headers; the limit is 8 KB
                sock.sendall(b"X-Bomb: " + b"b" * 8000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            refused = True
        if not refused:
            data = sock.recv(65536)
            refused = data == b"" or data.startswith(b"HTTP/1.1 4")
        assert refused
    assert limits_server.get("/healthz").status_code == 200


def _metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = server.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _big_photo(photo: bytes) -> bytes:
    im = Image.open(io.BytesIO(photo)).convert("RGB")
    im = im.resize((4000, 3000), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_past_the_deadline_the_work_is_abandoned_and_the_worker_freed(
        limits_server: Server, photo: bytes) -> None:
    big = _big_photo(photo)
    assert len(big) < MAX_BYTES
    response = limits_server.post("/api/remove", files={"file": ("big.jpg", big)},
                                  data={"model": "u2net"})
    assert response.status_code == 504
    assert response.json()["errors"][0]["code"] == "processing_timeout"
    samples: dict[Any, float] = {}
    for _ in range(300):  # the abandoned job stops at its next stage or its inference ends
        samples = _metrics(limits_server)
        if samples.get(("cleancut_workers_busy", ())) == 0:
            break
        time.sleep(0.2)
    assert samples[("cleancut_workers_busy", ())] == 0
    assert samples[("cleancut_queue_depth", ())] == 0
    abandoned = sum(v for (name, _labels), v in samples.items()
                    if name == "cleancut_jobs_abandoned_total")
    assert abandoned >= 1


# --- in-process checks ------------------------------------------------------------------------
def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80), "state": {}}


def test_the_body_is_read_only_up_to_the_limit(model_dir: Path) -> None:
    """Timing-free: count the chunks the service pulls from a 100 MB upload of 1 KB chunks."""
    settings = Settings(model_dir=model_dir, models=[], max_upload_bytes=10_000)
    app = create_app(settings)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled > 100_000:
            return {"type": "http.disconnect"}
        body = PART if pulled == 1 else b"x" * 1024
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"multipart/form-data; boundary=XyZ")]
    asyncio.run(app(_scope("/api/remove", headers), receive, send))
    start = sent[0]
    assert start["status"] == 413
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(sent[1]["body"])["errors"][0]["code"] == "file_too_large"
    assert pulled <= (10_000 + FRAMING_BYTES) // 1024 + 2


def test_uploads_are_kept_in_memory_up_to_the_limit(model_dir: Path) -> None:
    from starlette.formparsers import MultiPartParser

    create_app(Settings(model_dir=model_dir, models=[], max_upload_bytes=20_000_000))
    assert MultiPartParser.spool_max_size >= 20_000_000 + FRAMING_BYTES


def test_a_terminated_run_is_a_processing_timeout(engine: Engine) -> None:
    session = engine.session("u2netp")
    batch = np.zeros((1, 3, 320, 320), dtype=np.float32)
    control = RunControl()
    control.terminate()
    with controlled_by(control), pytest.raises(ProcessingTimeout):
        session.run(batch)
    assert session.run(batch).shape[0] == 1  # the session itself is fine


def test_the_pool_terminates_the_job_it_gives_up() -> None:
    pool = WorkerPool(1, 1, Metrics())
    seen = threading.Event()
    release = threading.Event()

    def job() -> str:
        control = _CONTROL.get()
        assert control is not None
        for _ in range(1000):  # at most 10 s
            if control.terminated:
                seen.set()
                break
            time.sleep(0.01)
        release.set()
        return "finished"

    async def main() -> None:
        with pytest.raises(ProcessingTimeout):
            await pool.run(job, deadline=time.monotonic() + 0.05, timeout_s=0.05)

    asyncio.run(main())
    assert release.wait(20)
    assert seen.is_set()
    pool.shutdown()
