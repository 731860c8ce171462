"""Process-wide settings, applied only by the doors that own the process.

``cleancut serve`` and the CLI call :func:`configure_process` once at start-up; building an
:class:`~cleancut.engine.Engine` changes nothing outside it. A program that uses the library can
opt in with ``cleancut.configure_process()``; without it, the engine's own header checks
(:func:`~cleancut.engine.imageio.decode`) still refuse images over the limits before decoding.
"""

from __future__ import annotations

from PIL import Image

from ..config import Settings
from . import allocator

__all__ = ["configure_process"]


def configure_process(settings: Settings) -> None:
    """Set Pillow's own bomb guard to ``settings.max_pixels`` (it warns above this many pixels
    and refuses above twice as many) and, with ``keep_large_buffers``, glibc's thresholds."""
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    if settings.keep_large_buffers:
        allocator.keep_large_buffers()
