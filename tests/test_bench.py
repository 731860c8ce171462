"""The benchmark harness runs (on tiny inputs; timings are its business, not the suite's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_harness_runs_on_tiny_inputs(tmp_path: Path, model_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--models", "u2netp",
         "--service-models", "u2netp", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "quick.json").read_text())
    assert report["floor"]["u2netp"]["best_ms"] > 0
    assert report["library"]["u2netp"]["64x48"]["runs"] == 2
    assert report["floor_interleaved"]["u2netp"]["64x48"]["runs"] == 2  # run by run beside it
    assert set(report["library"]["u2netp"]["64x48"]["stages_median_ms"]) == {
        "decode", "preprocess", "inference", "mask", "compose", "encode"}
    assert report["service"]["cleancut u2netp"]["2"]["errors"] == 0
    assert set(report["machine"]["cpu_flags"]) >= {"avx2", "avx512f", "avx512_vnni"}
    assert "u2netp_800x600_vs_floor" not in report["ratios"]  # no 800×600 photo in a quick run
    assert (tmp_path / "quick.md").read_text().startswith("# cleancut benchmark")
