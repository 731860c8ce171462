"""LANCZOS resizing that uses every core on large images and gives Pillow's exact pixels.

Pillow resizes in two passes through an 8-bit intermediate, and releases the GIL while it
does. The order of the passes changes the pixels: horizontal first, except that Pillow 13
and later go vertical first when the height loses more than twice as many pixels as the width.
Each pass is split into strips that do not depend on each other (rows for the horizontal pass,
columns for the vertical one) and the strips are resized on a small thread pool; the result is
bit-for-bit what ``Image.resize`` returns.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import PIL
from PIL import Image

__all__ = ["lanczos"]

# Below this many pixels (input or output) the thread hand-off costs more than it saves.
PARALLEL_MIN_PIXELS = 2_000_000
# Modes resized channel by channel: RGBA/LA are premultiplied by Image.resize, which a split
# into passes would not reproduce exactly.
_SPLITTABLE = ("L", "RGB")

# Pillow 13 changed the order of the passes (see _vertical_first)
_VERTICAL_FIRST_RULE = int(PIL.__version__.split(".")[0]) >= 13

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=_parts(), thread_name_prefix="cleancut-resample"
            )
        return _pool


def _parts() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def lanczos(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``im.resize(size, LANCZOS)``, split over the cores when the image is large."""
    width, height = size
    big = max(im.width * im.height, width * height) >= PARALLEL_MIN_PIXELS
    if not big or im.mode not in _SPLITTABLE or _parts() < 2:
        return im.resize(size, Image.Resampling.LANCZOS)
    out = im
    for horizontal in (False, True) if _vertical_first(im.size, size) else (True, False):
        target = (width, out.height) if horizontal else (out.width, height)
        if target != out.size:
            out = _pass(out, target, horizontal=horizontal)
    return out if out is not im else im.copy()


def _vertical_first(src: tuple[int, int], dst: tuple[int, int]) -> bool:
    """Whether the installed Pillow runs the vertical pass first for this resize."""
    lost_rows = src[1] - dst[1]
    return _VERTICAL_FIRST_RULE and lost_rows > 0 and lost_rows > 2 * (src[0] - dst[0])


def _pass(im: Image.Image, size: tuple[int, int], *, horizontal: bool) -> Image.Image:
    """One direction of the resize, in strips across the other direction."""
    parts = _parts()
    across = im.height if horizontal else im.width
    cuts = [across * i // parts for i in range(parts + 1)]
    spans = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]

    def strip(span: tuple[int, int]) -> Image.Image:
        a, b = span
        if horizontal:
            return im.crop((0, a, im.width, b)).resize((size[0], b - a), Image.Resampling.LANCZOS)
        return im.crop((a, 0, b, im.height)).resize((b - a, size[1]), Image.Resampling.LANCZOS)

    out = Image.new(im.mode, size)
    for (a, _), piece in zip(spans, _executor().map(strip, spans), strict=True):
        out.paste(piece, (0, a) if horizontal else (a, 0))
    return out
