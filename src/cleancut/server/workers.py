"""The bounded worker pool: a fixed number of threads and a bounded queue in front of them.

Admission is one non-blocking gate: when every worker is busy and the queue is full the request is
refused at once with :class:`~cleancut.errors.Overloaded` (503 + Retry-After) instead of piling up
memory. Every job carries the request's deadline; a job still queued at its deadline never starts,
and a running one stops at the engine's next stage boundary.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ..engine.allocator import release_free_memory
from ..engine.session import RunControl, controlled_by
from ..errors import Overloaded, ProcessingTimeout
from .metrics import Metrics

__all__ = ["WorkerPool"]

T = TypeVar("T")
IDLE_RELEASE_S = 2.0  # idle this long after the last job, the pool returns free memory


class WorkerPool:
    def __init__(self, workers: int, queue_size: int, metrics: Metrics) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="cleancut-worker")
        self._lock = threading.Lock()
        self._admitted = 0  # queued + running
        self._running = 0
        self._turn = 0  # counts admissions, so a release timer knows whether work came since
        metrics.workers.set(workers)
        metrics.queue_capacity.set(queue_size)

    @property
    def queued(self) -> int:
        with self._lock:
            return self._admitted - self._running

    def _publish(self) -> None:  # with self._lock held
        self._metrics.queue_depth.set(self._admitted - self._running)
        self._metrics.workers_busy.set(self._running)

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.queue_size:
                raise Overloaded(
                    f"all {self.workers} workers are busy and {self.queue_size} images are "
                    "already waiting (CLEANCUT_WORKERS, CLEANCUT_QUEUE_SIZE); retry shortly",
                    retry_after_s=1,
                )
            self._admitted += 1
            self._turn += 1
            self._publish()

    def _release(self, _future: Future[T]) -> None:
        with self._lock:
            self._admitted -= 1
            self._publish()
            if self._admitted:
                return
            turn = self._turn
        # a burst's buffers stay in the heap while work keeps coming (faulting them in again
        # costs ~15 % of a large photo's time); once idle they go back to the system
        timer = threading.Timer(IDLE_RELEASE_S, self._release_if_idle, (turn,))
        timer.daemon = True
        timer.start()

    def _release_if_idle(self, turn: int) -> None:
        with self._lock:
            if self._admitted or self._turn != turn:
                return
        release_free_memory()

    async def run(self, fn: Callable[[], T], *, deadline: float, timeout_s: float,
                  on_start: Callable[[float], None] | None = None) -> T:
        """Run ``fn`` on a worker; raise Overloaded at once when full, ProcessingTimeout at the
        deadline (``timeout_s`` is only quoted in the message). At the deadline the job is
        abandoned: it never starts if still queued, and its running inference is terminated.
        ``on_start(queue_wait_s)`` is called on the worker when the job starts."""
        self._admit()
        submitted = time.monotonic()
        control = RunControl()  # stops a running inference when the waiter gives up
        started = False

        def job() -> T:
            nonlocal started
            started = True
            with self._lock:
                self._running += 1
                self._publish()
            try:
                self._metrics.queue_wait.observe(time.monotonic() - submitted)
                if on_start is not None:
                    on_start(time.monotonic() - submitted)
                if time.monotonic() > deadline or control.terminated:
                    raise ProcessingTimeout(_timeout_detail(timeout_s, "waiting for a worker"))
                with controlled_by(control):
                    return fn()
            finally:
                with self._lock:
                    self._running -= 1
                    self._publish()

        try:
            future = self._executor.submit(job)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._admitted -= 1
                self._publish()
            raise Overloaded("the service is shutting down; retry shortly",
                             retry_after_s=5) from None
        future.add_done_callback(self._release)
        remaining = max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=remaining)
        except TimeoutError:
            self._abandon(future, control, started)
            raise ProcessingTimeout(_timeout_detail(timeout_s, "processing")) from None
        except asyncio.CancelledError:  # the client went away: its image is not wanted either
            self._abandon(future, control, started)
            raise

    def _abandon(self, future: Future[T], control: RunControl, started: bool) -> None:
        """Give up a job: a queued one never starts, a running one's inference is terminated
        (the engine also stops at its next stage boundary, past the deadline)."""
        control.terminate()
        if not future.done():
            self._metrics.abandoned.labels(where="running" if started else "queued").inc()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timeout_detail(timeout_s: float, where: str) -> str:
    return (f"the request ran past its {timeout_s:g} s deadline while {where} "
            "(CLEANCUT_REQUEST_TIMEOUT_S); try a smaller image or retry later")
