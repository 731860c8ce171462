"""Parallel LANCZOS gives exactly Pillow's pixels, for every size the pipeline uses."""

import numpy as np
import pytest
from PIL import Image

from cleancut.engine import resample
from cleancut.engine.resample import lanczos


def _photo(width: int, height: int, mode: str) -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr.squeeze(), mode)


@pytest.mark.parametrize(
    ("src", "dst", "mode"),
    [
        ((4001, 2999), (320, 320), "RGB"),  # a large photo down to the model's input
        ((2999, 4001), (320, 320), "RGB"),
        ((320, 320), (4001, 2999), "L"),  # a mask back up to the photo's size
        ((320, 320), (1733, 2711), "L"),
        ((2500, 1000), (2500, 320), "RGB"),  # one direction only
        ((1000, 2500), (320, 2500), "L"),
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
