"""cleancut: background removal with the U²-Net family of models, entirely offline.

>>> import cleancut
>>> png_bytes = cleancut.remove(open("photo.jpg", "rb").read())          # doctest: +SKIP
>>> session = cleancut.new_session("u2netp")                             # doctest: +SKIP
>>> mask = cleancut.remove(pil_image, session=session, only_mask=True)   # doctest: +SKIP

Importing this package loads no model, reads no setting and touches neither disk nor network.
"""

from __future__ import annotations

import os
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
    from .engine import OPTIONS, Options, Result, Session

__version__ = "0.1.0"

__all__ = [
    "remove",
    "new_session",
    "process",
    "configure_process",
    "Options",
    "OPTIONS",
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
    if name in ("Options", "OPTIONS", "Result", "Session"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'cleancut' has no attribute {name!r}")


def new_session(name: str | None = None, *, settings: Settings | None = None) -> Session:
    """A loaded, verified, reusable session of model ``name`` (default: the settings' default
    model, ``CLEANCUT_DEFAULT_MODEL``), shared process-wide.

    Raises :class:`ModelNotInstalled` (naming the command that installs it) when the weights
    are not in the model directory, and :class:`ModelChecksumMismatch` when they are not the
    right bytes.
    """
    from .engine import Engine

    return Engine(settings).session(name)


def configure_process(settings: Settings | None = None) -> None:
    """Opt in to the process-wide settings that ``cleancut serve`` and the CLI apply: Pillow's
    bomb guard at ``CLEANCUT_MAX_PIXELS`` and, with ``CLEANCUT_KEEP_LARGE_BUFFERS``, glibc's
    allocator thresholds. Nothing else in the library changes the process."""
    from .config import load
    from .engine.process import configure_process as apply

    apply(settings or load())


@overload
def remove(data: bytes | str | os.PathLike[str], **options: Any) -> bytes: ...
@overload
def remove(data: Image.Image, **options: Any) -> Image.Image: ...
@overload
def remove(data: np.ndarray, **options: Any) -> np.ndarray: ...


def remove(
    data: Any,
    *,
    session: Session | None = None,
    settings: Settings | None = None,
    hints: Any = None,
    **options: Any,
) -> Any:
    """Remove the background of ``data``; the result is of the same kind.

    - ``bytes`` or a path → encoded bytes (``format``: png, webp or jpeg; ``quality`` makes WebP
      lossy and sets JPEG quality);
    - a PIL image → a PIL image (RGBA cutout, L mask, or RGB on an opaque ``bgcolor``);
    - a numpy array (H×W, H×W×3 or H×W×4, uint8) → a numpy array of the result.

    ``options`` are those of :class:`cleancut.Options` (``model``, ``only_mask``, ``bgcolor``,
    ``alpha_matting``, ...; ``cleancut.OPTIONS`` lists them with their help); ``model``
    defaults to ``CLEANCUT_DEFAULT_MODEL`` (u2net), and ``session`` (from :func:`new_session`)
    overrides it. ``premultiplied=True`` reproduces the reference tool's cutout (RGB scaled by
    alpha); the default is a correct straight-alpha cutout. ``hints`` (an image of the photo's
    size, as bytes, a path, a PIL image or an array: white keep, black remove, anything else no
    opinion) and the ``keep`` / ``remove`` boxes fix a bad cut. Raises only
    :class:`CleancutError` subclasses for bad input.
    """
    from ._fs import read_image_file
    from .engine import Engine, Options

    chosen = Options.create(**options)
    engine = Engine(settings)
    marks = _hint_image(hints, engine.limits.max_bytes)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return engine.process(bytes(data), chosen, model=session, hints=marks).data
    if isinstance(data, (str, os.PathLike)):
        return engine.process(read_image_file(Path(data), engine.limits.max_bytes), chosen,
                              model=session, hints=marks).data
    from PIL import Image, ImageOps

    if isinstance(data, Image.Image):
        return engine.cut(ImageOps.exif_transpose(data), chosen, model=session,
                          hints=marks).image
    import numpy as np

    if isinstance(data, np.ndarray):
        return np.asarray(engine.cut(_array_to_image(data), chosen, model=session,
                                     hints=marks).image)
    raise InvalidParameter(
        "data",
        f"cannot remove the background of a {type(data).__name__}; pass bytes, a path, "
        "a PIL image or a numpy array",
    )


def process(
    data: bytes, *, session: Session | None = None, settings: Settings | None = None,
    hints: Any = None, **options: Any
) -> Result:
    """Like :func:`remove` for bytes, but returns the full :class:`Result` (size, bounding box,
    per-stage timings, confidence, warnings) with the encoded output in ``Result.data``."""
    from .engine import Engine, Options

    engine = Engine(settings)
    return engine.process(bytes(data), Options.create(**options), model=session,
                          hints=_hint_image(hints, engine.limits.max_bytes))


def _hint_image(hints: Any, max_bytes: int) -> Any:
    """The hints as the engine takes them: encoded bytes (decoded under the limits) or a PIL
    image."""
    if hints is None or isinstance(hints, bytes):
        return hints
    if isinstance(hints, (bytearray, memoryview)):
        return bytes(hints)
    if isinstance(hints, (str, os.PathLike)):
        from ._fs import read_image_file

        return read_image_file(Path(hints), max_bytes)
    from PIL import Image

    if isinstance(hints, Image.Image):
        return hints
    import numpy as np

    if isinstance(hints, np.ndarray):
        return _array_to_image(hints, field="hints")
    raise InvalidParameter("hints", f"hints must be an image (bytes, a path, a PIL image or an "
                           f"array), not a {type(hints).__name__}")


def _array_to_image(arr: np.ndarray, field: str = "data") -> Image.Image:
    import numpy as np
    from PIL import Image

    if (
        arr.dtype != np.uint8
        or arr.ndim not in (2, 3)
        or (arr.ndim == 3 and arr.shape[2] not in (3, 4))
    ):
        raise InvalidParameter(
            field, f"arrays must be uint8 H×W, H×W×3 or H×W×4; got {arr.dtype} {arr.shape}"
        )
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(arr), mode)
