"""Folder jobs run as a bounded pipeline (read and decode ahead, finish and write behind the
inference in progress): the same outputs, the same report, and nothing lost on a stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from cleancut.batch import Batch
from cleancut.config import Settings
from cleancut.engine import Engine, Options
from tests.conftest import GOLDEN

CLEANCUT = str(Path(sys.executable).parent / "cleancut")
PHOTOS = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "logo.png", "camera.png"]


@pytest.fixture()
def folder(tmp_path: Path, model_dir: Path) -> Path:
    """Six photos with a corrupt one and an unreadable one between them."""
    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(PHOTOS):
        shutil.copy(GOLDEN / "inputs" / name, src / f"{i}-{name}")
    (src / "2b-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3)
    (src / "4b-empty.png").write_bytes(b"")
    return src


def test_outputs_are_those_of_one_photo_at_a_time(folder: Path, tmp_path: Path,
                                                  settings: Settings) -> None:
    engine = Engine(settings)
    options = Options.create(model="u2netp")
    batch = Batch(engine, options, "u2netp", folder, tmp_path / "out")
    batch.run(batch.scan())
    assert len(batch.report.done) == len(PHOTOS) and len(batch.report.failed) == 2
    for src in batch.report.done:
        alone = engine.process(src.read_bytes(), options, model="u2netp")
        assert batch.output_for(src).read_bytes() == alone.data, src.name


def test_the_report_keeps_input_order_with_failures_in_place(folder: Path,
                                                              tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    (out / "0-astronaut.png").parent.mkdir(parents=True)
    (out / "0-astronaut.png").write_bytes(b"kept")  # skipped, not redone
    proc = subprocess.run([CLEANCUT, "p", "-m", "u2netp", "--json", str(report), str(folder),
                           str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # some files failed
    data = json.loads(report.read_text())
    names = sorted(p.name for p in folder.iterdir())
    assert [Path(d["input"]).name for d in data["done"]] == [
        n for n in names if n not in ("0-astronaut.jpg", "2b-corrupt.jpg", "4b-empty.png")]
    assert data["skipped"] == [str(folder / "0-astronaut.jpg")]
    assert [Path(f["input"]).name for f in data["failed"]] == ["2b-corrupt.jpg", "4b-empty.png"]
    assert [f["reason"].split(":")[0] for f in data["failed"]] == ["invalid_file_type"] * 2
    assert "done 5, skipped 1 (output exists; --overwrite to redo), failed 2" in proc.stderr
    assert (out / "0-astronaut.png").read_bytes() == b"kept"


def test_an_error_that_is_no_photo_s_fault_stops_every_step_and_is_raised(
        folder: Path, tmp_path: Path, settings: Settings) -> None:
    batch = Batch(Engine(settings), Options.create(model="u2netp"), "u2netp", folder,
                  tmp_path / "out")

    def paths() -> Iterator[Path]:
        files = list(batch.scan())
        yield from files[:2]
        raise RuntimeError("the folder listing broke")

    with pytest.raises(RuntimeError, match="listing broke"):
        batch.run(paths())
    assert not [t for t in threading.enumerate() if t.name.startswith("cleancut-batch")]
    first = list(batch.scan())[:2]
    assert set(batch.report.done) <= set(first) and not batch.report.failed
    for src in first:  # stopped at once: each output is whole or absent
        if batch.output_for(src).exists():
            assert Image.open(batch.output_for(src)).mode == "RGBA"
    assert not list((tmp_path / "out").glob(".*.part"))


def test_ctrl_c_leaves_only_whole_outputs(tmp_path: Path, model_dir: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(40):
        shutil.copy(GOLDEN / "inputs" / PHOTOS[i % len(PHOTOS)], src / f"{i:02d}-{PHOTOS[i % 6]}")
    # As at a terminal: a suite started in the background (`cmd &` in a script) would hand its
    # children SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen([CLEANCUT, "p", "-m", "u2netp", str(src), str(out)],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out.is_dir() and len(list(out.glob("*.png"))) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, "no output appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    left = sorted(os.listdir(out))
    assert left and len(left) < 40
    assert not [n for n in left if n.startswith(".") or n.endswith(".part")], left
    for name in left:
        with Image.open(out / name) as im:
            im.load()  # every output there is whole
            assert im.mode == "RGBA"
