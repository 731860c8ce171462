"""The `cleancut` command, end to end, as a user runs it: a real process, real files."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import GOLDEN

CLEANCUT = str(Path(sys.executable).parent / "cleancut")
PHOTO = GOLDEN / "inputs" / "coffee.jpg"


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLEANCUT, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], *needles: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("cleancut: error: ")
    for needle in needles:
        assert needle in err


def png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.fixture(scope="module", autouse=True)
def _models(model_dir: Path) -> None:
    """Every test here needs the default models installed."""


# --- i ---------------------------------------------------------------------------------------
def test_i_writes_a_transparent_png(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    proc = run("i", "-m", "u2netp", str(PHOTO), str(out))
    assert proc.returncode == 0, proc.stderr
    im = Image.open(out)
    assert im.format == "PNG" and im.mode == "RGBA" and im.size == (600, 400)
    alpha = np.asarray(im.getchannel("A"))
    assert alpha.min() == 0 and alpha.max() > 200


def test_i_picks_the_format_from_the_output_name(tmp_path: Path) -> None:
    out = tmp_path / "out.webp"
    assert run("i", "-m", "u2netp", str(PHOTO), str(out)).returncode == 0
    assert Image.open(out).format == "WEBP"


def test_i_reads_stdin_and_writes_stdout() -> None:
    proc = run("i", "-m", "u2netp", "-om", "-", "-", stdin=PHOTO.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert png(proc.stdout).mode == "L"


def test_i_into_a_reader_that_goes_away_stays_quiet(tmp_path: Path) -> None:
    # `cleancut i photo.jpg - | head -c 10`, with a cutout far larger than a pipe holds
    noise = np.random.default_rng(7).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    photo = tmp_path / "noise.png"
    Image.fromarray(noise).save(photo)
    proc = subprocess.Popen([CLEANCUT, "i", "-m", "u2netp", str(photo), "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1
    assert err == ""


def test_a_pipeline_warning_goes_to_stderr(tmp_path: Path) -> None:
    # a background threshold of 0 leaves the trimap without background, so matting falls back
    out = tmp_path / "out.png"
    proc = run("i", "-m", "u2netp", "-a", "-ab", "0", str(PHOTO), str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().startswith("cleancut: warning: alpha matting failed")
    assert png(out.read_bytes()).mode == "RGBA"


def test_i_json_report_has_the_confidence(tmp_path: Path) -> None:
    import json

    out, report = tmp_path / "out.png", tmp_path / "report.json"
    proc = run("i", "-m", "u2netp", "--json", str(report), str(PHOTO), str(out))
    assert proc.returncode == 0, proc.stderr
    body = json.loads(report.read_text())
    assert body["model"] == "u2netp" and 0.0 <= body["confidence"] <= 1.0
    assert body["output"] == str(out) and body["warnings"] == []
    assert {"decode", "inference", "encode"} <= set(body["timings_ms"])


def test_i_recognises_images_by_content_not_name(tmp_path: Path) -> None:
    disguised = tmp_path / "really-a-png.jpg"
    shutil.copy(GOLDEN / "inputs" / "logo.png", disguised)
    out = tmp_path / "out.png"
    assert run("i", "-m", "u2netp", str(disguised), str(out)).returncode == 0
    assert Image.open(out).size == (500, 500)


def test_i_on_a_background_colour_writes_jpeg(tmp_path: Path) -> None:
    out = tmp_path / "out.jpg"
    proc = run("i", "-m", "u2netp", "-bgc", "white", str(PHOTO), str(out))
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).format == "JPEG"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.jpg"], "no such file: missing.jpg"),
        (["-m", "nosuchmodel", str(PHOTO)], "unknown model 'nosuchmodel'"),
        (["-bgc", "#12345", str(PHOTO)], "bgcolor"),
        (["-af", "300", str(PHOTO)], "alpha_matting_foreground_threshold"),
        (["-ae", "65", str(PHOTO)], "alpha_matting_erode_size"),
        ([str(Path(__file__))], "not a supported image"),
    ],
    ids=[
        "missing-file",
        "unknown-model",
        "bad-colour",
        "threshold-range",
        "erode-range",
        "not-an-image",
    ],
)
def test_i_user_errors_are_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out.png"
    proc = run("i", *args, str(out))
    assert_one_line_error(proc, needle)
    assert list(tmp_path.iterdir()) == []


def test_i_truncated_image_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(PHOTO.read_bytes()[: PHOTO.stat().st_size // 2])
    proc = run("i", "-m", "u2netp", str(broken), str(tmp_path / "out.png"))
    assert_one_line_error(proc, "damaged or truncated")
    assert not (tmp_path / "out.png").exists()


def test_missing_model_names_the_command_that_installs_it(tmp_path: Path) -> None:
    proc = run(
        "i",
        str(PHOTO),
        str(tmp_path / "out.png"),
        env={"CLEANCUT_MODEL_DIR": str(tmp_path / "empty")},
    )
    assert_one_line_error(proc, "cleancut models pull u2net")


def test_bad_usage_is_a_usage_error() -> None:
    proc = run("i", "--no-such-flag", str(PHOTO))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr.decode()


# --- p ---------------------------------------------------------------------------------------
@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "shop" / "shoes").mkdir(parents=True)
    shutil.copy(PHOTO, src / "coffee.jpg")
    shutil.copy(GOLDEN / "inputs" / "chelsea.jpg", src / "shop" / "chelsea.jpg")
    shutil.copy(GOLDEN / "inputs" / "logo.png", src / "shop" / "chelsea.png")  # same stem
    shutil.copy(GOLDEN / "inputs" / "rocket.jpg", src / "shop" / "shoes" / "rocket.jpg")
    (src / "shop" / "shoes" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(600))
    (src / "notes.txt").write_text("not an image, and not named like one")
    return src


def test_p_mirrors_the_tree_and_reports_bad_files(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run("p", "-m", "u2netp", str(tree), str(out))
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == [
        "coffee.png",
        "shop/chelsea.jpg.png",
        "shop/chelsea.png.png",
        "shop/shoes/rocket.png",
    ]
    assert "done 4, skipped 0" in err and "failed 1" in err
    assert "corrupt.jpg" in err and "Traceback" not in err


def test_p_skips_existing_outputs_unless_overwrite(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run("p", "-m", "u2netp", str(tree), str(out))
    marker = out / "coffee.png"
    marker.write_bytes(b"kept")
    again = run("p", "-m", "u2netp", str(tree), str(out)).stderr.decode()
    assert "done 0, skipped 4" in again
    assert marker.read_bytes() == b"kept"
    run("p", "-m", "u2netp", "--overwrite", str(tree), str(out))
    assert Image.open(marker).mode == "RGBA"


def test_p_ignores_its_own_output_folder_inside_the_input(tree: Path) -> None:
    out = tree / "cutouts"
    run("p", "-m", "u2netp", str(tree), str(out))
    second = run("p", "-m", "u2netp", str(tree), str(out)).stderr.decode()
    assert "done 0, skipped 4" in second
    assert not (out / "cutouts").exists()


def test_p_watch_processes_files_that_arrive_later(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    proc = subprocess.Popen(
        [CLEANCUT, "p", "-m", "u2netp", "--watch", str(src), str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        seen = ""
        while "watching" not in seen:  # the initial pass is over and the watch has started
            line = proc.stderr.readline().decode()
            assert line, seen
            seen += line
        # written the way uploads land: a hidden partial file, then renamed into place
        partial = src / ".upload.part"
        partial.write_bytes(PHOTO.read_bytes())
        partial.rename(src / "late.jpg")
        (src / "sub").mkdir()
        shutil.copy(GOLDEN / "inputs" / "rocket.jpg", src / "sub" / "copied.jpg")
        expected = [out / "late.png", out / "sub" / "copied.png"]
        deadline = time.monotonic() + 120
        while not all(p.exists() for p in expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(p.exists() for p in expected)
        assert Image.open(expected[0]).mode == "RGBA"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "done 2" in err.decode() and "failed 0" in err.decode()
    assert not list(out.rglob(".*"))  # no partial outputs left behind


# --- b ---------------------------------------------------------------------------------------
def _frames(count: int, size: tuple[int, int] = (160, 120)) -> bytes:
    frame = Image.open(PHOTO).convert("RGB").resize(size)
    return frame.tobytes() * count


def test_b_turns_raw_frames_into_numbered_pngs(tmp_path: Path) -> None:
    pattern = str(tmp_path / "out-%04d.png")
    proc = run("b", "-m", "u2netp", "160", "120", "-o", pattern, stdin=_frames(3))
    assert proc.returncode == 0, proc.stderr
    outs = sorted(p.name for p in tmp_path.iterdir())
    assert outs == ["out-0001.png", "out-0002.png", "out-0003.png"]
    assert Image.open(tmp_path / "out-0002.png").size == (160, 120)


def test_b_writes_pngs_to_stdout() -> None:
    proc = run("b", "-m", "u2netp", "160", "120", stdin=_frames(2))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(b"\x89PNG\r\n\x1a\n") == 2


def test_b_reports_a_short_last_frame(tmp_path: Path) -> None:
    data = _frames(2)[:-100]
    proc = run("b", "-m", "u2netp", "160", "120", "-o", str(tmp_path / "f-%d.png"), stdin=data)
    assert_one_line_error(proc, "frame 2 is short")
    assert [p.name for p in tmp_path.iterdir()] == ["f-1.png"]


# --- models ----------------------------------------------------------------------------------
def test_models_list_shows_installed_and_verified() -> None:
    proc = run("models", "list", "--json")
    assert proc.returncode == 0
    import json

    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["u2net"]["installed"] and rows["u2net"]["verified"]
    assert rows["silueta"]["source"] == "import only"


def test_models_import_refuses_a_wrong_file(tmp_path: Path) -> None:
    fake = tmp_path / "u2netp.onnx"
    fake.write_bytes(b"not the weights")
    store = tmp_path / "store"
    proc = run("models", "import", "u2netp", str(fake), env={"CLEANCUT_MODEL_DIR": str(store)})
    assert_one_line_error(proc, "not installed")
    assert list(store.iterdir()) == []


def test_models_pull_of_an_import_only_model_points_at_import(tmp_path: Path) -> None:
    proc = run("models", "pull", "silueta", env={"CLEANCUT_MODEL_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert "cleancut models import silueta" in proc.stderr.decode()
