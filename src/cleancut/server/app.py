"""The app factory, the service state kept on ``app.state.service`` and the start-up sequence."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import FastAPI, Request

from .. import __version__
from ..config import Settings
from ..engine import Engine
from ..errors import CleancutError, NotReady
from . import errors, native, ops, removebg, ui
from .context import ContextMiddleware
from .metrics import Metrics
from .workers import WorkerPool

__all__ = ["build_app", "ServiceState", "service_of"]

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

    async def process(self, fn: Callable[[float], T]) -> T:
        """Run ``fn(deadline)`` on the worker pool under the request deadline (a monotonic time),
        once the models are warm."""
        if not self.ready.is_set():
            raise NotReady(self.load_error or "models are still loading; retry shortly")
        timeout = self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        return await self.pool.run(lambda: fn(deadline), deadline=deadline, timeout_s=timeout)

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


def service_of(request: Request) -> ServiceState:
    return request.app.state.service  # type: ignore[no-any-return]


def build_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    engine = engine or Engine(settings)
    metrics = Metrics()
    pool = WorkerPool(settings.effective_workers(), settings.effective_queue_size(), metrics)
    state = ServiceState(settings=settings, engine=engine, metrics=metrics, pool=pool)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Verify every start-up model now, so a missing or damaged file stops start-up with the
        # store's error; loading and warming then run off the event loop while /readyz says 503.
        for name in settings.models:
            engine.store.resolve(name)
        loader = asyncio.get_running_loop().run_in_executor(None, state.load_models)
        try:
            yield
        finally:
            pool.shutdown()
            if not loader.done():
                loader.cancel()

    app = FastAPI(
        title="cleancut",
        version=__version__,
        summary="Offline background removal with the U²-Net family of models.",
        description=(
            "The native API is under `/api`; `/v1.0/removebg` and `/v1.0/account` answer like "
            "remove.bg's API, so its client libraries work by changing the base URL. Errors are "
            '`{"errors": [{"code", "title", "detail"}], "request_id"}` with a stable `code`.'
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = state
    errors.install(app)
    app.include_router(native.router)
    app.include_router(removebg.router)
    app.include_router(ops.router)
    ui.install(app)
    app.add_middleware(ContextMiddleware, metrics=metrics)
    return app
