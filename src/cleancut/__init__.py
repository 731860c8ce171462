"""cleancut: background removal with the U²-Net family of models, entirely offline.

>>> import cleancut
>>> png_bytes = cleancut.remove(open("photo.jpg", "rb").read())          # doctest: +SKIP
>>> session = cleancut.new_session("u2netp")                             # doctest: +SKIP
>>> mask = cleancut.remove(pil_image, session=session, only_mask=True)   # doctest: +SKIP

Importing this package loads no model, reads no setting and touches neither disk nor network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from .errors import (
    CleancutError,
    FailedToReadImage,
    FileNotFound,
    FileTooLarge,
    InputError,
    InvalidFileType,
    InvalidParameter,
    ModelChecksumMismatch,
    ModelError,
    ModelNotInstalled,
    ResolutionTooHigh,
    UnknownModel,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .config import Settings
    from .engine import Options, Result, Session

__version__ = "0.1.0"

__all__ = [
    "remove",
    "new_session",
    "process",
    "Options",
    "Result",
    "Session",
    "CleancutError",
    "InputError",
    "InvalidParameter",
    "UnknownModel",
    "FileNotFound",
    "FileTooLarge",
    "ResolutionTooHigh",
    "InvalidFileType",
    "FailedToReadImage",
    "ModelError",
    "ModelNotInstalled",
    "ModelChecksumMismatch",
]


def __getattr__(name: str) -> Any:
    # the engine (and with it numpy, Pillow, onnxruntime) is imported on first use only
    if name in ("Options", "Result", "Session"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'cleancut' has no attribute {name!r}")


def new_session(name: str = "u2net", *, settings: Settings | None = None) -> Session:
    """A loaded, verified, reusable session of model ``name``, shared process-wide.

    Raises :class:`ModelNotInstalled` (naming the command that installs it) when the weights
    are not in the model directory, and :class:`ModelChecksumMismatch` when they are not the
    right bytes.
    """
    from .engine import Engine

    return Engine(settings).session(name)


@overload
def remove(data: bytes | str | os.PathLike[str], **kwargs: Any) -> bytes: ...
@overload
def remove(data: Image.Image, **kwargs: Any) -> Image.Image: ...
@overload
def remove(data: np.ndarray, **kwargs: Any) -> np.ndarray: ...


def remove(
    data: Any,
    *,
    model: str = "u2net",
    session: Session | None = None,
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
    settings: Settings | None = None,
) -> Any:
    """Remove the background of ``data``; the result is of the same kind.

    - ``bytes`` or a path → encoded bytes (``format``: png, webp or jpeg; ``quality`` makes WebP
      lossy and sets JPEG quality);
    - a PIL image → a PIL image (RGBA cutout, L mask, or RGB on an opaque ``bgcolor``);
    - a numpy array (H×W, H×W×3 or H×W×4, uint8) → a numpy array of the result.

    ``premultiplied=True`` reproduces the reference tool's cutout (RGB scaled by alpha); the
    default is a correct straight-alpha cutout. ``bgcolor`` is ``#rrggbb``, ``#rrggbbaa``, a CSS
    colour name or ``R,G,B[,A]``. Raises only :class:`CleancutError` subclasses for bad input.
    """
    from .engine import Engine, Options

    options = Options.create(
        only_mask=only_mask,
        post_process_mask=post_process_mask,
        alpha_matting=alpha_matting,
        alpha_matting_foreground_threshold=alpha_matting_foreground_threshold,
        alpha_matting_background_threshold=alpha_matting_background_threshold,
        alpha_matting_erode_size=alpha_matting_erode_size,
        bgcolor=bgcolor,
        premultiplied=premultiplied,
        format=format,
        quality=quality,
    )
    engine = Engine(settings)
    chosen: str | Session = session if session is not None else model
    if isinstance(data, (bytes, bytearray, memoryview)):
        return engine.process(bytes(data), options, model=chosen).data
    if isinstance(data, (str, os.PathLike)):
        return engine.process(
            _read_path(Path(data), engine.limits.max_bytes), options, model=chosen
        ).data
    from PIL import Image, ImageOps

    if isinstance(data, Image.Image):
        return engine.cut(ImageOps.exif_transpose(data), options, model=chosen).image
    import numpy as np

    if isinstance(data, np.ndarray):
        return np.asarray(engine.cut(_array_to_image(data), options, model=chosen).image)
    raise InvalidParameter(
        "data",
        f"cannot remove the background of a {type(data).__name__}; pass bytes, a path, "
        "a PIL image or a numpy array",
    )


def process(
    data: bytes, *, model: str = "u2net", settings: Settings | None = None, **options: Any
) -> Result:
    """Like :func:`remove` for bytes, but returns the full :class:`Result` (size, bounding box,
    per-stage timings, warnings) with the encoded output in ``Result.data``."""
    from .engine import Engine, Options

    return Engine(settings).process(bytes(data), Options.create(**options), model=model)


def _read_path(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FileTooLarge(
                f"{path} is {size} bytes; limit is {max_bytes} (CLEANCUT_MAX_UPLOAD_BYTES)"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise FileNotFound(f"no such file: {path}") from None
    except IsADirectoryError:
        raise FileNotFound(f"{path} is a directory, not an image file") from None
    except PermissionError:
        raise FileNotFound(f"{path} cannot be read (permission denied)") from None


def _array_to_image(arr: np.ndarray) -> Image.Image:
    import numpy as np
    from PIL import Image

    if (
        arr.dtype != np.uint8
        or arr.ndim not in (2, 3)
        or (arr.ndim == 3 and arr.shape[2] not in (3, 4))
    ):
        raise InvalidParameter(
            "data", f"arrays must be uint8 H×W, H×W×3 or H×W×4; got {arr.dtype} {arr.shape}"
        )
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(arr), mode)
