"""The HTTP service: native REST API, remove.bg-compatible API, health and metrics, the WebUI.

``create_app(settings)`` is the only way to get an app (tests build as many as they like);
``run(settings)`` checks the models and serves it with uvicorn. Importing this package starts
nothing and imports neither FastAPI nor the engine.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config import Settings
    from ..engine import Engine

__all__ = ["create_app", "preflight", "run"]


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """A new service app over ``engine`` (default: ``Engine(settings)``).

    Models named in ``settings.models`` are verified when the app starts (its lifespan) and then
    loaded and warmed; ``/readyz`` answers 503 until they are.
    """
    from .app import build_app

    return build_app(settings, engine)


def preflight(settings: Settings, engine: Engine | None = None) -> Engine:
    """Load and verify every model in ``settings.models``; raise the store's error if one is
    missing or damaged (:class:`~cleancut.errors.ModelNotInstalled`,
    :class:`~cleancut.errors.UnknownModel`, :class:`~cleancut.errors.ModelChecksumMismatch`)."""
    from ..engine import Engine

    engine = engine or Engine(settings)
    for name in settings.models:
        engine.session(name)
    return engine


def run(settings: Settings) -> None:
    """Serve on ``settings.host:settings.port`` until interrupted.

    A model that cannot be loaded stops start-up before anything binds: its one-line error goes
    to stderr and the process exits with status 1.
    """
    import uvicorn

    from ..errors import CleancutError

    try:
        engine = preflight(settings)
    except CleancutError as exc:
        print(f"cleancut: error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    uvicorn.run(
        create_app(settings, engine),
        host=settings.host,
        port=settings.port,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 1,
    )
