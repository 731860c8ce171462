"""Research: the gate for INT8 variants built with no data from the user.

    .venv/bin/python bench/research_int8.py [--models u2netp,u2netp-noexcl,u2net,isnet]

Each variant is built the way ``cleancut models pull NAME-int8`` builds it (the shipped
calibration photos, 12 views each), in a private model folder, installed with ``force`` so that a
failing candidate is still measured. Then, for each one: agreement with its fp32 parent on every
view of the held-out shipped photos (what the gate can see on a user's machine), and max Fβ / MAE
of fp32 and INT8 on the ECSSD sample (read in place from ``--eval``, default
../shared/eval/ecssd-100; what the gate must protect). ``u2netp-noexcl`` is u2netp without its
default fp32 nodes: the known bad variant (max Fβ 0.94 → 0.88) that a gate must refuse;
``u2netp-conv787`` keeps only one of the two, ``u2netp-clock`` / ``u2net-clock`` calibrate on one
blurred greyscale photo: variants between good and bad, to place the thresholds. The
figures are printed as Markdown; the chosen thresholds are in bench/results/int8.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cleancut.config import Settings, load  # noqa: E402
from cleancut.engine import Engine  # noqa: E402
from cleancut.engine.pipeline import normalise  # noqa: E402
from cleancut.evaluate import dataset_pairs, evaluate  # noqa: E402
from cleancut.quantize import quantize, shipped_inputs  # noqa: E402


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return platform.processor()
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}"
                     for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"))


def per_view(engine: Engine, fp32: str, int8: str) -> list[tuple[float, int, int]]:
    """(alpha MAE, intersection, union) of each held-out view, at the model's resolution."""
    a_s, b_s = engine.session(fp32), engine.session(int8)
    rows = []
    for batch in shipped_inputs(engine, "held-out", a_s):
        a = normalise(a_s.run(batch), a_s.spec)
        b = normalise(b_s.run(batch), b_s.spec)
        fa, fb = a > 0.5, b > 0.5
        rows.append((float(np.abs(a - b).mean()), int(np.count_nonzero(fa & fb)),
                     int(np.count_nonzero(fa | fb))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="u2netp,u2netp-noexcl,u2net,isnet")
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "ecssd-100"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    source = load().model_dir
    pairs, _ = dataset_pairs(Path(args.eval))
    out: dict[str, object] = {"cpu": cpu_flags(), "pairs": len(pairs)}
    for label in args.models.split(","):
        parent = label.split("-")[0]
        excludes: tuple[str, ...] = ("Conv_787",) if label.endswith("-conv787") else ()
        calibration = None
        if label.endswith("-clock"):  # one blurred greyscale photo: poor ranges on purpose
            calibration = Path(tempfile.mkdtemp(prefix="cleancut-int8-clock-"))
            shutil.copy(ROOT / "src" / "cleancut" / "calibration" / "clock.jpg", calibration)
        with tempfile.TemporaryDirectory(prefix="cleancut-int8-research-") as tmp:
            for suffix in (".onnx", ".json"):
                shutil.copy(source / f"{parent}{suffix}", Path(tmp) / f"{parent}{suffix}")
            engine = Engine(Settings(model_dir=Path(tmp), intra_op_threads=2))
            started = time.perf_counter()
            report = quantize(engine, parent, calibration, force=True, speed_gate=False,
                              exclude=excludes,
                              default_excludes=not label.endswith(("-noexcl", "-conv787")),
                              runs=10)
            built_s = time.perf_counter() - started
            rows = per_view(engine, parent, f"{parent}-int8")
            base = evaluate(engine, parent, pairs).summary()
            cand = evaluate(engine, f"{parent}-int8", pairs).summary()
        maes = [r[0] for r in rows]
        ious = [r[1] / r[2] if r[2] else 1.0 for r in rows]
        row = {
            "built_s": round(built_s, 1),
            "speedup": round(report.speedup, 2),
            "fp32_ms": round(report.fp32_ms, 1),
            "int8_ms": round(report.int8_ms, 1),
            "agree_mae_mean": round(statistics.fmean(maes), 5),
            "agree_mae_max": round(max(maes), 5),
            "agree_iou_pooled": round(sum(r[1] for r in rows) / max(1, sum(r[2] for r in rows)),
                                      5),
            "agree_iou_mean": round(statistics.fmean(ious), 5),
            "agree_iou_min": round(min(ious), 5),
            "per_view_iou": [round(v, 4) for v in ious],
            "per_view_mae": [round(v, 4) for v in maes],
            "ecssd_fp32": {"max_f": round(base["max_f"], 4), "mae": round(base["mae"], 4)},
            "ecssd_int8": {"max_f": round(cand["max_f"], 4), "mae": round(cand["mae"], 4)},
            "max_f_loss": round(base["max_f"] - cand["max_f"], 4),
            "mae_gain": round(cand["mae"] - base["mae"], 4),
        }
        out[label] = row
        print(label, json.dumps({k: v for k, v in row.items() if not k.startswith("per_")}),
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
