"""cleancut's benchmark harness: every figure is a ratio against numbers taken in the same run.

    .venv/bin/python bench/run.py                 # full run, writes bench/results/latest.{md,json}
    .venv/bin/python bench/run.py --quick         # tiny inputs, few runs, no reference tool
    .venv/bin/python bench/run.py --no-reference  # skip installing and timing the reference tool

Measures, on this machine, in one run: the floor (ONNX Runtime alone on a prepared input), the
library end to end (encoded bytes in, encoded bytes out, split by stage), the service under a
bounded load on loopback, and the reference tool (rembg, in its own virtualenv, pointed at the
same verified model files, never downloading) doing the same work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work"
sys.path.insert(0, str(HERE))

from sections import batch, int8_floor, memory, providers, raw_session, services  # noqa: E402,I001

SIZES = {"800x600": (800, 600), "1920x1080": (1920, 1080), "4000x3000": (4000, 3000)}
REFERENCE = "rembg[cpu,cli]==2.0.86"


def photo(size: tuple[int, int]) -> bytes:
    """A seeded photo of the given size: a golden input scaled up, saved as JPEG quality 90."""
    src = Image.open(ROOT / "tests" / "fixtures" / "golden" / "inputs" / "astronaut.jpg")
    im = src.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered), "p95_ms": p95, "runs": len(ordered)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return {
        "cpu": cpu,
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "pillow": Image.__version__,
        "platform": platform.platform(),
        "providers": providers(),
        "gpu": gpu(),
    }


def gpu() -> str | None:
    """The accelerator's name and driver, where nvidia-smi answers; None on a CPU machine."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().replace("\n", "; ") or None


def cpu_flags() -> dict[str, bool]:
    """The instruction sets that change the INT8 figures most."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines()
                    if x.startswith("flags"))
    except (OSError, StopIteration):
        return {}
    flags = set(line.split(":", 1)[1].split())
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")}


# --- the floor ------------------------------------------------------------------------------
def floor(model_path: Path, runs: int) -> dict[str, Any]:
    """ONNX Runtime alone on a prepared 1×3×320×320 input, for each thread setting."""

    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    out: dict[str, Any] = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        sess = raw_session(model_path, threads)
        name = sess.get_inputs()[0].name
        for _ in range(3):
            sess.run(None, {name: x})
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            sess.run(None, {name: x})
            samples.append((time.perf_counter() - started) * 1e3)
        out[f"threads_{threads}"] = summary(samples)
    best = min(out.values(), key=lambda s: s["median_ms"])
    cores = os.cpu_count() or 1
    one = out["threads_1"]["median_ms"]
    out["best_ms"] = best["median_ms"]
    out["ideal_rps"] = cores * 1000.0 / one  # if cores scaled perfectly, which they do not
    out["concurrent_rps"] = _concurrent_floor(model_path, x, cores, runs)
    # images per second the floor allows on this machine, measured: one single-threaded run per
    # core at the same time, or one run at a time on all cores, whichever is more
    out["allowed_rps"] = max(out["concurrent_rps"], 1000.0 / best["median_ms"])
    return out


def _concurrent_floor(model_path: Path, x: np.ndarray, cores: int, runs: int) -> float:
    """Throughput of ``cores`` threads running the model at once, one thread each."""
    import threading

    sess = raw_session(model_path, 1)
    name = sess.get_inputs()[0].name
    per_thread = max(2, runs // cores)

    def work() -> None:
        for _ in range(per_thread):
            sess.run(None, {name: x})

    work()  # warm-up, and the arena sized for one run
    threads = [threading.Thread(target=work) for _ in range(cores)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return cores * per_thread / (time.perf_counter() - started)


# --- the library ----------------------------------------------------------------------------
def library(model: str, photos: dict[str, bytes], runs: int,
            reference: ReferenceWorker | None = None,
            floor_worker: FloorWorker | None = None) -> dict[str, Any]:
    """The library end to end, each run followed by one of the floor and one of the reference
    tool on the same photo, each in a process of its own: this machine's speed drifts by 10-60 %
    over minutes, so figures taken minutes apart are not comparable. (The floor runs in another
    process: right after a run of the library, a second ONNX Runtime session in the same
    process ran 40 % slower than alone, which would flatter the library.)"""
    from cleancut.config import load
    from cleancut.engine import Engine, Options

    engine = Engine(load())
    options = Options()
    out: dict[str, Any] = {}
    ref_out: dict[str, Any] = {}
    floor_out: dict[str, Any] = {}
    for label, data in photos.items():
        for _ in range(2):
            engine.process(data, options, model=model)
            if floor_worker:
                floor_worker.run()
            if reference:
                reference.run(label)
        totals, stages, ref_ms, floor_ms = [], {}, [], []
        for _ in range(runs):
            started = time.perf_counter()
            result = engine.process(data, options, model=model)
            totals.append((time.perf_counter() - started) * 1e3)
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            if floor_worker:
                floor_ms.append(floor_worker.run())
            if reference:
                ref_ms.append(reference.run(label))
        out[label] = {
            **summary(totals),
            "stages_median_ms": {k: statistics.median(v) for k, v in stages.items()},
        }
        if ref_ms:
            ref_out[label] = summary(ref_ms)
        if floor_ms:
            floor_out[label] = summary(floor_ms)
    return {"cleancut": out, "reference": ref_out, "floor": floor_out}


class _LineWorker:
    """A process that answers one line (milliseconds) for each line it is sent."""

    _proc: subprocess.Popen[str]
    _what: str

    def _start(self, argv: list[str], what: str, env: dict[str, str] | None) -> None:
        self._what = what
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, env=env)
        if self._readline() != "ready":
            raise RuntimeError(f"{what} did not start")

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self._what} exited ({self._proc.wait()})")
        return line.strip()

    def _ask(self, line: str) -> float:
        assert self._proc.stdin is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        return float(self._readline())

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)


class FloorWorker(_LineWorker):
    """ONNX Runtime alone (the floor's session: all cores, full optimisation, its defaults) in a
    process of its own, one run on a prepared 320² input each time it is asked, so that the floor
    alternates with the library run by run."""

    SCRIPT = (
        "import sys, time\n"
        "import numpy as np, onnxruntime as ort\n"
        "o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2])\n"
        "o.inter_op_num_threads = 1\n"
        "o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL\n"
        "s = ort.InferenceSession(sys.argv[1], o, providers=sys.argv[3].split(','))\n"
        "x = {s.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, 320, 320),"
        " dtype=np.float32)}\n"
        "s.run(None, x)\n"
        "print('ready', flush=True)\n"
        "for _line in sys.stdin:\n"
        "    t = time.perf_counter(); s.run(None, x)\n"
        "    print((time.perf_counter() - t) * 1e3, flush=True)\n"
    )

    def __init__(self, model_path: Path) -> None:
        self._start([sys.executable, "-c", self.SCRIPT, str(model_path),
                     str(os.cpu_count() or 1), ",".join(providers())], "the floor worker", None)

    def run(self) -> float:
        return self._ask("run")


# --- the reference tool ---------------------------------------------------------------------
def reference_python() -> Path:
    venv = WORK / "rembg-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        REFERENCE], check=True)
    return py


def reference_env(model_dir: Path) -> dict[str, str]:
    # U2NET_HOME points the reference at the same verified files; their md5 matches what it
    # expects, so it finds them and never downloads.
    return {**os.environ, "U2NET_HOME": str(model_dir), "OMP_NUM_THREADS": str(os.cpu_count())}


class ReferenceWorker(_LineWorker):
    """The reference tool in its own virtualenv and process, one session loaded, removing the
    background of one photo each time it is asked (so that its runs can alternate with ours)."""

    SCRIPT = (
        "import json, sys, time\n"
        "from rembg import remove, new_session\n"
        "session = new_session(sys.argv[1])\n"
        "photos = {k: open(p, 'rb').read() for k, p in json.loads(sys.argv[2]).items()}\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    t = time.perf_counter(); remove(photos[line.strip()], session=session)\n"
        "    print((time.perf_counter() - t) * 1e3, flush=True)\n"
    )

    def __init__(self, py: Path, model_dir: Path, model: str, photos: dict[str, bytes]) -> None:
        WORK.mkdir(exist_ok=True)
        paths = {}
        for label, data in photos.items():
            path = WORK / f"photo-{label}.jpg"
            path.write_bytes(data)
            paths[label] = str(path)
        self._start([str(py), "-c", self.SCRIPT, model, json.dumps(paths)],
                    "the reference tool", reference_env(model_dir))

    def run(self, label: str) -> float:
        return self._ask(label)


# --- the report -----------------------------------------------------------------------------
def ratios(report: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {}
    for model, lib in report["library"].items():
        paired = report.get("floor_interleaved", {}).get(model, {})
        if "800x600" in lib and "800x600" in paired:  # the floor run by run beside the library
            r[f"{model}_800x600_vs_floor"] = (lib["800x600"]["median_ms"]
                                              / paired["800x600"]["median_ms"])
        ref = report.get("reference", {}).get("library", {}).get(model, {})
        if "4000x3000" in lib and "4000x3000" in ref:
            r[f"{model}_4000x3000_speedup_vs_reference"] = (
                ref["4000x3000"]["median_ms"] / lib["4000x3000"]["median_ms"])
    for model, f in report.get("int8_floor", {}).items():
        r[f"{model}_int8_floor_speedup"] = f["speedup"]
    b = report.get("batch")
    if b:
        r["batch_p_vs_floor"] = b["cleancut_rps"] / b["floor_rps"]
        if "reference_rps" in b:
            r["batch_p_vs_reference_p"] = b["cleancut_rps"] / b["reference_rps"]
    svc = report.get("service", {})
    ref = svc.get("reference u2net", {})
    for label, levels in svc.items():
        if not label.startswith("cleancut"):
            continue
        key = label.split()[1]
        c8 = levels.get("8")
        if c8:
            r[f"service_{key}_c8_p99_over_p50"] = c8["p99_ms"] / c8["p50_ms"]
            if "8" in ref:
                r[f"service_{key}_c8_vs_reference_u2net_throughput"] = (
                    c8["throughput_rps"] / ref["8"]["throughput_rps"])
        if ref:
            r[f"service_{key}_peak_memory_vs_reference_u2net"] = (
                levels["peak_rss_mb"] / ref["peak_rss_mb"])
    mem = report.get("memory")
    if mem:
        r["memory_peak_12mp_burst_and_bombs_mb"] = mem["peak_mb"]
        r["memory_idle_after_warm_up_mb"] = mem["idle_after_warm_up"]["VmRSS"]
    return r


# The targets, by the suffix of the ratio's name.
TARGETS: dict[str, tuple[str, float]] = {
    "_800x600_vs_floor": ("<=", 1.15),
    "_4000x3000_speedup_vs_reference": (">=", 3.0),
    "batch_p_vs_floor": (">=", 0.9),
    "service_u2net-int8_c8_vs_reference_u2net_throughput": (">=", 1.6),
    "_c8_p99_over_p50": ("<=", 2.5),
    "service_u2net-int8_peak_memory_vs_reference_u2net": ("<=", 0.3),
    "memory_peak_12mp_burst_and_bombs_mb": ("<=", 1500),
    "memory_idle_after_warm_up_mb": ("<=", 900),
}


def _target(key: str) -> tuple[str, float] | None:
    return next((t for suffix, t in TARGETS.items() if key.endswith(suffix)), None)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# cleancut benchmark — {report['date']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, onnxruntime "
             f"{m['onnxruntime']}, Pillow {m['pillow']}, numpy {m['numpy']}. CPU flags: "
             + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m.get("cpu_flags", {}).items())
             + f". Execution providers: {', '.join(m.get('providers', ['CPUExecutionProvider']))}"
             + (f"; GPU: {m['gpu']}" if m.get("gpu") else "") + ".", "",
             "## Floor (ONNX Runtime alone, 1×3×320×320)", "",
             "| model | threads | median ms | p95 ms |", "|---|---|---|---|"]
    for model, f in report["floor"].items():
        for key, s in f.items():
            if key.startswith("threads_"):
                lines.append(f"| {model} | {key[8:]} | {s['median_ms']:.1f} | {s['p95_ms']:.1f} |")
    lines += ["", "What the floor allows, images/s on all cores:", "",
              "| model | measured: one 1-thread run per core at once | one run on all cores | "
              "if cores scaled perfectly | allowed |", "|---|---|---|---|---|"]
    for model, f in report["floor"].items():
        lines.append(f"| {model} | {f.get('concurrent_rps', float('nan')):.2f} | "
                     f"{1000.0 / f['best_ms']:.2f} | {f.get('ideal_rps', float('nan')):.2f} | "
                     f"{f['allowed_rps']:.2f} |")
    lines += ["", "## Library end to end (JPEG bytes in, PNG bytes out)", "",
              "Each cleancut run is followed by one run of the floor (ONNX Runtime alone, all "
              "cores, in a process of its own) and one of the reference tool on the same photo, "
              "so that all three see the same minutes of this machine.", "",
              "| model | photo | median ms | p95 ms | decode | preprocess | inference | mask | "
              "compose | encode | floor median ms | reference median ms |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, sizes in report["library"].items():
        ref = report.get("reference", {}).get("library", {}).get(model, {})
        paired = report.get("floor_interleaved", {}).get(model, {})
        for label, s in sizes.items():
            st = s["stages_median_ms"]
            ref_ms = f"{ref[label]['median_ms']:.1f}" if label in ref else "—"
            floor_ms = f"{paired[label]['median_ms']:.1f}" if label in paired else "—"
            lines.append(
                f"| {model} | {label} | {s['median_ms']:.1f} | {s['p95_ms']:.1f} | "
                + " | ".join(f"{st.get(k, 0):.1f}" for k in
                             ("decode", "preprocess", "inference", "mask", "compose", "encode"))
                + f" | {floor_ms} | {ref_ms} |")
    i8 = report.get("int8_floor")
    if i8:
        lines += ["", "## INT8 against fp32 on the floor (ONNX Runtime alone, all cores, "
                  "runs alternating)", "", "| model | fp32 ms | int8 ms | speed-up | runs |",
                  "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['fp32_ms']:.1f} | {v['int8_ms']:.1f} | {v['speedup']:.2f}× | "
                  f"{v['runs']} |" for k, v in i8.items()]
    b = report.get("batch")
    if b:
        lines += ["", "## Folders: `cleancut p` beside the floor and `rembg p` (a folder of "
                  f"{b['photos']} photos of 800×600 a round, {b['model']}, {b['rounds']} rounds "
                  "of floor / cleancut / reference on the same folder; whole commands, start-up "
                  "included)", "",
                  "| | images/s |", "|---|---|",
                  f"| the floor (ONNX Runtime alone, all cores) | {b['floor_rps']:.2f} |",
                  f"| cleancut p | {b['cleancut_rps']:.2f} |"]
        if "reference_rps" in b:
            lines.append(f"| rembg p | {b['reference_rps']:.2f} |")
    svc = report.get("service")
    if svc:
        lines += ["", "## Service (800×600 JPEG, bounded load on loopback; every server up at "
                  "once, each taking a window of requests in turn at each level)", "",
                  "| server | model | concurrency | requests | windows | throughput/s | p50 ms | "
                  "p95 ms | p99 ms | errors | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for label, levels in svc.items():
            for c, x in levels.items():
                if not c.isdigit():
                    continue
                lines.append(
                    f"| {label.split()[0]} | {levels['model']} | {c} | {x['requests']} | "
                    f"{x['windows']} | {x['throughput_rps']:.2f} | {x['p50_ms']:.0f} | "
                    f"{x['p95_ms']:.0f} | {x['p99_ms']:.0f} | {x['errors']} | "
                    f"{levels['peak_rss_mb']:.0f} |")
    mem = report.get("memory")
    if mem:
        lines += ["", f"## Memory of `cleancut serve` ({mem['model']}, default settings)", "",
                  f"Ready {mem['ready']['VmRSS']} MB; idle after warm-up (two 12 MP photos) "
                  f"{mem['idle_after_warm_up']['VmRSS']} MB; peak through twenty concurrent "
                  f"12 MP uploads (statuses {mem['statuses']}) and the hostile inputs of "
                  f"tests/bombs.py {mem['peak_mb']} MB; idle after them "
                  f"{mem['idle_after']['VmRSS']} MB."]
    lines += ["", "## Ratios", "", "| ratio | value | target | met |", "|---|---|---|---|"]
    for key, value in report["ratios"].items():
        target = _target(key)
        if target is None:
            lines.append(f"| {key} | {value:.3f} | | |")
            continue
        op, bound = target
        met = value <= bound if op == "<=" else value >= bound
        lines.append(f"| {key} | {value:.3f} | {op} {bound} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny inputs, 2 runs, no reference")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference tool")
    ap.add_argument("--no-service", action="store_true", help="skip the service measurements")
    ap.add_argument("--models", default="u2netp,u2net")
    ap.add_argument("--service-models", default="u2net-int8,u2net",
                    help="cleancut servers, each beside the reference tool's u2net")
    ap.add_argument("--no-batch", action="store_true", help="skip cleancut p against rembg p")
    ap.add_argument("--batch-photos", type=int, default=200)
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="measure the service's memory (12 MP burst, hostile inputs)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    import cleancut.config
    import cleancut.models

    settings = cleancut.config.load()
    models = [m for m in args.models.split(",") if m]
    runs = 2 if args.quick else args.runs
    sizes = {"64x48": (64, 48)} if args.quick else SIZES
    photos = {label: photo(size) for label, size in sizes.items()}
    store = cleancut.models.ModelStore(settings.model_dir)

    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "machine": machine(), "floor": {}, "library": {}}
    with_reference = not (args.quick or args.no_reference)
    if with_reference:
        report["reference"] = {"version": REFERENCE, "library": {}}
    for model in models:
        installed = store.resolve(model)
        print(f"floor {model}", file=sys.stderr)
        report["floor"][model] = floor(installed.path, runs)
        print(f"library {model}" + (" and the reference, in turn" if with_reference else ""),
              file=sys.stderr)
        worker = (ReferenceWorker(reference_python(), settings.model_dir, model, photos)
                  if with_reference else None)
        floor_worker = FloorWorker(installed.path)
        try:
            both = library(model, photos, runs, worker, floor_worker)
        finally:
            floor_worker.close()
            if worker:
                worker.close()
        report["library"][model] = both["cleancut"]
        report.setdefault("floor_interleaved", {})[model] = both["floor"]
        if with_reference:
            report["reference"]["library"][model] = both["reference"]

    int8_pairs = {m: (store.resolve(m).path, store.resolve(f"{m}-int8").path)
                  for m in models if store.is_installed(f"{m}-int8")}
    if int8_pairs:
        print("int8 against fp32 on the floor", file=sys.stderr)
        report["int8_floor"] = int8_floor(int8_pairs, runs)

    if not args.no_batch and not args.quick:
        print(f"folders: {args.batch_photos} photos", file=sys.stderr)
        reference = ((reference_python(), reference_env(settings.model_dir))
                     if with_reference else None)
        WORK.mkdir(exist_ok=True)
        report["batch"] = batch("u2net", store.resolve("u2net").path, args.batch_photos, 2,
                                WORK, reference, floor_runs=max(10, runs))

    if not args.no_service:
        levels = (1, 2) if args.quick else (1, 8)
        per_window = 4 if args.quick else 24
        windows = 1 if args.quick else 3
        svc_photo = photos["64x48"] if args.quick else photos["800x600"]
        cleancut = str(Path(sys.executable).parent / "cleancut")
        entries = {}
        for model in [m for m in args.service_models.split(",") if m]:
            entries[f"cleancut {model}"] = ([cleancut, "serve", "--models", model],
                                            os.environ.copy(), model, "/readyz")
        if with_reference:
            entries["reference u2net"] = (
                [str(reference_python().parent / "rembg"), "s", "--host", "127.0.0.1"],
                reference_env(settings.model_dir), "u2net", "/api")
        report["service"] = services(entries, svc_photo, levels, windows, per_window)

    if args.memory and not args.quick:
        print("memory", file=sys.stderr)
        report["memory"] = memory("u2net")

    report["ratios"] = ratios(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
