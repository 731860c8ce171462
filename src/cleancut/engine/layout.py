"""Output geometry: scale the photo to a pixel budget; crop to the subject with a margin, scale
it within the canvas and position it. Pure functions over PIL images."""

from __future__ import annotations

import math

from PIL import Image

from .options import Options

__all__ = ["fit", "apply_layout"]


def fit(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """``image`` scaled down (never up) to at most ``max_pixels``, keeping its aspect ratio."""
    width, height = image.size
    if max_pixels is None or width * height <= max_pixels:
        return image
    factor = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _margin_px(length: tuple[float, str], subject: int) -> int:
    value, unit = length
    px = value / 100 * subject if unit == "%" else value
    return int(round(min(px, 0.5 * subject, 500)))


def apply_layout(images: list[Image.Image], box: tuple[int, int, int, int] | None,
                 fills: list[tuple[int, ...] | int], options: Options) -> list[Image.Image]:
    """Apply the same geometry to each image (the result and its alpha); ``box`` is the subject
    (left, top, width, height) and ``fills`` the colour of new canvas area for each image."""
    if not options.geometry or box is None or not images:
        return images
    left, top, width, height = box
    canvas_w, canvas_h = images[0].size
    x, y = left, top
    if options.crop:
        margin = options.crop_margin
        m_top, m_right, m_bottom, m_left = (
            _margin_px(margin[0], height), _margin_px(margin[1], width),
            _margin_px(margin[2], height), _margin_px(margin[3], width))
        canvas_w, canvas_h = width + m_left + m_right, height + m_top + m_bottom
        x, y = m_left, m_top
    new_w, new_h = width, height
    if options.scale is not None:
        factor = options.scale * min(canvas_w / width, canvas_h / height)
        new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    if options.position is not None:
        x = round((canvas_w - new_w) * options.position[0])
        y = round((canvas_h - new_h) * options.position[1])
    out = []
    for image, fill in zip(images, fills, strict=True):
        subject = image.crop((left, top, left + width, top + height))
        if (new_w, new_h) != (width, height):
            subject = subject.resize((new_w, new_h), Image.Resampling.LANCZOS)
        canvas = Image.new(image.mode, (canvas_w, canvas_h), fill)
        canvas.paste(subject, (x, y))
        out.append(canvas)
    return out
