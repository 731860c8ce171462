"""Decompression bombs through the library: refused from the header, fast, without pixels.

The corpus is built in code (``tests/bombs.py``). Each bomb must raise its typed error from
:func:`cleancut.engine.decode` with the default limits, within a fraction of a second, and
allocate next to nothing: checked twice, with ``tracemalloc`` (Python allocations, in process)
and with the peak resident set of a child process (everything, Pillow's C buffers included).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image

from cleancut.config import Settings
from cleancut.engine import Engine, Limits, decode
from cleancut.engine.imageio import _count_frames
from cleancut.engine.process import configure_process
from cleancut.errors import ResolutionTooHigh

from . import bombs

BOMBS = bombs.corpus()
MAX_SECONDS = 1.0  # per bomb; most take well under 10 ms
MAX_TRACED_BYTES = 50_000_000  # Python allocations while refusing one bomb (input excluded)
MAX_RSS_GROWTH_KB = 50_000  # peak resident growth of a process while refusing one bomb
ROOT = Path(__file__).resolve().parents[1]


# --- the generators make real files: small versions decode in full -------------------------------


@pytest.mark.parametrize("n", [0, 1, 65_520, 65_521, 1 << 20, 3 * (1 << 20) + 17])
def test_zeros_zlib_inflates_to_exactly_n_zeros(n: int) -> None:
    assert zlib.decompress(bombs.zeros_zlib(n)) == bytes(n)


@pytest.mark.parametrize(("data", "size", "mode", "frames"), [
    pytest.param(bombs.png(41, 29), (41, 29), "RGB", 1, id="png"),
    pytest.param(bombs.png(41, 29, interlace=1), (41, 29), "RGB", 1, id="png-interlaced"),
    pytest.param(bombs.png(13, 7, bit_depth=16, color_type=6), (13, 7), "RGBA", 1, id="png-16"),
    pytest.param(bombs.png(13, 7, color_type=3), (13, 7), "P", 1, id="png-palette"),
    pytest.param(bombs.png(13, 7, bit_depth=1, color_type=0), (13, 7), "1", 1, id="png-1bit"),
    pytest.param(bombs.apng_claiming_frames(1), (1, 1), "RGB", 1, id="apng"),
    pytest.param(bombs.jpeg_with_size(16, 16, progressive=True), (16, 16), "RGB", 1, id="jpeg"),
    pytest.param(bombs.webp_canvas(4, 4), (4, 4), "RGB", 2, id="webp-canvas"),
    pytest.param(bombs.webp_vp8l_size(4, 4), (4, 4), "RGB", 1, id="webp-vp8l"),
    pytest.param(bombs.webp_frames(3), (4, 4), "RGB", 3, id="webp-frames"),
    pytest.param(bombs.gif((4, 4), frames=3), (4, 4), "P", 3, id="gif"),
    pytest.param(bombs.tiff(3, 2, pages=5), (3, 2), "L", 5, id="tiff"),
    pytest.param(bombs.bmp(2, -2), (2, 2), "RGB", 1, id="bmp"),
])
def test_the_generators_write_valid_images(data: bytes, size: tuple[int, int], mode: str,
                                           frames: int) -> None:
    # The same code that writes the bombs writes images Pillow decodes in full when the numbers
    # are honest: the bombs differ only in what their headers claim.
    im = Image.open(io.BytesIO(data))
    assert (im.size, im.mode, getattr(im, "n_frames", 1)) == (size, mode, frames)
    im.load()
    assert decode(data).image.size == size


def test_the_png_bombs_are_small_on_the_wire() -> None:
    sizes = {b.name: len(b.data) for b in BOMBS}
    assert 1_000_000 < sizes["png_20000x20000_rgb"] < 1_300_000  # the reference tool's "1 MB"
    assert all(size < 1_300_000 for size in sizes.values()), sizes


# --- every bomb: typed error, fast, no pixels -----------------------------------------------------


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("bomb", BOMBS, ids=[b.name for b in BOMBS])
def test_bomb_is_refused_before_pixels(bomb: bombs.Bomb) -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(bomb.error) as info:
            decode(bomb.data, Limits())
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert type(info.value) is bomb.error, info.value  # not a subclass or a neighbour
    assert info.value.status == bomb.status
    assert elapsed < MAX_SECONDS, f"{bomb.name} took {elapsed:.2f}s"
    assert peak < MAX_TRACED_BYTES, f"{bomb.name} traced {peak / 1e6:.1f} MB"


_CHILD = r"""
import io, json, re, sys, time
sys.path.insert(0, sys.argv[1])
from PIL import Image
from tests import bombs
from cleancut.engine import Limits, decode

def status(key):
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1))

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current VmRSS (Linux >= 4.0)
        return True
    except OSError:
        return False

corpus = {b.name: b for b in bombs.corpus()}
buf = io.BytesIO()
Image.new("RGB", (64, 64)).save(buf, "PNG")
decode(buf.getvalue())  # warm: plugins imported, allocator primed
out = {}
for name in sys.argv[2:]:
    bomb = corpus[name]
    resettable = reset_peak()
    before = status("VmRSS")
    started = time.perf_counter()
    try:
        decode(bomb.data, Limits())
        error = None
    except Exception as exc:
        error = type(exc).__name__
    out[name] = {"error": error, "seconds": time.perf_counter() - started,
                 "growth_kb": status("VmHWM") - before, "resettable": resettable}
print(json.dumps(out))
"""


def _measure(names: list[str]) -> dict[str, dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), *names], check=True,
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rss_growth() -> dict[str, dict[str, object]]:
    """Per bomb: the peak resident growth of a fresh process while it refuses that bomb."""
    names = [b.name for b in BOMBS]
    results = _measure(names)
    if not all(r["resettable"] for r in results.values()):
        # no clear_refs here (an old kernel, a sandbox): one process per bomb instead
        results = {name: _measure([name])[name] for name in names}
    for name, r in results.items():
        print(f"{name:34s} {r['growth_kb']:>8} kB {float(r['seconds']) * 1e3:8.1f} ms")
    return results


@pytest.mark.parametrize("bomb", BOMBS, ids=[b.name for b in BOMBS])
def test_bomb_does_not_grow_the_process(bomb: bombs.Bomb,
                                        rss_growth: dict[str, dict[str, object]]) -> None:
    result = rss_growth[bomb.name]
    assert result["error"] == bomb.error.__name__
    assert int(result["growth_kb"]) < MAX_RSS_GROWTH_KB, result  # type: ignore[call-overload]


# --- frame counting is bounded by the limit, not by the file ------------------------------------


def test_frame_counting_stops_at_the_limit_for_tiff() -> None:
    # Pillow's own count walks every IFD in quadratic time: this 9 MB file took 150 s.
    data = bombs.tiff(1, 1, pages=79_000)
    started = time.perf_counter()
    with pytest.raises(ResolutionTooHigh, match="CLEANCUT_MAX_FRAMES"):
        decode(data)
    assert time.perf_counter() - started < MAX_SECONDS


def test_frame_counting_stops_at_the_limit_for_gif() -> None:
    data = bombs.gif((1, 1), frames=400_000)  # 9 MB; Pillow's own count took about 2.6 s
    started = time.perf_counter()
    with pytest.raises(ResolutionTooHigh, match="CLEANCUT_MAX_FRAMES"):
        decode(data)
    assert time.perf_counter() - started < MAX_SECONDS


@pytest.mark.parametrize("make", [
    pytest.param(lambda n: bombs.tiff(2, 2, pages=n), id="tiff"),
    pytest.param(lambda n: bombs.gif((4, 4), frames=n), id="gif"),
    pytest.param(bombs.webp_frames, id="webp"),
])
def test_the_frame_limit_is_exact(make) -> None:
    limits = Limits(max_frames=5)
    decode(make(5), limits)
    with pytest.raises(ResolutionTooHigh):
        decode(make(6), limits)


def _pillow_multipage(fmt: str, frames: int, **params: object) -> bytes:
    ims = [Image.new("RGB", (5 + i, 4), (i * 40, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, fmt, save_all=True, append_images=ims[1:], **params)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "params"), [
    pytest.param("TIFF", {}, id="tiff"),
    pytest.param("TIFF", {"big_tiff": True}, id="bigtiff"),
    pytest.param("GIF", {"duration": 20}, id="gif"),
    pytest.param("GIF", {"duration": 20, "comment": b"x" * 600}, id="gif-comment"),
])
@pytest.mark.parametrize("frames", [1, 2, 7])
def test_the_bounded_count_agrees_with_pillow(fmt: str, params: dict[str, object],
                                              frames: int) -> None:
    data = _pillow_multipage(fmt, frames, **params)
    im = Image.open(io.BytesIO(data))
    assert _count_frames(im, data, 1000) == im.n_frames == frames
    assert _count_frames(im, data, 3) == min(frames, 3)


def test_a_tiff_ifd_loop_counts_once() -> None:
    data = bytearray(bombs.tiff(1, 1, pages=3))
    last_next = len(data) - 4
    data[last_next:] = (10).to_bytes(4, "little")  # the last page points back to the first
    im = Image.open(io.BytesIO(bytes(data)))
    assert _count_frames(im, bytes(data), 1000) == 3


# --- Pillow's own guard matches ours ------------------------------------------------------------


@pytest.mark.usefixtures("restore_pillow_bomb_guard")
@pytest.mark.parametrize("max_pixels", [40_000_000, 12_345_678])
def test_the_doors_set_pillows_bomb_guard_to_the_pixel_limit(max_pixels: int,
                                                              tmp_path: Path) -> None:
    configure_process(Settings(model_dir=tmp_path, max_pixels=max_pixels,
                               keep_large_buffers=False))
    assert max_pixels == Image.MAX_IMAGE_PIXELS


def test_an_engine_leaves_pillows_bomb_guard_alone(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    engine = Engine(Settings(model_dir=tmp_path, max_pixels=1234))
    assert before == Image.MAX_IMAGE_PIXELS and engine.limits.max_pixels == 1234


@pytest.mark.usefixtures("restore_pillow_bomb_guard")
def test_pillow_bomb_warning_as_error_is_still_typed() -> None:
    # Where warnings are errors, Pillow's DecompressionBombWarning (41-80 MP at the default
    # guard) surfaces from Image.open; it must still arrive as ResolutionTooHigh.
    Image.MAX_IMAGE_PIXELS = 40_000_000
    data = bombs.png(8_000, 6_000)  # 48 MP
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ResolutionTooHigh):
        decode(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ResolutionTooHigh):
            decode(data)
