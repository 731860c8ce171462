"""The benchmark sections that compare two or more things: each alternates them in one run
(A, B, A, B, ...), since this kind of machine drifts by 10-60 % over minutes."""

from __future__ import annotations

import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from loadgen import Server, load_test, start_server, stop_server  # noqa: E402


def providers() -> list[str]:
    """The execution providers the engine would use here (CLEANCUT_PROVIDERS, those this
    onnxruntime build has; the CPU when none is), so that the floor runs where cleancut does."""
    import onnxruntime as ort

    from cleancut.config import load

    available = set(ort.get_available_providers())
    return [p for p in load().providers if p in available] or ["CPUExecutionProvider"]


def raw_session(model_path: Path, threads: int) -> Any:
    """ONNX Runtime alone: the model file, ``threads`` intra-op threads, full graph optimisation,
    the engine's providers."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_path), opts, providers=providers())


# --- INT8 against fp32 on the floor ------------------------------------------------------------
def int8_floor(pairs: dict[str, tuple[Path, Path]], runs: int) -> dict[str, Any]:
    """ONNX Runtime alone, fp32 and its INT8 variant in turn, all cores, medians."""
    out: dict[str, Any] = {}
    cores = os.cpu_count() or 1
    for model, (fp32_path, int8_path) in pairs.items():
        a, b = raw_session(fp32_path, cores), raw_session(int8_path, cores)
        shape = [d if isinstance(d, int) else 1 for d in a.get_inputs()[0].shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        na, nb = a.get_inputs()[0].name, b.get_inputs()[0].name
        for _ in range(2):
            a.run(None, {na: x})
            b.run(None, {nb: x})
        ta: list[float] = []
        tb: list[float] = []
        for i in range(runs):
            for sess, name, times in ((a, na, ta), (b, nb, tb))[:: 1 if i % 2 == 0 else -1]:
                started = time.perf_counter()
                sess.run(None, {name: x})
                times.append((time.perf_counter() - started) * 1e3)
        out[model] = {"fp32_ms": statistics.median(ta), "int8_ms": statistics.median(tb),
                      "runs": runs, "speedup": statistics.median(ta) / statistics.median(tb)}
    return out


# --- cleancut p against the floor and the reference tool's p ----------------------------------
def batch_photos(folder: Path, count: int, size: tuple[int, int] = (800, 600)) -> None:
    """``count`` distinct 800×600 JPEGs: the golden photos, cropped and tinted differently."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = sorted((ROOT / "tests" / "fixtures" / "golden" / "inputs").glob("*.jpg"))
    rng = np.random.default_rng(7)
    for i in range(count):
        src = Image.open(inputs[i % len(inputs)]).convert("RGB")
        w, h = src.size
        left, top = int(rng.integers(0, w // 5)), int(rng.integers(0, h // 5))
        right, bottom = w - int(rng.integers(0, w // 5)), h - int(rng.integers(0, h // 5))
        im = src.crop((left, top, right, bottom))
        arr = np.asarray(im.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        arr = np.clip(arr + rng.integers(-12, 13, 3, dtype=np.int16), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"photo-{i:04d}.jpg", quality=90)


def _floor_rps(model_path: Path, runs: int) -> float:
    """Images/s the floor allows now: one run at a time on all cores, on a prepared input."""
    sess = raw_session(model_path, os.cpu_count() or 1)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    sess.run(None, {name: x})
    started = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {name: x})
    return runs / (time.perf_counter() - started)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def batch(model: str, model_path: Path, count: int, rounds: int, work: Path,
          reference: tuple[Path, dict[str, str]] | None, floor_runs: int) -> dict[str, Any]:
    """A folder of ``count`` photos (the size the target names: a folder a user would run), one
    per round; each round: the floor, ``cleancut p``, ``rembg p`` on that folder, one after the
    other. Throughputs over all rounds, whole commands (start-up and model loading included, as
    a user sees them, so a smaller folder weighs the start-up more)."""
    cleancut = str(Path(sys.executable).parent / "cleancut")
    per = count
    floors, ours, theirs = [], 0.0, 0.0
    for r in range(rounds):
        src = work / f"batch-in-{r}"
        if not src.is_dir() or len(list(src.glob("*.jpg"))) != per:
            shutil.rmtree(src, ignore_errors=True)
            batch_photos(src, per)
        floors.append(_floor_rps(model_path, floor_runs))
        out = work / f"batch-out-{r}"
        shutil.rmtree(out, ignore_errors=True)
        ours += _timed([cleancut, "p", "-m", model, str(src), str(out)], os.environ.copy())
        if reference:
            py, env = reference
            out_ref = work / f"batch-ref-{r}"
            shutil.rmtree(out_ref, ignore_errors=True)
            theirs += _timed([str(py.parent / "rembg"), "p", "-m", model, str(src),
                              str(out_ref)], env)
    result: dict[str, Any] = {"photos": per, "rounds": rounds, "model": model,
                              "floor_rps": statistics.fmean(floors),
                              "cleancut_rps": per * rounds / ours}
    if reference:
        result["reference_rps"] = per * rounds / theirs
    return result


# --- services, in alternating windows ---------------------------------------------------------
def services(entries: dict[str, tuple[list[str], dict[str, str], str, str]], data: bytes,
             levels: tuple[int, ...], windows: int, per_window: int) -> dict[str, Any]:
    """Every server started at once, then for each concurrency level ``windows`` rounds in which
    each server takes a window of ``per_window`` requests in turn. ``entries``: label →
    (command, environment, model, readiness path)."""
    started: dict[str, Server] = {}
    try:
        for label, (cmd, env, _model, ready) in entries.items():
            print(f"service {label}", file=sys.stderr)
            started[label] = start_server(cmd, env, ready_path=ready)
        for label, server in started.items():  # warm-up: every path of a request once
            load_test(server.url, data, entries[label][2], concurrency=2, requests=4)
        out: dict[str, Any] = {label: {} for label in started}
        for c in levels:
            lat: dict[str, list[float]] = {label: [] for label in started}
            wall = dict.fromkeys(started, 0.0)
            ok = dict.fromkeys(started, 0)
            errors = dict.fromkeys(started, 0)
            for w in range(windows):
                order = list(started) if w % 2 == 0 else list(reversed(started))
                for label in order:
                    r = load_test(started[label].url, data, entries[label][2], concurrency=c,
                                  requests=max(per_window, 2 * c), keep_latencies=True)
                    lat[label] += r["latencies_ms"]
                    wall[label] += r["wall_s"]
                    ok[label] += len(r["latencies_ms"])
                    errors[label] += r["errors"]
            for label in started:
                ordered = sorted(lat[label]) or [float("nan")]

                def pct(q: float, ordered: list[float] = ordered) -> float:
                    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

                out[label][str(c)] = {"requests": ok[label] + errors[label],
                                      "errors": errors[label], "windows": windows,
                                      "throughput_rps": ok[label] / wall[label],
                                      "p50_ms": statistics.median(ordered),
                                      "p95_ms": pct(0.95), "p99_ms": pct(0.99)}
        for label, server in started.items():
            out[label]["peak_rss_mb"] = server.peak_rss_mb()
            out[label]["model"] = entries[label][2]
        return out
    finally:
        for server in started.values():
            stop_server(server)


# --- memory of the service ---------------------------------------------------------------------
def _status(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(k + r":\s+(\d+)", text).group(1)) // 1024  # type: ignore[union-attr]
            for k in ("VmRSS", "VmHWM")}


def photo_12mp() -> bytes:
    src = Image.open(ROOT / "tests" / "fixtures" / "golden" / "inputs" / "astronaut.jpg")
    im = src.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(1).integers(-8, 9, (3000, 4000, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=90)
    return buf.getvalue()


def memory(model: str, concurrent: int = 20) -> dict[str, Any]:
    """``cleancut serve`` with default settings: resident memory when ready, idle after warm-up,
    the peak through ``concurrent`` 12 MP uploads at once and the hostile inputs of the test
    suite (tests/bombs.py), and idle again after them."""
    import requests
    from tests import bombs

    from cleancut.server.workers import IDLE_RELEASE_S

    cmd = [str(Path(sys.executable).parent / "cleancut"), "serve", "--models", model]
    server = start_server(cmd, os.environ.copy())
    pid = server.proc.pid
    url = server.url + "/api/remove"
    try:
        out: dict[str, Any] = {"model": model, "ready": _status(pid)}
        data = photo_12mp()
        for _ in range(2):
            requests.post(url, files={"file": ("a.jpg", data)}, data={"model": model},
                          timeout=300).raise_for_status()
        time.sleep(IDLE_RELEASE_S + 1.5)
        out["idle_after_warm_up"] = _status(pid)
        barrier = threading.Barrier(concurrent)

        def upload(_: int) -> int:
            barrier.wait(timeout=60)
            return requests.post(url, files={"file": ("a.jpg", data)}, data={"model": model},
                                 timeout=300).status_code

        with ThreadPoolExecutor(concurrent) as pool:
            statuses = list(pool.map(upload, range(concurrent)))
        for bomb in bombs.corpus():
            requests.post(url, files={"file": (bomb.filename, bomb.data)}, timeout=120)
        out["after_burst_and_bombs"] = _status(pid)
        out["statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
        time.sleep(IDLE_RELEASE_S + 1.5)
        out["idle_after"] = _status(pid)
        out["peak_mb"] = out["after_burst_and_bombs"]["VmHWM"]
        return out
    finally:
        stop_server(server)
