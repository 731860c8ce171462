"""Small helpers the library tests share: reading results and comparing alpha the tolerant way.

Golden comparisons use the tolerances of ``fixtures/golden/README.md``: mean absolute difference of
alpha on the 0-255 scale and IoU of the hard (alpha > 127) masks; never hashes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
INPUTS = GOLDEN / "inputs"
EXPECTED = GOLDEN / "expected"


def input_bytes(name: str) -> bytes:
    return (INPUTS / name).read_bytes()


def open_image(data: bytes) -> Image.Image:
    """Decode encoded bytes fully (pixels loaded), as stored: no EXIF transpose."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def upright(data: bytes) -> Image.Image:
    """The input as a viewer shows it: decoded and turned by its EXIF orientation."""
    return ImageOps.exif_transpose(open_image(data))


def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def alpha(im: Image.Image) -> np.ndarray:
    """The alpha of a result as a uint8 array: the L mask itself, or the A channel."""
    if im.mode == "L":
        return np.asarray(im)
    assert im.mode in ("RGBA", "LA"), f"a result with alpha was expected, got mode {im.mode}"
    return np.asarray(im.getchannel("A"))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, on the arrays' own scale."""
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def iou(a: np.ndarray, b: np.ndarray, threshold: int = 127) -> float:
    """Intersection over union of the two masks' pixels above ``threshold``."""
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    fa, fb = a > threshold, b > threshold
    union = np.logical_or(fa, fb).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(fa, fb).sum() / union)
