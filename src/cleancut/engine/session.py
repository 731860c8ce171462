"""ONNX Runtime sessions: created once per model and settings, shared by every thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelLoadFailed, ModelRunFailed, ProcessingTimeout
from ..models.catalog import ModelSpec
from ..models.store import InstalledModel, ModelStore
from . import allocator

__all__ = ["Session", "SessionKey", "SessionCache", "RunControl", "controlled_by"]

log = logging.getLogger("cleancut")


@dataclass(frozen=True)
class SessionKey:
    model_dir: str
    name: str
    providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int


class Session:
    """One loaded model. ``run`` is safe to call from several threads at once."""

    def __init__(
        self,
        installed: InstalledModel,
        *,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        self.spec: ModelSpec = installed.spec
        self.name = installed.spec.name
        self.sha256 = installed.sha256
        available = set(ort.get_available_providers())
        chosen = [p for p in providers if p in available]
        missing = [p for p in providers if p not in available]
        if missing:
            log.warning(
                "execution providers %s are not available in this onnxruntime build; using %s",
                ", ".join(missing),
                ", ".join(chosen) or "CPUExecutionProvider",
            )
        if not chosen:
            chosen = ["CPUExecutionProvider"]
        self._slots = _cpu_slots(intra_op_threads) if chosen[0] == _CPU else None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if allocator.large_buffers_kept():
            # No memory arena: it keeps the activations of the largest run for good (~0.6 GB
            # with u2net on a 12 MP burst). glibc's heap, with the thresholds of allocator.py,
            # keeps them while busy and gives them back when idle (release_free_memory). Without
            # an arena the memory pattern is one fresh block per run, faulted in page by page
            # (64,000 faults a u2netp run); tensor by tensor from the heap there are none.
            opts.enable_cpu_mem_arena = False
            opts.enable_mem_pattern = False
        # Else ONNX Runtime's arena, as it comes: in a process whose heap cleancut has not set up
        # (a library caller's), each tensor above glibc's default mmap threshold would be mapped
        # and faulted in afresh on every run, 1.5× the floor's time for u2netp (2026-12-02,
        # runs interleaved: 259 ms without an arena, 171 with, 183 with the thresholds set).
        started = time.perf_counter()
        try:
            self._session = ort.InferenceSession(
                str(installed.path), sess_options=opts, providers=chosen
            )
        except Exception as exc:  # onnxruntime raises untyped errors for unusable files
            raise ModelLoadFailed(f"ONNX Runtime cannot load {installed.path}: {exc}") from exc
        self.load_seconds = time.perf_counter() - started
        self._input_name = self._session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        """The execution providers actually in use, in priority order."""
        return list(self._session.get_providers())

    def run(self, batch: np.ndarray, run_options: Any = None) -> np.ndarray:
        """Run the model on a 1×3×H×W float32 batch; returns output 0.

        ``run_options`` (an ``onnxruntime.RunOptions``) defaults to the one of the
        :class:`RunControl` this thread runs under, if any; a run stopped through it raises
        :class:`~cleancut.errors.ProcessingTimeout`.
        """
        control = _CONTROL.get()
        if run_options is None and control is not None:
            run_options = control.run_options()
        with _slot(self._slots, control):
            try:
                out = self._session.run(None, {self._input_name: batch}, run_options)
            except Exception as exc:  # onnxruntime raises untyped errors; we check our own flag
                if run_options is not None and run_options.terminate:
                    raise ProcessingTimeout(_STOPPED) from exc
                raise ModelRunFailed(f"model {self.name!r} failed on its input "
                                     f"({type(exc).__name__}); see the service log") from exc
        result: np.ndarray = out[0]  # onnxruntime is untyped: run() returns a list of arrays
        return result

    def warm_up(self) -> None:
        width, height = self.spec.input_size
        self.run(np.zeros((1, 3, height, width), dtype=np.float32))


_CPU = "CPUExecutionProvider"
_STOPPED = "inference was stopped at the request's deadline (CLEANCUT_REQUEST_TIMEOUT_S)"
_lock = threading.Lock()
_slot_pools: dict[int, threading.Semaphore] = {}


def _cpu_slots(intra_op_threads: int) -> threading.Semaphore:
    """How many inferences may run on the CPU at once: as many as fit on the cores side by side.

    With every core in each run (the default) that is one: a second run at the same time would
    only share the same cores, with two activation buffers resident instead of one. Measured on
    2 cores, one run at a time gives the same throughput as two one-core runs, with ~25 % less
    memory. Other work of a request (decode, encode) still runs in parallel.
    """
    cores = os.cpu_count() or 1
    count = max(1, cores // (intra_op_threads or cores))
    with _lock:
        return _slot_pools.setdefault(count, threading.Semaphore(count))


@contextmanager
def _slot(slots: threading.Semaphore | None, control: RunControl | None) -> Iterator[None]:
    """Hold an inference slot; give up waiting for one once ``control`` is terminated."""
    if slots is None:
        yield
        return
    while not slots.acquire(timeout=0.05):
        if control is not None and control.terminated:
            raise ProcessingTimeout(_STOPPED)
    try:
        yield
    finally:
        slots.release()


class RunControl:
    """Stops, from any thread, the inference running under it (``onnxruntime.RunOptions``'s
    ``terminate`` flag); inferences started after :meth:`terminate` stop at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._options: Any = None
        self.terminated = False

    def run_options(self) -> Any:
        with self._lock:
            if self._options is None:
                import onnxruntime as ort

                self._options = ort.RunOptions()
                self._options.terminate = self.terminated
            return self._options

    def terminate(self) -> None:
        with self._lock:
            self.terminated = True
            if self._options is not None:
                self._options.terminate = True


_CONTROL: ContextVar[RunControl | None] = ContextVar("cleancut_run_control", default=None)


@contextmanager
def controlled_by(control: RunControl) -> Iterator[RunControl]:
    """Run the inferences of this block (this thread) under ``control``."""
    token = _CONTROL.set(control)
    try:
        yield control
    finally:
        _CONTROL.reset(token)


class SessionCache:
    """Process-wide sessions keyed on everything that changes them, not on the name alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, Session] = {}

    def get(
        self,
        store: ModelStore,
        name: str,
        *,
        providers: tuple[str, ...],
        intra_op_threads: int,
        inter_op_threads: int,
    ) -> Session:
        key = SessionKey(
            str(store.model_dir.resolve()), name, providers, intra_op_threads, inter_op_threads
        )
        with self._lock:
            session = self._sessions.get(key)
            if session is not None:
                return session
            installed = store.resolve(name)
            session = Session(
                installed,
                providers=providers,
                intra_op_threads=intra_op_threads,
                inter_op_threads=inter_op_threads,
            )
            self._sessions[key] = session
            return session
