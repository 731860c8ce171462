"""Keep large image buffers in the C heap between requests (glibc only).

glibc serves every allocation above 32 MB with fresh ``mmap`` pages and unmaps them on free;
a 12 MP photo's RGBA buffer is 48 MB, so every request faults in each page of its big buffers
again. Measured on a 4000x3000 photo: ~60,000 page faults, ~170 ms of a ~950 ms request
(encoding alone 250 -> 100 ms), the same peak memory. Raising the mmap threshold to just above
the largest buffer a request can make (a 40 MP RGBA image is 160 MB) keeps them in the heap for
the next request; the trim threshold bounds what a process keeps while idle. One arena for
every thread: glibc's per-thread arenas grow in 64 MB heaps that are unmapped again once empty,
so buffers made on worker threads would fault anyway (threads that allocated before the first
Engine keep the arena they have; the service and the CLI make their Engine first).

What a burst kept is handed back once the work is over: :func:`release_free_memory`
(``malloc_trim``) returns every free page to the system. The service calls it after loading its
models and when it has been idle for a moment, so a busy service keeps its buffers and an idle one
holds little more than its models (ONNX Runtime's own arena is off in such a process for the same
reason: session.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import threading
from collections.abc import Callable

__all__ = ["keep_large_buffers", "large_buffers_kept", "release_free_memory"]

log = logging.getLogger("cleancut")

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
ARENA_MAX = 1
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_done = False
_lock = threading.Lock()


def keep_large_buffers() -> bool:
    """Set glibc's mmap and trim thresholds and its arena count for this process, once; False
    where the C library is not glibc or refuses a setting."""
    global _done
    with _lock:
        if _done:
            return True
        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt: Callable[[int, int], int] = libc.mallopt  # int mallopt(int, int)
            ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
            ok = mallopt(_M_ARENA_MAX, ARENA_MAX) == 1 and ok
        except (OSError, AttributeError) as exc:
            log.debug("malloc thresholds left as they are: %s", exc)
            return False
        _done = ok
        return ok


def large_buffers_kept() -> bool:
    """Whether :func:`keep_large_buffers` has set this process's thresholds."""
    return _done


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``); False where the
    C library is not glibc. Safe at any time from any thread; costs a walk over the heap."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim  # int malloc_trim(size_t pad)
        return trim(0) == 1
    except (OSError, AttributeError) as exc:
        log.debug("malloc_trim unavailable: %s", exc)
        return False
