"""What Ray costs and gives on this machine: ``cleancut p`` against ``cleancut p --engine ray``,
and ``cleancut serve`` against ``cleancut serve --engine ray``, run in turns (A, B, A, B, ...) so
that both see the same minutes of the machine. Loopback only, bounded in count.

    .venv/bin/python bench/ray_bench.py [--photos 60] [--rounds 2] [--model u2net]
                                        [--requests 32] [--out bench/results/ray.md]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import free_port, load_test  # noqa: E402

CLEANCUT = str(Path(sys.executable).with_name("cleancut"))
INPUTS = ROOT / "tests" / "fixtures" / "golden" / "inputs"
FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def machine() -> dict[str, Any]:
    import onnxruntime
    import ray

    cpu, flags = platform.processor() or "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags],
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "ray": ray.__version__, "load_before": os.getloadavg()}


def make_photos(folder: Path, count: int) -> None:
    """``count`` 800×600 JPEGs (quality 90) cut from the golden inputs, in two folders."""
    sources = [p for p in sorted(INPUTS.glob("*.jpg")) if "cmyk" not in p.name]
    for i in range(count):
        im = Image.open(sources[i % len(sources)]).convert("RGB").resize((800, 600),
                                                                       Image.Resampling.BICUBIC)
        if i // len(sources) % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # not the same photo twice
        dst = folder / ("a" if i % 2 else "b") / f"{i:03d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        dst.write_bytes(buf.getvalue())


def _tree_rss_mb(pid: int) -> float:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


def settle(folder: Path, limit_s: float = 120) -> None:
    """Until no process holds a file below ``folder``: a Ray that stops goes on using the CPU
    for a while after its command ends, and the next run must not pay for it."""
    prefix = f"{folder}/"
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        busy = False
        for fd_dir in Path("/proc").glob("[0-9]*/fd"):
            try:
                busy = any(os.readlink(fd).startswith(prefix) for fd in fd_dir.iterdir())
            except OSError:
                continue
            if busy:
                break
        if not busy:
            return
        time.sleep(0.5)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the peak resident memory (MB) of the command and all it starts."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        time.sleep(0.25)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        said = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        raise RuntimeError(f"{args} failed: {said}")
    return wall, peak


def batch(work: Path, env: dict[str, str], model: str, count: int,
          rounds: int) -> dict[str, list[tuple[float, float]]]:
    photos = work / "photos"
    make_photos(photos, count)
    runs: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
    for r in range(rounds):
        for engine in ("local", "ray"):
            out = work / f"out-{engine}-{r}"
            runs[engine].append(timed([CLEANCUT, "p", str(photos), str(out), "-m", model,
                                       "--engine", engine], env))
            shutil.rmtree(out)
            settle(Path(env["CLEANCUT_RAY_DIR"]))
    return runs


def _serve(engine: str, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as sink:
        proc = subprocess.Popen([CLEANCUT, "serve", "--engine", engine, "--port", str(port)],
                                env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve --engine {engine} exited:\n{log.read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"serve --engine {engine} was not ready:\n{log.read_text()}")


def _sample(pid: int, done: threading.Event, peak: list[float]) -> None:
    while not done.wait(0.25):
        peak[0] = max(peak[0], _tree_rss_mb(pid))


def service(work: Path, env: dict[str, str], model: str, count: int,
            rounds: int) -> dict[str, list[dict[str, Any]]]:
    buf = io.BytesIO()
    Image.open(INPUTS / "astronaut.jpg").convert("RGB").resize((800, 600)).save(
        buf, format="JPEG", quality=90)
    data = buf.getvalue()
    runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
    for r in range(rounds):
        for engine in ("local", "ray"):
            port = free_port()
            proc = _serve(engine, env, port, work / f"serve-{engine}-{r}.log")
            peak = [0.0]
            done = threading.Event()
            sampler = threading.Thread(target=_sample, args=(proc.pid, done, peak))
            sampler.start()
            try:
                result = load_test(f"http://127.0.0.1:{port}", data, model, concurrency=4,
                                   requests=count)
            finally:
                done.set()
                sampler.join()
                proc.terminate()
                proc.wait(timeout=120)
                settle(Path(env["CLEANCUT_RAY_DIR"]))
            runs[engine].append({**result, "peak_rss_mb": peak[0]})
    return runs


def markdown(info: dict[str, Any], args: argparse.Namespace,
             batch_runs: dict[str, list[tuple[float, float]]],
             serve_runs: dict[str, list[dict[str, Any]]]) -> str:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    local_s = med([w for w, _ in batch_runs["local"]])
    ray_s = med([w for w, _ in batch_runs["ray"]])
    lines = [
        "# Ray on this machine",
        "",
        "Written by `bench/ray_bench.py`; the two engines ran in turns (A, B, A, B), each run a "
        "fresh command (a local Ray starts and stops with each `--engine ray` command, as a user "
        "sees it, and the next run waits until its processes are gone). Peak RSS adds up every "
        "process of the command, so memory that Ray's processes share (its object store) counts "
        "more than once.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, flags {', '.join(info['flags'])}; "
        f"Python {info['python']}, onnxruntime {info['onnxruntime']}, Ray {info['ray']}; "
        f"load average before: {', '.join(f'{x:.2f}' for x in info['load_before'])} (the cores "
        "are shared with other work).",
        "",
        f"## `cleancut p`: {args.photos} photos of 800×600, model {args.model}",
        "",
        "| engine | runs (s) | median s | photos/s | peak RSS MB (all processes) |",
        "|---|---|---|---|---|",
    ]
    for engine in ("local", "ray"):
        walls = [w for w, _ in batch_runs[engine]]
        lines.append(f"| {engine} | {', '.join(f'{w:.1f}' for w in walls)} | {med(walls):.1f} | "
                     f"{args.photos / med(walls):.2f} | "
                     f"{max(p for _, p in batch_runs[engine]):.0f} |")
    lines += ["", f"Local is {ray_s / local_s:.2f}× as fast as Ray (ratio of medians).", "",
              f"## Service: {args.requests} requests of an 800×600 JPEG at concurrency 4, "
              f"model {args.model}", "",
              "| engine | throughput/s (runs) | p50 ms | p95 ms | errors | peak RSS MB |",
              "|---|---|---|---|---|---|"]
    for engine in ("local", "ray"):
        rows = serve_runs[engine]
        rates = ", ".join(f"{r['throughput_rps']:.2f}" for r in rows)
        lines.append(
            f"| {engine} | {rates} | "
            f"{med([r['p50_ms'] for r in rows]):.0f} | {med([r['p95_ms'] for r in rows]):.0f} | "
            f"{sum(r['errors'] for r in rows)} | {max(r['peak_rss_mb'] for r in rows):.0f} |")
    local_rps = med([r["throughput_rps"] for r in serve_runs["local"]])
    ray_rps = med([r["throughput_rps"] for r in serve_runs["ray"]])
    lines += ["", f"Serve gives {ray_rps / local_rps:.2f}× the throughput of the single process "
              "(ratio of medians). Serve: one replica with 2 CPUs "
              "(`CLEANCUT_RAY_REPLICA_CPUS=2`: 2 workers, 2 ONNX Runtime threads, as the single "
              "process has by default).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="u2net")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray.md")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ccb-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(CLEANCUT_RAY_DIR=str(work / "ray"), CLEANCUT_MODELS=args.model,
               CLEANCUT_DEFAULT_MODEL=args.model, CLEANCUT_RAY_REPLICA_CPUS="2",
               CLEANCUT_LOG_LEVEL="warning")
    try:
        info = machine()
        batch_runs = batch(work, env, args.model, args.photos, args.rounds)
        serve_runs = service(work, env, args.model, args.requests, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(info, args, batch_runs, serve_runs)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
