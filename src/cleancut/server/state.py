"""The service's state, kept on ``app.state.service``: settings, engine, metrics, the worker
pool and readiness. Routes reach it through :func:`service_of`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

from fastapi import Request

from ..config import Settings
from ..engine import Engine
from ..engine.allocator import release_free_memory
from ..engine.mask import warm_up_matting
from ..engine.refine import warm_up as warm_up_decontamination
from ..errors import CleancutError, NotReady
from .context import RequestContext
from .metrics import Metrics
from .workers import WorkerPool

__all__ = ["ServiceState", "service_of"]

log = logging.getLogger("cleancut.server")
T = TypeVar("T")


@dataclass
class ServiceState:
    settings: Settings
    engine: Engine
    metrics: Metrics
    pool: WorkerPool
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    loaded: dict[str, float] = field(default_factory=dict)  # model -> load seconds

    async def process(self, fn: Callable[[float], T], *, ctx: RequestContext | None = None,
                      deadline: float | None = None) -> T:
        """Run ``fn(deadline)`` on the worker pool under the request deadline (a monotonic time;
        default: request_timeout_s from now), once the models are warm. ``ctx`` gets the
        queue wait, for the access log."""
        if not self.ready.is_set():
            raise NotReady(self.load_error or "models are still loading; retry shortly")
        timeout = self.settings.request_timeout_s
        if deadline is None:
            deadline = time.monotonic() + timeout
        end = deadline

        def started(wait_s: float) -> None:
            if ctx is not None:
                ctx.queue_ms = wait_s * 1e3

        return await self.pool.run(lambda: fn(end), deadline=end, timeout_s=timeout,
                                   on_start=started)

    def load_models(self) -> None:
        """Load and warm every start-up model (runs on a thread; sets ``ready``)."""
        try:
            for name in self.settings.models:
                session = self.engine.session(name)
                session.warm_up()
                self.loaded[name] = session.load_seconds
                self.metrics.model_load.labels(model=name).set(session.load_seconds)
        except CleancutError as exc:
            self.load_error = f"start-up models could not be loaded: {exc.detail}"
            log.error("%s", self.load_error)
            return
        self.ready.set()
        self.metrics.ready.set(1)
        # Compile the matting kernels now (cached on disk after the first time) rather than in
        # the first request that asks for matting; readiness does not wait for it.
        for warning in warm_up_matting():
            log.warning("%s", warning)
        warm_up_decontamination()
        release_free_memory()  # what loading the models used on the way (about their size again)


def service_of(request: Request) -> ServiceState:
    return cast(ServiceState, request.app.state.service)
