"""OpenVINO against ONNX Runtime's default CPU provider, for u2netp, u2net and ISNet, fp32 and INT8.

Runtimes measured (each a persistent worker process in its own virtualenv, so that runs can
alternate A, B, C, A, B, C ... on the same input):

  ort-cpu      ONNX Runtime (this venv, the product's), CPUExecutionProvider, 2 intra-op threads,
               sequential, ORT_ENABLE_ALL: the settings cleancut's Session uses
  ov-f32       OpenVINO's own runtime reading the ONNX file, CPU, PERFORMANCE_HINT=LATENCY,
               INFERENCE_NUM_THREADS=2, INFERENCE_PRECISION_HINT=f32
  ov-default   the same with OpenVINO's default precision hint (bf16 on CPUs with avx512_bf16/AMX)
  ortov        onnxruntime-openvino's OpenVINOExecutionProvider (device CPU, 2 threads, its
               default precision, which is FP32 on CPU), CPU EP as fallback
  nncf-*       OpenVINO running NNCF's own INT8 model (nncf.quantize on the OpenVINO model,
               calibrated on the same shipped photos, preprocessed as cleancut does)

INT8 rows with the ONNX runtimes use cleancut's own QDQ model (``cleancut models quantize``).
The onnxruntime-ep-openvino plugin is probed too (registered with
``onnxruntime.register_execution_provider_library`` into plain onnxruntime).

Masks: the first output (the sigmoid map at model resolution) of each runtime against ONNX
Runtime fp32's, as raw max/mean |diff|, and as the product compares them: min-max normalised
alpha on 0-255 (mean |diff|) and IoU of alpha > 0.5, on the timing photo and, for the 320² models,
on the held-out shipped photos (every other one of their 12 views each).

Run from the repository root with the product's venv:

    .venv/bin/python bench/research_openvino.py --int8-dir /tmp/ovq            # all models
    .venv/bin/python bench/research_openvino.py --models u2netp --runs 15
    .venv/bin/python bench/research_openvino.py --pip-check                    # pip conflict only

The OpenVINO venvs are made on first use under bench/.work/ (never in .venv):
bench/.work/ov-venv (openvino, nncf, onnx, numpy, pillow), bench/.work/ortov-venv
(onnxruntime-openvino) and bench/.work/ep-venv (onnxruntime==<ours> + onnxruntime-ep-openvino).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
DATA = WORK / "openvino"
THREADS = 2
PHOTO = ROOT / "tests" / "fixtures" / "golden" / "inputs" / "astronaut.jpg"
VENVS = {
    "ov": (WORK / "ov-venv", ["openvino", "nncf", "onnx", "numpy", "pillow"]),
    "ortov": (WORK / "ortov-venv", ["onnxruntime-openvino", "numpy"]),
    "ep": (WORK / "ep-venv", None),  # filled with our onnxruntime version at run time
}

# --- the worker: one script, run by each venv's python ----------------------------------------
WORKER = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    kind, model, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    threads = int(cfg.get("threads", 2))
    t0 = time.perf_counter()
    if kind in ("ort", "ortov"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if kind == "ort":
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        else:
            opts = {"device_type": "CPU", "num_of_threads": str(threads)}
            opts.update(cfg.get("ov_options", {}))
            sess = ort.InferenceSession(model, so,
                providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                provider_options=[opts, {}])
        name = sess.get_inputs()[0].name
        out_name = sess.get_outputs()[0].name
        info = {"version": ort.__version__, "providers": sess.get_providers(), "output": out_name}
        def infer(x):
            return sess.run([out_name], {name: x})[0]
    elif kind == "ov":
        import openvino as ov
        core = ov.Core()
        props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if cfg.get("precision"):
            props["INFERENCE_PRECISION_HINT"] = cfg["precision"]
        compiled = core.compile_model(core.read_model(model), "CPU", props)
        req = compiled.create_infer_request()
        info = {"version": ov.__version__, "output": compiled.outputs[0].get_any_name(),
                "precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
                "streams": compiled.get_property("NUM_STREAMS"),
                "threads": compiled.get_property("INFERENCE_NUM_THREADS")}
        def infer(x):
            req.infer({0: x})
            return req.get_output_tensor(0).data.copy()
    else:
        raise SystemExit(f"unknown kind {kind}")
    info["load_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(info), flush=True)
    x = None
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "input":
            x = np.load(args[0])
            print("ok", flush=True)
        elif cmd == "time":
            t = time.perf_counter(); infer(x)
            print((time.perf_counter() - t) * 1e3, flush=True)
        elif cmd == "dump":  # run each batch of an npy stack, save the first outputs
            xs = np.load(args[0])
            ys = np.stack([infer(np.ascontiguousarray(b[None]))[0, 0] for b in xs])
            np.save(args[1], ys.astype(np.float32))
            print("ok", flush=True)
""")

NNCF_BUILD = textwrap.dedent(r"""
    import sys, numpy as np, openvino as ov, nncf
    src, calib, out, keep = sys.argv[1:5]
    core = ov.Core()
    model = core.read_model(src)
    keep = [k for k in keep.split(",") if k]
    # the ONNX nodes cleancut keeps in fp32, by their OpenVINO names (Conv_787 -> the
    # Convolution Conv_787/WithoutBiases and its bias Add Conv_787)
    names = [op.get_friendly_name() for op in model.get_ordered_ops()
             if any(op.get_friendly_name() == k or op.get_friendly_name().startswith(k + "/")
                    for k in keep)]
    xs = np.load(calib)
    ds = nncf.Dataset([np.ascontiguousarray(b[None]) for b in xs])
    scope = nncf.IgnoredScope(names=names, validate=False) if names else None
    q = nncf.quantize(model, ds, subset_size=len(xs), ignored_scope=scope)
    ov.save_model(q, out)
    print(nncf.__version__)
""")


class Worker:
    def __init__(self, label: str, py: Path, kind: str, model: Path, cfg: dict[str, Any]):
        self.label = label
        self.proc = subprocess.Popen(
            [str(py), "-c", WORKER, kind, str(model), json.dumps({"threads": THREADS, **cfg})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(THREADS)},
        )
        self.info = json.loads(self._read())

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: worker exited ({self.proc.wait()})")
        return line.strip()

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


# --- setup ------------------------------------------------------------------------------------
def venv_python(key: str) -> Path:
    path, pkgs = VENVS[key]
    py = path / "bin" / "python"
    if not py.exists():
        import onnxruntime

        if pkgs is None:
            pkgs = [f"onnxruntime=={onnxruntime.__version__}", "onnxruntime-ep-openvino", "numpy"]
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], check=True)
    return py


def pip_version(py: Path, dist: str) -> str | None:
    out = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or None


def cpu_flags() -> dict[str, Any]:
    flags: set[str] = set()
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
    keys = [
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    ]
    return {"model": model, "cores": os.cpu_count(), **{k: k in flags for k in keys}}


def prepare(
    name: str, model_dir: Path, heldout: bool, calib_views: int, calib: bool = True
) -> dict[str, Path]:
    """Inputs through cleancut's own stages: the timing photo, held-out views, calibration views."""
    from cleancut.config import Settings
    from cleancut.engine import Engine
    from cleancut.quantize import shipped_inputs

    DATA.mkdir(parents=True, exist_ok=True)
    paths = {
        "photo": DATA / f"{name}-photo.npy",
        "heldout": DATA / f"{name}-heldout.npy",
        "calib": DATA / f"{name}-calib.npy",
    }
    wanted = {"photo": True, "heldout": heldout, "calib": calib}
    need = [k for k, p in paths.items() if not p.exists() and wanted[k]]
    if need:
        engine = Engine(Settings(model_dir=model_dir, intra_op_threads=THREADS))
        session = engine.session(name)
        if not paths["photo"].exists():
            np.save(paths["photo"], engine.model_input(PHOTO.read_bytes(), session))
        if heldout and not paths["heldout"].exists():
            xs = shipped_inputs(engine, "held-out", session)
            np.save(paths["heldout"], np.concatenate(xs[::2]))  # every other view: half the time
        if calib and not paths["calib"].exists():
            xs = shipped_inputs(engine, "calibration", session)
            step = max(1, len(xs) // calib_views)
            np.save(paths["calib"], np.concatenate(xs[::step][:calib_views]))
    return {k: p for k, p in paths.items() if wanted[k]}


def nncf_int8(name: str, fp32: Path, calib: Path) -> Path:
    """NNCF's default post-training INT8 (MinMax/bias correction, its own presets), keeping in
    fp32 the nodes cleancut's own recipe keeps (cleancut.quantize.DEFAULT_EXCLUDES)."""
    from cleancut.quantize import DEFAULT_EXCLUDES

    out = DATA / f"{name}-nncf-int8.xml"
    if not out.exists():
        started = time.perf_counter()
        keep = ",".join(DEFAULT_EXCLUDES.get(name, ()))
        subprocess.run(
            [str(venv_python("ov")), "-c", NNCF_BUILD, str(fp32), str(calib), str(out), keep],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"  built {out.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def probe_plugin() -> dict[str, Any]:
    """onnxruntime-ep-openvino into plain onnxruntime: does it register and offer a CPU device?"""
    script = textwrap.dedent("""
        import json, onnxruntime as ort, onnxruntime_ep_openvino as ep
        r = {"onnxruntime": ort.__version__}
        ort.register_execution_provider_library("openvino_ep", ep.get_library_path())
        r["registered"] = True
        r["ep_devices"] = [[d.ep_name, d.device.vendor, d.device.vendor_id, str(d.device.type)]
                           for d in ort.get_ep_devices()]
        r["available_providers"] = ort.get_available_providers()
        print(json.dumps(r))
    """)
    try:
        py = venv_python("ep")
        out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=120)
        r = (
            json.loads(out.stdout.strip().splitlines()[-1])
            if out.returncode == 0
            else {"error": out.stderr.strip()[-500:]}
        )
        r["plugin"] = pip_version(py, "onnxruntime-ep-openvino")
    except Exception as exc:  # record why and move on
        r = {"error": f"{type(exc).__name__}: {exc}"}
    r["openvino_devices"] = [
        d for d in r.get("ep_devices", []) if d[0] == "OpenVINOExecutionProvider"
    ]
    return r


def pip_check() -> dict[str, Any]:
    """What pip does with onnxruntime and onnxruntime-openvino in one environment."""
    venv = WORK / "pipcheck-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    res: dict[str, Any] = {}

    def step(label: str, *args: str) -> None:
        p = subprocess.run([py, "-m", "pip", *args], capture_output=True, text=True)
        probe = subprocess.run(
            [
                py,
                "-c",
                "import onnxruntime as o, importlib.metadata as m;"
                "print(o.__version__, o.get_available_providers(),"
                " [d.metadata['Name'] + '==' + d.version for d in m.distributions()"
                "  if 'onnxruntime' in d.metadata['Name']])",
            ],
            capture_output=True,
            text=True,
        )
        res[label] = {
            "rc": p.returncode,
            "pip_tail": [
                ln
                for ln in p.stdout.splitlines() + p.stderr.splitlines()
                if ln.startswith(
                    ("Successfully", "ERROR", "Attempting", "  Found existing", "WARNING: The")
                )
            ][-6:],
            "import": (probe.stdout or probe.stderr).strip().splitlines()[-1:],
        }

    step("both_in_one_command", "install", "-q", "onnxruntime", "onnxruntime-openvino")
    step("uninstall_openvino_build", "uninstall", "-y", "-q", "onnxruntime-openvino")
    step("reinstall_onnxruntime", "install", "-q", "--force-reinstall", "--no-deps", "onnxruntime")
    step("openvino_after_onnxruntime", "install", "-q", "onnxruntime-openvino")
    return res


# --- measuring --------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def compare(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Raw and product-style (min-max normalised, 0-255) differences over a stack of maps."""

    def norm(m: np.ndarray) -> np.ndarray:
        lo, hi = float(m.min()), float(m.max())
        return (m - lo) / (hi - lo) if hi - lo > 1e-12 else np.clip(m, 0, 1)

    maes, ious = [], []
    for a, b in zip(ref, out, strict=False):
        na, nb = norm(a), norm(b)
        maes.append(float(np.abs(na - nb).mean()) * 255)
        fa, fb = na > 0.5, nb > 0.5
        union = int(np.count_nonzero(fa | fb))
        ious.append(1.0 if union == 0 else int(np.count_nonzero(fa & fb)) / union)
    return {
        "raw_max": float(np.abs(ref - out).max()),
        "raw_mean": float(np.abs(ref - out).mean()),
        "mae255": statistics.fmean(maes),
        "worst_mae255": max(maes),
        "iou": statistics.fmean(ious),
        "worst_iou": min(ious),
        "count": len(maes),
    }


def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    model_dir = Path(args.model_dir)
    fp32 = model_dir / f"{name}.onnx"
    int8 = Path(args.int8_dir) / f"{name}-int8.onnx" if args.int8_dir else None
    heldout = (name != "isnet" or args.isnet_heldout) and not args.no_heldout
    want_int8 = name != "isnet" or args.isnet_int8
    inputs = prepare(
        name, model_dir, heldout, args.calib_views, calib=want_int8 and not args.no_nncf
    )
    ov_py, ortov_py = venv_python("ov"), venv_python("ortov")
    specs: list[tuple[str, str, Path, str, dict[str, Any]]] = [
        ("fp32", "ort-cpu", Path(sys.executable), "ort", {}),
        ("fp32", "ov-f32", ov_py, "ov", {"precision": "f32"}),
        ("fp32", "ov-default", ov_py, "ov", {}),
        ("fp32", "ortov", ortov_py, "ortov", {}),
        # OpenVINO's bf16 through the ONNX Runtime provider: precision=BF16 is refused on CPU
        # (the provider fails to create and ORT falls back to CPU), the hint via load_config works
        (
            "fp32",
            "ortov-bf16",
            ortov_py,
            "ortov",
            {
                "ov_options": {
                    "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})
                }
            },
        ),
    ]
    models = {"fp32": fp32}
    if want_int8 and int8 is not None and int8.exists():
        models["int8-qdq"] = int8
        specs += [
            ("int8-qdq", "ort-cpu", Path(sys.executable), "ort", {}),
            ("int8-qdq", "ov-f32", ov_py, "ov", {"precision": "f32"}),
            ("int8-qdq", "ov-default", ov_py, "ov", {}),
            ("int8-qdq", "ortov", ortov_py, "ortov", {}),
        ]
    if want_int8 and not args.no_nncf:
        models["int8-nncf"] = nncf_int8(name, fp32, inputs["calib"])
        specs += [
            ("int8-nncf", "ov-default", ov_py, "ov", {}),
            ("int8-nncf", "ov-f32", ov_py, "ov", {"precision": "f32"}),
        ]
    if args.runtimes:
        keep = set(args.runtimes.split(","))
        specs = [
            s
            for s in specs
            if f"{s[0]}/{s[1]}" in keep or s[1] in keep or (s[0], s[1]) == ("fp32", "ort-cpu")
        ]  # the reference always runs
    workers: list[tuple[str, Worker]] = []
    for prec, label, py, kind, cfg in specs:
        try:
            w = Worker(f"{prec}/{label}", py, kind, models[prec], cfg)
            w.ask(f"input {inputs['photo']}")
            workers.append((prec, w))
            print(f"  {prec:9} {label:11} loaded {w.info}", flush=True)
        except Exception as exc:
            print(f"  {prec:9} {label:11} FAILED: {exc}", flush=True)
    runs = args.isnet_runs if name == "isnet" else args.runs
    warmup = 1 if name == "isnet" else args.warmup
    times: dict[str, list[float]] = {w.label: [] for _p, w in workers}
    for i in range(warmup + runs):
        order = workers if i % 2 == 0 else workers[::-1]  # alternate the order too
        for _p, w in order:
            time.sleep(args.gap)  # let the previous worker's spinning threads go idle
            ms = float(w.ask("time"))
            if i >= warmup:
                times[w.label].append(ms)
        print(f"  round {i + 1}/{warmup + runs}", flush=True)
    # masks, after timing
    stacks: dict[str, dict[str, np.ndarray]] = {}
    for _p, w in workers:
        stacks[w.label] = {}
        for key in [k for k in ("photo", "heldout") if k in inputs]:
            out = DATA / f"{name}-{w.label.replace('/', '_')}-{key}-out.npy"
            w.ask(f"dump {inputs[key]} {out}")
            stacks[w.label][key] = np.load(out)
    for _p, w in workers:
        w.close()
    base = times.get("fp32/ort-cpu")
    rows = []
    for prec, w in workers:
        t = times[w.label]
        ref_same = times.get(f"{prec}/ort-cpu") or base
        row = {
            "model": name,
            "precision": prec,
            "runtime": w.label.split("/", 1)[1],
            "median_ms": statistics.median(t),
            "p95_ms": pct(t, 0.95),
            "runs": len(t),
            "vs_ort_same_precision": statistics.median(t) / statistics.median(ref_same)
            if ref_same
            else None,
            "vs_ort_fp32": statistics.median(t) / statistics.median(base) if base else None,
            "info": w.info,
        }
        for key, arr in stacks[w.label].items():
            row[f"mask_{key}"] = compare(stacks["fp32/ort-cpu"][key], arr)
        rows.append(row)
    return {"model": name, "rows": rows}


# --- the report -------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| model | precision | runtime | median ms | p95 ms | × ORT CPU same precision "
        "| × ORT CPU fp32 | raw max / mean abs diff | alpha MAE 0-255 (photo) "
        "| IoU>0.5 (photo) | held-out: mean / worst MAE 0-255, worst IoU |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for m in report["models"]:
        for r in m["rows"]:
            p = r["mask_photo"]
            h = r.get("mask_heldout")
            held = (
                f"{h['mae255']:.3f} / {h['worst_mae255']:.3f}, {h['worst_iou']:.4f}" if h else "–"
            )
            lines.append(
                f"| {r['model']} | {r['precision']} | {r['runtime']} | {r['median_ms']:.0f} "
                f"| {r['p95_ms']:.0f} | {r['vs_ort_same_precision']:.2f} | {r['vs_ort_fp32']:.2f} "
                f"| {p['raw_max']:.2g} / {p['raw_mean']:.2g} | {p['mae255']:.3f} "
                f"| {p['iou']:.4f} | {held} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="u2netp,u2net,isnet")
    ap.add_argument("--model-dir", default=str(Path.home() / ".local/share/cleancut/models"))
    ap.add_argument(
        "--int8-dir",
        default=None,
        help="folder holding cleancut's NAME-int8.onnx (cleancut models quantize)",
    )
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--isnet-runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--gap", type=float, default=0.05, help="seconds between two runs")
    ap.add_argument("--calib-views", type=int, default=72)
    ap.add_argument("--isnet-int8", action="store_true")
    ap.add_argument(
        "--isnet-heldout",
        action="store_true",
        help="check ISNet's masks on the held-out views too (slow: 1024²)",
    )
    ap.add_argument(
        "--runtimes",
        default="",
        help="only these, e.g. fp32/ov-default,ortov-bf16 (fp32/ort-cpu always runs)",
    )
    ap.add_argument("--no-nncf", action="store_true")
    ap.add_argument("--no-heldout", action="store_true")
    ap.add_argument("--pip-check", action="store_true", help="only the pip conflict check")
    ap.add_argument("--json", default=str(WORK / "openvino.json"))
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.pip_check:
        print(json.dumps(pip_check(), indent=1))
        return
    import onnxruntime

    report: dict[str, Any] = {
        "machine": {
            **cpu_flags(),
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "openvino": pip_version(venv_python("ov"), "openvino"),
            "nncf": pip_version(venv_python("ov"), "nncf"),
            "onnxruntime-openvino": pip_version(venv_python("ortov"), "onnxruntime-openvino"),
        },
        "threads": THREADS,
        "plugin": probe_plugin(),
        "models": [],
    }
    print(json.dumps(report, indent=1), flush=True)
    for name in args.models.split(","):
        print(f"== {name}", flush=True)
        report["models"].append(bench_model(name, args))
        Path(args.json).write_text(json.dumps(report, indent=1))
    report["machine"]["loadavg_end"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(markdown(report))


if __name__ == "__main__":
    main()
