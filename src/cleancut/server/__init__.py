"""The HTTP service: native REST API, remove.bg-compatible API, health and metrics, the WebUI.

``create_app(settings)`` is the only way to get an app (tests build as many as they like);
``run(settings)`` checks the models and serves it with uvicorn. Importing this package starts
nothing and imports neither FastAPI nor the engine.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        engine.models(name)
    return engine


def run(settings: Settings) -> None:
    """Serve on ``settings.host:settings.port`` until SIGTERM or SIGINT.

    A model that cannot be loaded, unreadable API keys, or a non-loopback address without keys
    (and without ``allow_anonymous``) stop start-up before anything binds: the one-line error
    goes to stderr and the process exits with status 1.

    This entry point (and only it) sets up the process: logging (:mod:`.accesslog`), the one
    temporary directory the service writes to, Pillow's bomb guard and the allocator
    (:func:`~cleancut.engine.process.configure_process`), and uvicorn's connection limits. On
    SIGTERM the service drains: requests in flight finish (up to ``shutdown_grace_s``), new ones
    get 503, and ``run`` returns normally.
    """
    import uvicorn

    from ..engine.process import configure_process
    from ..errors import CleancutError
    from .accesslog import configure_logging
    from .auth import check_exposure
    from .protocol import with_header_timeout

    _use_tmp_dir(settings)
    configure_logging(settings)
    configure_process(settings)  # Pillow's bomb guard and the allocator, before any thread
    try:
        check_exposure(settings)  # before the models load: the refusal comes at once
        engine = preflight(settings)
    except CleancutError as exc:
        print(f"cleancut: error: {exc.detail}", file=sys.stderr)
        raise SystemExit(1) from None
    app = create_app(settings, engine)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # h11 enforces h11_max_incomplete_event_size (httptools has no header limit); the
        # subclass adds a deadline on the headers' arrival
        http=with_header_timeout(settings.header_timeout_s),
        log_config=None,  # configure_logging did it
        access_log=False,  # the access log middleware replaces uvicorn's
        server_header=False,
        proxy_headers=False,  # X-Forwarded-For only from CLEANCUT_TRUSTED_PROXIES (proxies.py)
        timeout_keep_alive=settings.keep_alive_timeout_s,
        limit_concurrency=settings.max_connections
        or settings.effective_workers() + settings.effective_queue_size() + 64,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_s)),
    )
    server = _draining_server(config, app.state.drain, settings.shutdown_grace_s)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn logged why (the port is taken, ...)


def _use_tmp_dir(settings: Settings) -> None:
    """Point everything that may write temporary files at ``settings.tmp_dir``."""
    import importlib.util
    import tempfile

    tmp = Path(settings.tmp_dir or tempfile.gettempdir())
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    # onnxruntime keeps a device id under $XDG_CACHE_HOME (else ~/.cache) when it is imported.
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    # numba (pymatting's kernels) caches compiled code next to the package when it can write
    # there, else in ~/.cache; on a read-only install, keep that cache in the temp dir instead.
    spec = importlib.util.find_spec("pymatting")
    places = list(spec.submodule_search_locations or []) if spec else []
    if "NUMBA_CACHE_DIR" not in os.environ and places and not os.access(places[0], os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(tmp / "numba")


def _draining_server(config: Any, drain: Any, grace_s: float) -> Any:
    """A uvicorn server whose first SIGTERM/SIGINT drains (:mod:`.drain`) and whose exit is
    clean (uvicorn re-raises the signal after shutdown, which would end the process with it)."""
    import signal
    import time
    from types import FrameType

    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if drain.draining:  # a second signal: stop waiting
                self.should_exit = self.force_exit = True
                return
            drain.begin(grace_s)
            logging.getLogger("cleancut.server").info(
                "%s received: draining %d request(s) for up to %g s",
                signal.Signals(sig).name, drain.in_flight, grace_s)

        async def on_tick(self, counter: int) -> bool:
            if not self.should_exit and drain.finished():
                left = (drain.deadline or 0.0) - time.monotonic()
                self.config.timeout_graceful_shutdown = max(1, math.ceil(left))
                self.should_exit = True
            return await super().on_tick(counter)

    return DrainingServer(config)
