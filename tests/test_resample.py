"""Parallel LANCZOS gives exactly Pillow's pixels, for every size the pipeline uses."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cleancut.engine import resample
from cleancut.engine.resample import lanczos


def _photo(width: int, height: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


@pytest.mark.parametrize(
    ("src", "dst", "mode"),
    [
        ((4001, 2999), (320, 320), "RGB"),  # a large photo down to the model's input
        ((2999, 4001), (320, 320), "RGB"),
        ((320, 320), (4001, 2999), "L"),  # a mask back up to the photo's size
        ((320, 320), (1733, 2711), "L"),
        ((2500, 1000), (2500, 320), "RGB"),  # one direction only
        ((1000, 2500), (320, 2500), "L"),
        # Pillow 13 resizes vertically first when the height loses over twice the pixels the
        # width does: a tall portrait down to the model's input, a mask up to a panorama
        ((1000, 3000), (320, 320), "RGB"),
        ((320, 320), (8000, 300), "L"),
    ],
)
def test_split_resize_is_bit_exact(src, dst, mode):
    im = _photo(*src, mode)
    assert max(src[0] * src[1], dst[0] * dst[1]) >= resample.PARALLEL_MIN_PIXELS
    expected = im.resize(dst, Image.Resampling.LANCZOS)
    got = lanczos(im, dst)
    assert got.mode == expected.mode and got.size == expected.size
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_small_and_premultiplied_images_go_straight_to_pillow():
    rgba = Image.new("RGBA", (2000, 1500), (10, 20, 30, 128))
    assert np.array_equal(
        np.asarray(lanczos(rgba, (320, 320))),
        np.asarray(rgba.resize((320, 320), Image.Resampling.LANCZOS)),
    )
    small = _photo(64, 48, "RGB")
    assert np.array_equal(
        np.asarray(lanczos(small, (32, 24))),
        np.asarray(small.resize((32, 24), Image.Resampling.LANCZOS)),
    )


def test_resizing_to_the_same_size_returns_a_copy():
    im = _photo(2000, 1500, "L")
    out = lanczos(im, im.size)
    assert out is not im and np.array_equal(np.asarray(out), np.asarray(im))


@settings(max_examples=150, deadline=None)
@given(
    src=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    dst=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    mode=st.sampled_from(["L", "RGB"]),
)
def test_any_resize_split_into_strips_matches_pillow(src, dst, mode):
    im = _photo(*src, mode)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resample, "PARALLEL_MIN_PIXELS", 0)  # split even tiny images
        got = lanczos(im, dst)
    assert np.array_equal(np.asarray(got), np.asarray(im.resize(dst, Image.Resampling.LANCZOS)))
