"""Output geometry of the remove.bg-compatible route: size policy, crop and margin, scale and
position. Pure functions over PIL images; the pipeline itself stays the engine's."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from PIL import Image

from ..errors import InvalidParameter

__all__ = ["SIZES", "size_limit", "fit", "Layout", "parse_layout", "apply_layout"]

# remove.bg's size values -> most output pixels (None: the original, up to the service's limits)
SIZES: dict[str, int | None] = {
    "preview": 250_000, "small": 250_000, "regular": 250_000,
    "medium": 1_500_000, "hd": 4_000_000,
    "full": None, "4k": None, "50mp": None, "auto": None,
}

_LENGTH = re.compile(r"(\d{1,4}(?:\.\d{1,3})?)(px|%)?")
_POSITIONS = {"center": (0.5, 0.5), "top": (0.5, 0.0), "bottom": (0.5, 1.0),
              "left": (0.0, 0.5), "right": (1.0, 0.5)}


def size_limit(value: str) -> int | None:
    key = value.strip().lower()
    if key not in SIZES:
        raise InvalidParameter(
            "size", f"size {value!r:.40} is not one of preview, small, regular, medium, hd, "
            "full, 4k, 50MP, auto"
        )
    return SIZES[key]


def fit(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """``image`` scaled down (never up) to at most ``max_pixels``, keeping its aspect ratio."""
    width, height = image.size
    if max_pixels is None or width * height <= max_pixels:
        return image
    factor = math.sqrt(max_pixels / (width * height))
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Layout:
    crop: bool = False
    margin: tuple[tuple[float, str], ...] = ((0, "px"),) * 4  # top, right, bottom, left
    scale: float | None = None  # fraction of the canvas the subject fills
    position: tuple[float, float] | None = None  # fractions; None: where it was

    @property
    def is_identity(self) -> bool:
        return not self.crop and self.scale is None and self.position is None


def _percent(field: str, text: str, low: float, high: float) -> float:
    match = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3})?)%", text)
    if not match or not low <= float(match.group(1)) <= high:
        raise InvalidParameter(field, f"{field} {text!r:.40} must be a percentage from "
                               f"{low:g}% to {high:g}%")
    return float(match.group(1)) / 100


def parse_layout(crop: bool, crop_margin: str | None, scale: str | None,
                 position: str | None) -> Layout:
    margin: tuple[tuple[float, str], ...] = ((0, "px"),) * 4
    if crop_margin and crop_margin.strip():
        parts = crop_margin.split()
        lengths = []
        for part in parts:
            match = _LENGTH.fullmatch(part.lower())
            if not match:
                raise InvalidParameter("crop_margin", f"crop_margin {crop_margin!r:.40} must be "
                                       "1, 2 or 4 lengths such as 30px or 10%")
            lengths.append((float(match.group(1)), match.group(2) or "px"))
        if len(lengths) == 1:
            lengths *= 4
        elif len(lengths) == 2:
            lengths *= 2
        elif len(lengths) != 4:
            raise InvalidParameter("crop_margin", "crop_margin takes 1, 2 or 4 values")
        margin = tuple(lengths)
    scale_f = None
    if scale and scale.strip().lower() != "original":
        scale_f = _percent("scale", scale.strip(), 10, 100)
    pos: tuple[float, float] | None = None
    text = (position or "").strip().lower()
    if text in _POSITIONS:
        pos = _POSITIONS[text]
    elif text and text != "original":
        values = [_percent("position", p, 0, 100) for p in text.split()]
        if len(values) not in (1, 2):
            raise InvalidParameter("position", "position takes one or two percentages")
        pos = (values[0], values[-1])
    elif scale_f is not None and text != "original":
        pos = (0.5, 0.5)  # scaling the subject centres it unless told otherwise
    return Layout(crop=crop, margin=margin, scale=scale_f, position=pos)


def _margin_px(length: tuple[float, str], subject: int) -> int:
    value, unit = length
    px = value / 100 * subject if unit == "%" else value
    return int(round(min(px, 0.5 * subject, 500)))


def apply_layout(images: list[Image.Image], box: tuple[int, int, int, int] | None,
                 fills: list[tuple[int, ...] | int], layout: Layout) -> list[Image.Image]:
    """Apply the same geometry to each image (the result and its alpha); ``box`` is the subject
    (left, top, width, height) and ``fills`` the colour of new canvas area for each image."""
    if layout.is_identity or box is None or not images:
        return images
    left, top, width, height = box
    canvas_w, canvas_h = images[0].size
    x, y = left, top
    if layout.crop:
        m_top, m_right, m_bottom, m_left = (
            _margin_px(layout.margin[0], height), _margin_px(layout.margin[1], width),
            _margin_px(layout.margin[2], height), _margin_px(layout.margin[3], width))
        canvas_w, canvas_h = width + m_left + m_right, height + m_top + m_bottom
        x, y = m_left, m_top
    new_w, new_h = width, height
    if layout.scale is not None:
        factor = layout.scale * min(canvas_w / width, canvas_h / height)
        new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    if layout.position is not None:
        x = round((canvas_w - new_w) * layout.position[0])
        y = round((canvas_h - new_h) * layout.position[1])
    out = []
    for image, fill in zip(images, fills, strict=True):
        subject = image.crop((left, top, left + width, top + height))
        if (new_w, new_h) != (width, height):
            subject = subject.resize((new_w, new_h), Image.Resampling.LANCZOS)
        canvas = Image.new(image.mode, (canvas_w, canvas_h), fill)
        canvas.paste(subject, (x, y))
        out.append(canvas)
    return out
