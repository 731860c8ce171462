"""Property-based and mutation fuzzing of the decode path and the whole pipeline (u2netp).

Whatever the bytes, the library answers with an image or with a typed
:class:`~cleancut.errors.CleancutError`: never another exception, never a hang. Inputs are real
images Hypothesis builds (every mode, size and allowed format), then damaged the ways files get
damaged or forged: bit flips, truncation, byte overwrites, and splices of one file's bytes (a
PNG chunk, a JPEG segment) into another.

CI runs a short, derandomized pass; ``CLEANCUT_FUZZ_PROFILE=long`` runs thousands of examples
(see ``tests/fuzzing.py``).
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from cleancut.config import Settings
from cleancut.engine import Engine, Options, decode
from cleancut.errors import CleancutError

from .fuzzing import fuzz_settings

MODEL = "u2netp"
MAX_SECONDS = 5.0  # for one small input, decode or pipeline: more is a hang in the making

# (format, modes it can write) - the allowed input formats, with what Pillow encodes in each
FORMATS: dict[str, tuple[str, ...]] = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"),
    "JPEG": ("L", "RGB", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"),
    "GIF": ("L", "P"),
}
SAVE_OPTIONS: dict[str, st.SearchStrategy[dict[str, object]]] = {
    "PNG": st.fixed_dictionaries({"interlace": st.booleans(), "optimize": st.booleans()}),
    "JPEG": st.fixed_dictionaries({"quality": st.integers(5, 95), "progressive": st.booleans()}),
    "WEBP": st.fixed_dictionaries({"lossless": st.booleans(), "quality": st.integers(1, 100)}),
    "BMP": st.just({}),
    "TIFF": st.fixed_dictionaries(
        {"compression": st.sampled_from([None, "tiff_lzw", "tiff_adobe_deflate", "packbits"])}),
    "GIF": st.fixed_dictionaries({"interlace": st.booleans()}),
}


def _pixels(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65_536, size=(height, width), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 1 << 20, size=(height, width), dtype=np.int32))
    if mode == "F":
        return Image.fromarray(rng.random((height, width), dtype=np.float32) * 2)
    bands = len(Image.new(mode, (1, 1)).getbands())
    raw = rng.integers(0, 256, size=(height, width, bands), dtype=np.uint8)
    if mode == "1":
        return Image.fromarray(raw[..., 0] > 127)
    return Image.frombytes(mode, size, raw.tobytes())


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """A real encoded image: any allowed format, a mode it can hold, 1-64 px a side."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    im = _pixels(mode, size, draw(st.integers(0, 2**32 - 1)))
    params = draw(SAVE_OPTIONS[fmt])
    frames = draw(st.integers(1, 3)) if fmt in ("GIF", "WEBP", "TIFF", "PNG") else 1
    if frames > 1:
        params = {**params, "save_all": True,
                  "append_images": [im.transpose(Image.Transpose.ROTATE_180)] * (frames - 1)}
    buf = io.BytesIO()
    try:
        im.save(buf, fmt, **params)
    except (OSError, ValueError, KeyError, TypeError):  # a combination Pillow cannot write
        assume(False)
    return buf.getvalue()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real image damaged by one to four mutations."""
    data = bytearray(draw(images()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "splice", "duplicate",
                                     "delete"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=8))
            data[at:at + len(patch)] = patch
        elif kind == "splice":  # a slice of another real image (a chunk, a segment, a header)
            other = draw(images())
            start = draw(st.integers(0, len(other) - 1))
            data[at:at] = other[start:start + draw(st.integers(1, 256))]
        elif kind == "duplicate":  # repeat a region, as a doubled chunk or frame would
            data[at:at] = data[at:at + draw(st.integers(1, 512))]
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


def _decode_or_typed_error(data: bytes) -> Image.Image | None:
    started = time.perf_counter()
    try:
        image = decode(data).image
    except CleancutError:
        image = None
    assert time.perf_counter() - started < MAX_SECONDS
    return image


@pytest.fixture(scope="module")
def fuzz_engine(model_dir) -> Engine:
    return Engine(Settings(model_dir=model_dir))


@pytest.mark.timeout(300)
@fuzz_settings(60)
@given(images())
def test_every_generated_image_decodes(data: bytes) -> None:
    image = _decode_or_typed_error(data)
    assert image is not None  # an honest image of an allowed format always decodes
    assert image.width <= 64 and image.height <= 64


@pytest.mark.timeout(300)
@fuzz_settings(150, 20_000)
@given(mutated())
def test_mutated_images_decode_or_fail_typed(data: bytes) -> None:
    _decode_or_typed_error(data)


@pytest.mark.timeout(300)
@fuzz_settings(40)
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_fail_typed(data: bytes) -> None:
    _decode_or_typed_error(data)


@pytest.mark.timeout(300)
@fuzz_settings(20, 2_000)
@given(data=st.one_of(images(), mutated()),
       only_mask=st.booleans(), post_process=st.booleans(), matting=st.booleans(),
       fmt=st.sampled_from(["png", "webp"]),
       bgcolor=st.sampled_from([None, "#ffffff", "0,0,0,128"]))
def test_the_pipeline_answers_or_fails_typed(fuzz_engine: Engine, data: bytes, only_mask: bool,
                                             post_process: bool, matting: bool, fmt: str,
                                             bgcolor: str | None) -> None:
    options = Options.create(only_mask=only_mask, post_process_mask=post_process,
                             alpha_matting=matting, format=fmt, bgcolor=bgcolor)
    started = time.perf_counter()
    try:
        result = fuzz_engine.process(data, options, model=MODEL)
    except CleancutError:
        return
    finally:
        assert time.perf_counter() - started < 4 * MAX_SECONDS
    assert result.data
    out = Image.open(io.BytesIO(result.data))
    out.load()
    assert out.size == (result.width, result.height)
