"""The app factory: routes, error handlers and the middleware stack over a :class:`ServiceState`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.formparsers import MultiPartParser
from starlette.middleware import Middleware

from .. import __version__
from ..apikeys import KeyTable
from ..config import Settings
from ..engine import Engine
from . import errors, native, ops, removebg, ui
from .accesslog import AccessLogMiddleware
from .auth import AuthMiddleware
from .bodylimit import BodyLimitMiddleware, body_limit
from .context import ContextMiddleware
from .cors import cors_middleware
from .drain import Drain, DrainMiddleware
from .errors import COMPAT_PREFIX
from .metrics import Metrics
from .proxies import TrustedProxies
from .ratelimit import RateLimitMiddleware
from .security import SecurityHeadersMiddleware
from .state import ServiceState
from .workers import WorkerPool

__all__ = ["build_app"]


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
