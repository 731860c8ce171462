"""The Python API's promises: shared sessions, thread safety, offline inference, a quiet import."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pytest_socket import SocketBlockedError

import cleancut
from cleancut.config import Settings, load

from .imagetools import alpha, input_bytes, open_image

MODEL = "u2netp"


# --- sessions ------------------------------------------------------------------------------------


def test_a_session_is_shared_for_the_same_model_and_settings(settings: Settings,
                                                             model_dir: Path) -> None:
    first = cleancut.new_session(MODEL, settings=settings)
    assert cleancut.new_session(MODEL, settings=settings) is first
    # equal settings built separately share it too: the key is what changes a session
    assert cleancut.new_session(MODEL, settings=Settings(**settings.model_dump())) is first


def test_different_thread_settings_give_different_sessions(model_dir: Path) -> None:
    one = cleancut.new_session(MODEL, settings=Settings(model_dir=model_dir, intra_op_threads=1))
    two = cleancut.new_session(MODEL, settings=Settings(model_dir=model_dir, intra_op_threads=2))
    assert one is not two
    assert one.name == two.name == MODEL


def test_different_models_give_different_sessions(settings: Settings, model_dir: Path) -> None:
    small = cleancut.new_session("u2netp", settings=settings)
    large = cleancut.new_session("u2net", settings=settings)
    assert small is not large
    assert (small.name, large.name) == ("u2netp", "u2net")


def test_a_session_reports_the_providers_in_use(settings: Settings, model_dir: Path) -> None:
    session = cleancut.new_session(MODEL, settings=settings)
    assert "CPUExecutionProvider" in session.providers


def test_an_unavailable_provider_falls_back_to_the_cpu(model_dir: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    asked = Settings(model_dir=model_dir, providers=["NoSuchExecutionProvider"])
    with caplog.at_level("WARNING", logger="cleancut"):
        session = cleancut.new_session(MODEL, settings=asked)
    assert session.providers == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider" in caplog.text


def test_a_session_can_be_passed_to_remove(settings: Settings, model_dir: Path) -> None:
    session = cleancut.new_session(MODEL, settings=settings)
    photo = input_bytes("chelsea.jpg")
    by_session = cleancut.remove(photo, session=session, settings=settings, only_mask=True)
    by_name = cleancut.remove(photo, model=MODEL, settings=settings, only_mask=True)
    assert by_session == by_name


def test_one_session_serves_four_threads_at_once(settings: Settings, model_dir: Path) -> None:
    session = cleancut.new_session(MODEL, settings=settings)
    photos = [input_bytes(name) for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg",
                                             "rocket.jpg")]

    def run(data: bytes) -> bytes:
        return cleancut.remove(data, session=session, settings=settings, only_mask=True)

    alone = [run(p) for p in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(run, photos))
    assert together == alone


def test_process_reports_what_it_did(settings: Settings, model_dir: Path) -> None:
    result = cleancut.process(input_bytes("chelsea.jpg"), model=MODEL, settings=settings)
    assert result.model == MODEL
    assert result.source_format == "JPEG"
    assert (result.width, result.height) == (451, 300)
    assert result.media_type == "image/png"
    assert result.foreground is not None
    assert set(result.timings_ms) == {"decode", "preprocess", "inference", "mask", "compose",
                                      "encode"}
    assert result.warnings == []


# --- no network at run time ----------------------------------------------------------------------


@pytest.fixture
def fresh_model_dir(tmp_path: Path, model_dir: Path) -> Path:
    """A copy of the installed u2netp, so the session below is loaded and verified afresh."""
    fresh = tmp_path / "models"
    fresh.mkdir()
    for name in ("u2netp.onnx", "u2netp.json"):
        shutil.copyfile(model_dir / name, fresh / name)
    return fresh


@pytest.mark.disable_socket
def test_loading_and_inference_work_with_sockets_blocked(fresh_model_dir: Path,
                                                         settings: Settings) -> None:
    with pytest.warns(UserWarning, match="socket"), pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    offline = Settings(model_dir=fresh_model_dir)
    session = cleancut.new_session(MODEL, settings=offline)
    assert session is not cleancut.new_session(MODEL, settings=settings)
    out = open_image(cleancut.remove(input_bytes("chelsea.jpg"), settings=offline, model=MODEL,
                                     alpha_matting=True, bgcolor="white"))
    assert out.mode == "RGB"
    mask = alpha(open_image(cleancut.remove(input_bytes("chelsea.jpg"), settings=offline,
                                            model=MODEL, only_mask=True)))
    assert (mask > 127).any()


# --- nothing happens at import -------------------------------------------------------------------

_IMPORT_PROBE = textwrap.dedent(
    """
    import json, logging, os, socket, sys

    def refuse(*args, **kwargs):
        raise AssertionError("network used at import")

    socket.socket.connect = refuse
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    before = set(os.listdir(os.environ["PROBE_HOME"]))

    import cleancut, cleancut.config, cleancut.engine, cleancut.models, cleancut.errors

    print(json.dumps({
        "onnxruntime": "onnxruntime" in sys.modules,
        "pymatting": "pymatting" in sys.modules,
        "root_handlers": len(logging.getLogger().handlers),
        "cleancut_handlers": len(logging.getLogger("cleancut").handlers),
        "new_files": sorted(set(os.listdir(os.environ["PROBE_HOME"])) - before),
    }))
    """
)


def test_importing_cleancut_has_no_side_effects(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "PROBE_HOME": str(home),
        # settings that would be errors if anything read them at import
        "CLEANCUT_MAX_PIXELS": "not a number",
        "CLEANCUT_MODEL_DIR": str(home / "no-such-dir"),
    }
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"onnxruntime": False, "pymatting": False, "root_handlers": 0,
                    "cleancut_handlers": 0, "new_files": []}


def test_the_public_api_is_exported() -> None:
    from cleancut import engine, errors

    assert set(cleancut.__all__) >= {"remove", "new_session", "process", "configure_process",
                                     "Options", "OPTIONS", "Result", "Session", "CleancutError",
                                     "InvalidFileType", "FailedToReadImage", "ModelNotInstalled",
                                     "ModelChecksumMismatch"}
    for name in cleancut.__all__:
        value = getattr(cleancut, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert value is getattr(errors, name), name
        elif name in engine.__all__:
            assert value is getattr(engine, name), name  # loaded on first use
        else:
            assert callable(value) and value.__module__ == "cleancut", name


def test_a_pipeline_warning_reaches_the_library_caller(settings: Settings,
                                                       model_dir: Path) -> None:
    # a background threshold of 0 leaves the trimap without background, so matting falls back
    result = cleancut.process(input_bytes("chelsea.jpg"), model=MODEL, settings=settings,
                              alpha_matting=True, alpha_matting_background_threshold=0)
    assert len(result.warnings) == 1 and result.warnings[0].startswith("alpha matting failed")
    assert result.image.mode == "RGBA"


def test_the_library_honours_the_default_model_setting(model_dir: Path) -> None:
    settings = load({"CLEANCUT_MODEL_DIR": str(model_dir), "CLEANCUT_DEFAULT_MODEL": "u2netp"})
    assert cleancut.process(input_bytes("chelsea.jpg"), settings=settings).model == "u2netp"
    assert cleancut.new_session(settings=settings).name == "u2netp"


def test_arrays_round_trip_with_the_same_mask(settings: Settings, model_dir: Path) -> None:
    photo = input_bytes("chelsea.jpg")
    arr = np.asarray(open_image(photo).convert("RGB"))
    from_array = cleancut.remove(arr, model=MODEL, settings=settings, only_mask=True)
    from_bytes = alpha(open_image(cleancut.remove(photo, model=MODEL, settings=settings,
                                                  only_mask=True)))
    assert np.array_equal(from_array, from_bytes)


# --- large buffers -------------------------------------------------------------------------------

_FAULT_PROBE = textwrap.dedent(
    """
    import io, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from PIL import Image
    import cleancut

    buf = io.BytesIO()
    Image.open(sys.argv[1]).convert("RGB").resize((4000, 3000)).save(buf, "JPEG", quality=85)
    data = buf.getvalue()

    def faults_of_one_request():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cleancut.remove(data, model="u2netp")
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    # as in the service: the process is configured first, then requests run on worker threads
    cleancut.configure_process()
    small = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(small, "PNG")
    cleancut.remove(small.getvalue(), model="u2netp")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(faults_of_one_request).result()  # the first one sizes the heap
        print(pool.submit(faults_of_one_request).result())
    """
)


def _page_faults_of_second_request(model_dir: Path, keep: str) -> int:
    env = {**os.environ, "CLEANCUT_MODEL_DIR": str(model_dir),
           "CLEANCUT_KEEP_LARGE_BUFFERS": keep}
    photo = Path(__file__).parent / "fixtures" / "golden" / "inputs" / "astronaut.jpg"
    proc = subprocess.run([sys.executable, "-c", _FAULT_PROBE, str(photo)], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_a_12_megapixel_request_reuses_the_buffers_of_the_one_before(model_dir: Path) -> None:
    kept = _page_faults_of_second_request(model_dir, "true")
    fresh = _page_faults_of_second_request(model_dir, "false")
    # without it, each 48 MB buffer is new mmap'd memory, faulted in page by page
    assert fresh > 10_000
    assert kept < fresh / 4


_SIDE_EFFECT_PROBE = textwrap.dedent(
    """
    import io
    from PIL import Image
    import cleancut
    from cleancut.engine import allocator

    before = Image.MAX_IMAGE_PIXELS
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buf, "PNG")
    cleancut.remove(buf.getvalue(), model="u2netp")
    cleancut.new_session("u2netp")
    print(Image.MAX_IMAGE_PIXELS == before, allocator._done)
    """
)


def test_the_library_leaves_the_process_as_it_found_it(model_dir: Path) -> None:
    env = {**os.environ, "CLEANCUT_MODEL_DIR": str(model_dir), "CLEANCUT_MAX_PIXELS": "10000"}
    proc = subprocess.run([sys.executable, "-c", _SIDE_EFFECT_PROBE], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    pillow_untouched, allocator_tuned = proc.stdout.split()
    assert pillow_untouched == "True"  # Pillow's bomb guard is the caller's
    assert allocator_tuned == "False"  # glibc's thresholds too, unless configure_process()


_ARENA_PROBE = textwrap.dedent(
    """
    import sys
    import cleancut
    from cleancut.config import load
    from cleancut.engine import Engine

    if sys.argv[1] == "configured":
        cleancut.configure_process()
    session = Engine(load()).session("u2netp")
    print(session._session.get_session_options().enable_cpu_mem_arena)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
@pytest.mark.parametrize(("process", "arena"), [("configured", "False"), ("caller's", "True")])
def test_onnx_runtimes_arena_is_off_only_where_the_heap_keeps_large_buffers(
        model_dir: Path, process: str, arena: str) -> None:
    # without the heap's thresholds, every large tensor would be mapped and faulted in afresh
    # on each run (u2netp: 259 ms against 171 with the arena, runs interleaved)
    env = {**os.environ, "CLEANCUT_MODEL_DIR": str(model_dir)}
    proc = subprocess.run([sys.executable, "-c", _ARENA_PROBE, process], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == arena
