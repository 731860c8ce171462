"""A bounded load generator and server runner for the benchmark, loopback only."""

from __future__ import annotations

import socket
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str

    def rss_hwm_kb(self) -> int:
        """Peak resident memory of the server and its children, from /proc (Linux)."""
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def peak_rss_mb(self) -> float:
        return self.rss_hwm_kb() / 1024.0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def start_server(cmd: list[str], env: dict[str, str], *, port_flag: str = "--port",
                 ready_path: str = "/readyz", timeout_s: float = 300) -> Server:
    port = free_port()
    proc = subprocess.Popen([*cmd, port_flag, str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before it was ready")
        try:
            if requests.get(url + ready_path, timeout=2).status_code < 500:
                return Server(proc, url)
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} was not ready within {timeout_s} s")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def load_test(url: str, data: bytes, model: str, *, concurrency: int, requests: int,
              timeout_s: float = 120, keep_latencies: bool = False) -> dict[str, Any]:
    """Send ``requests`` POSTs to /api/remove from ``concurrency`` threads; bounded in count."""
    import requests as rq

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    remaining = [requests]

    def worker() -> None:
        nonlocal errors
        session = rq.Session()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            started = time.perf_counter()
            try:
                r = session.post(f"{url}/api/remove", files={"file": ("photo.jpg", data)},
                                 data={"model": model}, timeout=timeout_s,
                                 headers={"X-Request-Id": uuid.uuid4().hex})
                ok = r.status_code == 200
            except rq.RequestException:
                ok = False
            elapsed = (time.perf_counter() - started) * 1e3
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "requests": requests,
        "errors": errors,
        "wall_s": wall,
        **({"latencies_ms": latencies} if keep_latencies else {}),
        "throughput_rps": len(latencies) / wall,
        "p50_ms": statistics.median(ordered),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }
