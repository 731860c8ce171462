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
from starlette.formparsers import MultiPartParser
from starlette.middleware import Middleware

from .. import __version__
from ..apikeys import KeyTable
from ..config import Settings
from ..engine import Engine
from ..errors import CleancutError, NotReady
from . import errors, native, ops, removebg, ui
from .accesslog import AccessLogMiddleware
from .auth import AuthMiddleware
from .bodylimit import BodyLimitMiddleware, body_limit
from .context import ContextMiddleware, RequestContext
from .cors import cors_middleware
from .drain import Drain, DrainMiddleware
from .errors import COMPAT_PREFIX
from .metrics import Metrics
from .proxies import TrustedProxies
from .ratelimit import RateLimitMiddleware
from .security import SecurityHeadersMiddleware
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
        from ..engine.mask import warm_up_matting

        for warning in warm_up_matting():
            log.warning("%s", warning)


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
    drain = app.state.drain = Drain()  # server.run's signal handler begins it
    # Uploads stay in memory: Starlette spools a file part over 1 MB to a temporary file, and
    # offers no per-request setting, only this class attribute. The body limit above bounds
    # what a request can hold, so raise the spool threshold to it (never lower it).
    MultiPartParser.spool_max_size = max(
        MultiPartParser.spool_max_size, body_limit(settings.max_upload_bytes, COMPAT_PREFIX))
    errors.install(app)
    app.include_router(native.router)
    app.include_router(removebg.router)
    app.include_router(ops.router)
    ui.install(app)
    # --- middleware, outermost first (each pure ASGI, one per module, configured here) ---------
    keys = KeyTable.load(settings.api_keys, settings.api_keys_file)
    middleware = [
        Middleware(SecurityHeadersMiddleware),  # CSP, nosniff, ... on every response
        Middleware(ContextMiddleware, metrics=metrics),  # request id, request metrics
        Middleware(AccessLogMiddleware,  # one audit line per request (cleancut.access)
                   proxies=TrustedProxies(settings.trusted_proxies)),
        Middleware(DrainMiddleware, drain=drain),  # SIGTERM: new requests 503 while draining
        *cors_middleware(settings.cors_origins),  # only when configured; preflights before auth
        Middleware(AuthMiddleware, keys=keys, metrics_public=settings.metrics_public),
        Middleware(  # after auth: buckets are per key, else per client address
            RateLimitMiddleware, per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst, max_clients=settings.rate_limit_max_clients,
            proxies=TrustedProxies(settings.trusted_proxies)),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes,  # 413 / 408
                   timeout_s=settings.body_timeout_s),
    ]
    for cls, args, kwargs in reversed(middleware):  # each added goes outside those before it
        app.add_middleware(cls, *args, **kwargs)
    return app
