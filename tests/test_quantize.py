"""`cleancut models quantize`: a real INT8 u2netp in a private model directory, then its gates.

No timing assertions here: the speed gate is exercised with a stubbed measurement, and the real
build runs with --force so a busy machine cannot fail it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cleancut import quantize as q
from cleancut.config import Settings
from cleancut.engine import Engine, Options
from cleancut.errors import InvalidParameter, ModelChecksumMismatch
from cleancut.models import ModelStore, get_spec
from tests.conftest import GOLDEN

pytest.importorskip("onnx", reason="the quantize extra (onnx, sympy) is not installed")
pytest.importorskip("sympy", reason="the quantize extra (onnx, sympy) is not installed")

CLEANCUT = str(Path(sys.executable).parent / "cleancut")
CALIBRATION = GOLDEN / "inputs"
PHOTO = GOLDEN / "inputs" / "coffee.jpg"


def fresh_store(root: Path, model_dir: Path) -> ModelStore:
    """A private model directory holding only a verified u2netp."""
    store = ModelStore(root)
    with open(model_dir / "u2netp.onnx", "rb") as fh:
        store.install_file(get_spec("u2netp"), fh, origin="test copy")
    return store


def run(model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEANCUT_MODEL_DIR": str(model_dir)}
    return subprocess.run(
        [CLEANCUT, *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("int8-models")
    fresh_store(root, model_dir)
    out = root.parent / "quantize.json"
    calibration = root.parent / "calibration"  # four photos keep the test quick; MinMax copes
    calibration.mkdir()
    for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copy(CALIBRATION / name, calibration)
    proc = run(
        root,
        "models", "quantize", "u2netp",
        "--calibration", str(calibration),
        "--runs", "3",
        "--force",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "u2netp-int8: floor" in proc.stdout and "installed at" in proc.stdout
    return root, json.loads(out.read_text())


def mask(engine: Engine, model: str) -> np.ndarray:
    result = engine.process(PHOTO.read_bytes(), Options.create(only_mask=True), model=model)
    return np.asarray(result.image) > 127


def test_int8_model_is_registered_and_verified(quantized: tuple[Path, dict]) -> None:
    root, report = quantized
    assert report["nodes_excluded"] == ["Conv_787", "Concat_786"]  # u2netp's default
    assert report["calibration_images"] == 4
    assert report["floor"]["fp32_ms"] > 0 and report["floor"]["int8_ms"] > 0
    store = ModelStore(root)
    assert "u2netp-int8" in store.names()
    meta = store.metadata("u2netp-int8")
    assert meta["derived_from"] == "u2netp"
    assert meta["parent_sha256"] == get_spec("u2netp").sha256
    assert meta["quantization"]["method"].startswith("static QDQ")
    installed = store.resolve("u2netp-int8")
    assert installed.sha256 == meta["sha256"] == report["sha256"]
    parent = get_spec("u2netp")
    assert installed.spec.input_size == parent.input_size
    assert installed.spec.mean == parent.mean and installed.spec.std == parent.std
    assert installed.path.stat().st_size < 0.5 * parent.size_bytes  # type: ignore[operator]
    assert not list(root.glob(".*.part"))


def test_int8_mask_matches_fp32(quantized: tuple[Path, dict]) -> None:
    root, _ = quantized
    engine = Engine(Settings(model_dir=root))
    assert engine.session("u2netp-int8").sha256 == engine.store.resolve("u2netp-int8").sha256
    a, b = mask(engine, "u2netp"), mask(engine, "u2netp-int8")
    assert (a & b).sum() / (a | b).sum() >= 0.9


def test_cli_runs_the_int8_model(quantized: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = quantized
    out = tmp_path / "cut.png"
    proc = run(root, "i", "-m", "u2netp-int8", str(PHOTO), str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_tampered_int8_file_is_refused(quantized: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = quantized
    for f in ("u2netp-int8.onnx", "u2netp-int8.json"):
        shutil.copy(root / f, tmp_path / f)
    data = bytearray((tmp_path / "u2netp-int8.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "u2netp-int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelChecksumMismatch):
        ModelStore(tmp_path).resolve("u2netp-int8")


# --- gates and errors, without building a real model ----------------------------------------
@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand the parent's own bytes in for the quantised file (fast; same behaviour)."""

    def build(parent, batches, out, exclude, workdir, **_recipe):  # type: ignore[no-untyped-def]
        shutil.copy(parent.path, out)

    monkeypatch.setattr(q, "build", build)


def test_speed_gate_refuses_and_leaves_nothing(
    tmp_path: Path, model_dir: Path, fake_build: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_store(tmp_path, model_dir)
    monkeypatch.setattr(q, "floor_ms", lambda *a, **k: (100.0, 80.0))  # 1.25×
    engine = Engine(Settings(model_dir=tmp_path))
    with pytest.raises(q.QuantizeRejected, match=r"1\.25× is below the 1\.7× gate") as info:
        q.quantize(engine, "u2netp", CALIBRATION, runs=3)
    assert info.value.measured.speedup == pytest.approx(1.25)
    assert not (tmp_path / "u2netp-int8.onnx").exists()
    assert not (tmp_path / "u2netp-int8.json").exists()
    # --force keeps it, and says which gate failed
    report = q.quantize(engine, "u2netp", CALIBRATION, runs=3, force=True)
    assert report.installed is not None and report.failures
    assert ModelStore(tmp_path).metadata("u2netp-int8")["quantization"]["gates_failed"]


def test_quality_gate_uses_the_evaluation_set(
    tmp_path: Path, model_dir: Path, fake_build: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_store(tmp_path / "models", model_dir)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    shutil.copy(PHOTO, calibration)
    monkeypatch.setattr(q, "floor_ms", lambda *a, **k: (200.0, 100.0))  # 2× passes
    quality = {
        "count": 1,
        "fp32": {"max_f": 0.95, "mae": 0.030},
        "int8": {"max_f": 0.94, "mae": 0.035},
        "max_f_loss": 0.01,
        "mae_gain": 0.005,
    }
    monkeypatch.setattr(q, "_quality", lambda *a, **k: quality)
    engine = Engine(Settings(model_dir=tmp_path / "models"))
    truth = GOLDEN / "expected" / "astronaut.u2netp.mask.png"
    pairs = [(GOLDEN / "inputs" / "astronaut.jpg", truth)]
    with pytest.raises(q.QuantizeRejected, match="max Fβ drops by 0.0100.*MAE rises by 0.0050"):
        q.quantize(engine, "u2netp", calibration, eval_pairs=pairs, runs=3)
    assert not (tmp_path / "models" / "u2netp-int8.onnx").exists()


def test_calibration_must_not_be_the_evaluation_set(tmp_path: Path, model_dir: Path) -> None:
    fresh_store(tmp_path, model_dir)
    engine = Engine(Settings(model_dir=tmp_path))
    pairs = [(PHOTO, PHOTO)]
    with pytest.raises(InvalidParameter, match="evaluation set"):
        q.quantize(engine, "u2netp", CALIBRATION, eval_pairs=pairs)


def test_unknown_exclude_node_is_refused(tmp_path: Path, model_dir: Path) -> None:
    fresh_store(tmp_path, model_dir)
    proc = run(
        tmp_path,
        "models", "quantize", "u2netp",
        "--calibration", str(CALIBRATION),
        "--exclude", "Conv_99999",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no node named Conv_99999" in proc.stderr
    assert not (tmp_path / "u2netp-int8.onnx").exists()


# --- INT8 with no data from the user -----------------------------------------------------------
SHIPPED = Path(q.__file__).parent / "calibration"


def test_shipped_photos_are_listed_with_source_and_licence() -> None:
    listing = json.loads((SHIPPED / "photos.json").read_text(encoding="utf-8"))["photos"]
    on_disk = sorted(p.name for p in SHIPPED.iterdir() if p.suffix == ".jpg")
    assert sorted(p["file"] for p in listing) == on_disk
    for photo in listing:
        assert photo["source"] and photo["licence"], photo
        assert photo["role"] in ("calibration", "held-out")
        assert any(word in photo["licence"] for word in ("CC0", "public domain",
                                                          "no known copyright"))
    roles = [p["role"] for p in listing]
    assert roles.count("held-out") >= 2 and roles.count("calibration") >= 4


def test_views_are_twelve_fixed_crops(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.open(SHIPPED / "coffee.jpg")
    views = q.views(image)
    assert len(views) == 12 and views[0].size == image.size
    assert [v.tobytes() for v in q.views(image)] == [v.tobytes() for v in views]


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pulled-int8")
    fresh_store(root, model_dir)
    proc = run(root, "models", "pull", "u2netp-int8")
    assert proc.returncode == 0, proc.stderr
    return root, proc.stdout


def test_pull_builds_the_int8_variant_from_shipped_photos(pulled: tuple[Path, str]) -> None:
    root, stdout = pulled
    assert "u2netp-int8: installed at" in stdout
    assert "held-out views" in stdout and "faster than u2netp on this CPU" in stdout
    store = ModelStore(root)
    meta = store.metadata("u2netp-int8")
    assert meta["derived_from"] == "u2netp"
    assert meta["parent_sha256"] == store.resolve("u2netp").sha256
    recipe = meta["quantization"]
    assert recipe["calibration"].startswith("shipped photos")
    assert recipe["calibration_images"] == 12 * 6  # six calibration photos, twelve views each
    assert "MinMax" in recipe["method"]
    agree = recipe["agreement"]
    assert agree["count"] == 12 * 2  # two held-out photos
    assert agree["mae"] <= q.AGREE_MAE_GATE and agree["iou"] >= q.AGREE_IOU_GATE
    assert store.resolve("u2netp-int8").sha256 == meta["sha256"]  # verified on load
    rows = [row for row in store.iter_status() if row["name"] == "u2netp-int8"]
    assert len(rows) == 1 and rows[0]["installed"] and rows[0]["verified"]  # listed once, built


def test_pull_again_keeps_the_verified_variant(pulled: tuple[Path, str]) -> None:
    root, _ = pulled
    before = (root / "u2netp-int8.onnx").stat().st_mtime_ns
    proc = run(root, "models", "pull", "u2netp-int8")
    assert proc.returncode == 0, proc.stderr
    assert "u2netp-int8: already installed and verified" in proc.stdout
    assert (root / "u2netp-int8.onnx").stat().st_mtime_ns == before


def test_the_agreement_gate_refuses_a_variant_that_strays(tmp_path: Path,
                                                          model_dir: Path) -> None:
    # without its two fp32 nodes u2netp's INT8 loses 0.05 max Fβ on ECSSD (bench/results/int8.md)
    fresh_store(tmp_path, model_dir)
    proc = run(tmp_path, "models", "quantize", "u2netp", "--no-default-excludes", "--runs", "3")
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("cleancut: error: u2netp-int8 not installed: masks differ from fp32")
    assert "--force installs it anyway" in err[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "u2netp-int8.onnx").exists()


def test_isnet_is_calibrated_to_a_percentile_and_the_unet_models_to_minmax() -> None:
    # MinMax ISNet: held-out IoU 0.29, max Fβ -0.09; percentile 99.99: 0.93, -0.0002 (int8.md)
    assert "percentile 99.99 calibration" in q.method_of("isnet")
    assert "MinMax" in q.method_of("u2net") and "MinMax" in q.method_of("u2netp")


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    with pytest.raises(q.QuantizeDependencyMissing, match=r"cleancut\[quantize\]"):
        q._deps()
