"""Mask post-processing, alpha matting and compositing."""

from __future__ import annotations

import contextlib
import io
import logging
import math

import numpy as np
from PIL import Image

from .options import Color, Options

__all__ = [
    "post_process",
    "apply_source_alpha",
    "alpha_matting",
    "warm_up_matting",
    "compose",
    "foreground_box",
]

log = logging.getLogger("cleancut")

# 3×3 cross: skimage's disk(1), the reference tool's opening footprint
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def post_process(mask: Image.Image) -> Image.Image:
    """Smooth and harden a mask: grey opening (3×3 cross), Gaussian σ=2, threshold at 127."""
    from scipy import ndimage

    arr = np.asarray(mask, dtype=np.uint8)
    opened = ndimage.grey_opening(arr, footprint=_CROSS)
    blurred = ndimage.gaussian_filter(opened.astype(np.float64), sigma=2)
    return Image.fromarray(np.where(blurred < 127, 0, 255).astype(np.uint8), "L")


def apply_source_alpha(mask: Image.Image, color: Image.Image) -> Image.Image:
    """Where the input was already transparent it stays so: alpha = mask × source alpha."""
    if color.mode != "RGBA":
        return mask
    src = np.asarray(color.getchannel("A"), dtype=np.uint16)
    out = (np.asarray(mask, dtype=np.uint16) * src + 127) // 255
    return Image.fromarray(out.astype(np.uint8), "L")


def _trimap(mask: np.ndarray, fg: int, bg: int, erode: int) -> np.ndarray:
    from scipy import ndimage

    is_fg = mask > fg
    is_bg = mask < bg
    if erode > 0:  # 0 really means no erosion (the reference still erodes 1 px)
        structure = np.ones((erode, erode), dtype=bool)
        is_fg = ndimage.binary_erosion(is_fg, structure=structure)
        is_bg = ndimage.binary_erosion(is_bg, structure=structure, border_value=1)
    trimap = np.full(mask.shape, 128, dtype=np.uint8)
    trimap[is_fg] = 255
    trimap[is_bg] = 0
    return trimap


def warm_up_matting() -> list[str]:
    """Run matting once on a tiny image so its numba kernels are compiled (and cached on disk).

    The first compilation takes a minute or more; doing it at set-up or service start keeps it
    out of a user's request. Returns the warnings of that run (empty when matting works).
    """
    yy, xx = np.mgrid[0:48, 0:48]
    mask = np.clip((24 - np.hypot(yy - 24, xx - 24)) * 40 + 128, 0, 255).astype(np.uint8)
    color = Image.fromarray(np.dstack([mask, 255 - mask, mask // 2]).astype(np.uint8), "RGB")
    _, warnings = alpha_matting(color, Image.fromarray(mask, "L"), Options(), max_pixels=10_000)
    return warnings


def alpha_matting(
    color: Image.Image, mask: Image.Image, options: Options, *, max_pixels: int
) -> tuple[Image.Image, list[str]]:
    """Closed-form matting around the unknown band; falls back to the plain cutout on failure.

    Only the bounding box of the unknown band (plus a margin of known pixels) is solved, and that
    box is scaled down to at most ``max_pixels`` first, so cost is bounded whatever the image size.
    Returns the straight-alpha RGBA cutout and any warnings.
    """
    rgb = np.asarray(color.convert("RGB"))
    trimap = _trimap(
        np.asarray(mask),
        options.alpha_matting_foreground_threshold,
        options.alpha_matting_background_threshold,
        options.alpha_matting_erode_size,
    )
    alpha = trimap.astype(np.float64) / 255.0
    foreground = rgb.astype(np.float64) / 255.0
    unknown = np.argwhere(trimap == 128)
    if len(unknown):
        try:
            _solve_band(rgb, trimap, unknown, alpha, foreground, max_pixels)
        except Exception as exc:  # pymatting/numba raise assorted errors; never fail the request
            # the caller hears of it through Result.warnings (the CLI's stderr, a header)
            message = f"alpha matting failed ({type(exc).__name__}: {exc}); plain cutout returned"
            return compose(color, mask, Options()), [message]
    out_alpha = np.clip(alpha * 255.0, 0, 255).astype(np.uint8)
    out_rgb = np.clip(foreground * 255.0, 0, 255).astype(np.uint8)
    matted = _rgba(out_rgb, out_alpha)
    if color.mode == "RGBA":
        matted.putalpha(apply_source_alpha(matted.getchannel("A"), color))
    return matted, []


def _solve_band(
    rgb: np.ndarray,
    trimap: np.ndarray,
    unknown: np.ndarray,
    alpha: np.ndarray,
    foreground: np.ndarray,
    max_pixels: int,
) -> None:
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    margin = 8
    h, w = trimap.shape
    top, left = np.maximum(unknown.min(axis=0) - margin, 0)
    bottom, right = np.minimum(unknown.max(axis=0) + margin + 1, (h, w))
    crop_rgb = rgb[top:bottom, left:right]
    crop_tri = trimap[top:bottom, left:right]
    ch, cw = crop_tri.shape
    scale = min(1.0, math.sqrt(max_pixels / float(ch * cw)))
    if scale < 1.0:
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        small_rgb = np.asarray(Image.fromarray(crop_rgb).resize(size, Image.Resampling.LANCZOS))
        small_tri = np.asarray(Image.fromarray(crop_tri).resize(size, Image.Resampling.NEAREST))
    else:
        small_rgb, small_tri = crop_rgb, crop_tri
    img = small_rgb.astype(np.float64) / 255.0
    # pymatting print()s its solver notes; they must never reach a stdout that carries images
    notes = io.StringIO()
    with contextlib.redirect_stdout(notes):
        a = estimate_alpha_cf(img, small_tri.astype(np.float64) / 255.0)
        fg = estimate_foreground_ml(img, a)
    if notes.getvalue().strip():
        log.debug("pymatting: %s", " ".join(notes.getvalue().split()))
    if scale < 1.0:
        a = _resize_float(a, (cw, ch))
        fg = np.stack([_resize_float(fg[..., c], (cw, ch)) for c in range(3)], axis=-1)
    band = crop_tri == 128  # known pixels keep their exact values
    alpha[top:bottom, left:right][band] = np.clip(a, 0, 1)[band]
    foreground[top:bottom, left:right][band] = np.clip(fg, 0, 1)[band]


def _resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(
        Image.fromarray(arr.astype(np.float32), "F").resize(size, Image.Resampling.BILINEAR)
    )


def _rgba(rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    return Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA")


def compose(
    color: Image.Image, mask: Image.Image, options: Options, matted: Image.Image | None = None
) -> Image.Image:
    """The cutout (straight alpha, or the reference's premultiplied one) on an optional colour."""
    if matted is not None:
        out = matted
    elif options.premultiplied:
        # exactly the reference's composite: every channel scaled by the mask over transparent black
        out = Image.composite(color, Image.new("RGBA", color.size, 0), mask)
    else:
        out = color.copy() if color.mode == "RGBA" else color.convert("RGBA")
        out.putalpha(apply_source_alpha(mask, color))
    if options.bgcolor is not None:
        out = _on_background(out, options.bgcolor)
    return out


def _on_background(cutout: Image.Image, color: Color) -> Image.Image:
    """out = fg·α + bg·(1−α) (Porter-Duff over); opaque backgrounds give an RGB image."""
    background = Image.new("RGBA", cutout.size, color)
    out = Image.alpha_composite(background, cutout.convert("RGBA"))
    return out.convert("RGB") if color[3] == 255 else out


def foreground_box(alpha: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) of the pixels more opaque than half, or None if there are none."""
    box = alpha.point(lambda v: 255 if v > 127 else 0).getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    return left, top, right - left, bottom - top
