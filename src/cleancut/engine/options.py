"""What a caller may ask of the pipeline, validated once at the edge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import ImageColor

from ..errors import InvalidParameter

__all__ = ["Options", "OutputFormat", "parse_color", "FORMATS"]

OutputFormat = Literal["png", "webp", "jpeg"]
FORMATS: tuple[OutputFormat, ...] = ("png", "webp", "jpeg")
_FORMAT_ALIASES = {"png": "png", "webp": "webp", "jpeg": "jpeg", "jpg": "jpeg"}

Color = tuple[int, int, int, int]


def parse_color(value: str | Sequence[int], field: str = "bgcolor") -> Color:
    """``#rrggbb``, ``#rrggbbaa``, ``#rgb``, a CSS colour name, or ``R,G,B[,A]`` (0-255 each)."""
    if not isinstance(value, str):
        parts: list[int | str] = list(value)
    else:
        text = value.strip()
        parts = [p.strip() for p in text.split(",")] if "," in text and "(" not in text else []
        if not parts:
            try:
                rgba = ImageColor.getrgb(text)
            except (ValueError, AttributeError):
                raise InvalidParameter(
                    field,
                    f"{field} {value!r} is not a colour; use #rrggbb, #rrggbbaa, a CSS name "
                    "such as 'white', or R,G,B[,A]",
                ) from None
            return (*rgba, 255)[:4] if len(rgba) == 3 else rgba  # type: ignore[return-value]
    if len(parts) not in (3, 4):
        raise InvalidParameter(field, f"{field} {value!r} needs 3 or 4 components R,G,B[,A]")
    try:
        ints = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise InvalidParameter(
            field, f"{field} {value!r} components must be integers 0-255"
        ) from None
    if any(not 0 <= c <= 255 for c in ints):
        raise InvalidParameter(field, f"{field} {value!r} components must be between 0 and 255")
    if len(ints) == 3:
        ints.append(255)
    return (ints[0], ints[1], ints[2], ints[3])


def _bounded(field: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(field, f"{field} must be an integer from {low} to {high}")
    if not low <= value <= high:
        raise InvalidParameter(field, f"{field} is {value}; it must be from {low} to {high}")
    return value


@dataclass(frozen=True)
class Options:
    """Everything that shapes one result. Build it with :meth:`create` to get validation."""

    only_mask: bool = False
    post_process_mask: bool = False
    alpha_matting: bool = False
    alpha_matting_foreground_threshold: int = 240
    alpha_matting_background_threshold: int = 10
    alpha_matting_erode_size: int = 10
    bgcolor: Color | None = None
    premultiplied: bool = False
    format: OutputFormat = "png"
    quality: int | None = None  # None: lossless WebP, JPEG quality 90

    @classmethod
    def create(
        cls,
        *,
        only_mask: bool = False,
        post_process_mask: bool = False,
        alpha_matting: bool = False,
        alpha_matting_foreground_threshold: int = 240,
        alpha_matting_background_threshold: int = 10,
        alpha_matting_erode_size: int = 10,
        bgcolor: str | Sequence[int] | None = None,
        premultiplied: bool = False,
        format: str = "png",
        quality: int | None = None,
    ) -> Options:
        fmt = _FORMAT_ALIASES.get(str(format).lower().strip())
        if fmt is None:
            raise InvalidParameter("format", f"format {format!r} is not one of png, webp, jpeg")
        color = None if bgcolor is None or bgcolor == "" else parse_color(bgcolor)
        return cls(
            only_mask=bool(only_mask),
            post_process_mask=bool(post_process_mask),
            alpha_matting=bool(alpha_matting),
            alpha_matting_foreground_threshold=_bounded(
                "alpha_matting_foreground_threshold", alpha_matting_foreground_threshold, 0, 255
            ),
            alpha_matting_background_threshold=_bounded(
                "alpha_matting_background_threshold", alpha_matting_background_threshold, 0, 255
            ),
            alpha_matting_erode_size=_bounded(
                "alpha_matting_erode_size", alpha_matting_erode_size, 0, 64
            ),
            bgcolor=color,
            premultiplied=bool(premultiplied),
            format=fmt,  # type: ignore[arg-type]
            quality=None if quality is None else _bounded("quality", quality, 1, 100),
        )
