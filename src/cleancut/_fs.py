"""Small file-system helpers shared by the store and the CLI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import FileNotFound, FileTooLarge

__all__ = ["atomic_write_bytes", "read_image_file"]


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    half-written one: a temporary file beside it, flushed, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_image_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the image file ``path``, refusing more than ``max_bytes`` before reading."""
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
