"""The service on Ray Serve: ``cleancut serve --engine ray`` and ``serve run cleancut.ray:app``.

Each replica builds its own app with :func:`cleancut.server.create_app` (``serve.ingress`` with a
builder, called on the replica), so a replica is the single-process service: its own engine,
worker pool, limits, error JSON and metrics. Ray Serve adds replicas and routes to them:

- A replica reports started (and gets traffic) only once its models are warm: its ASGI
  lifespan start-up is held until the app's own readiness is set, and fails if the models do
  not load. ``check_health`` fails from then on if they did not, so Serve replaces the replica.
- Overload is cleancut's answer (503 ``overloaded``, ``Retry-After: 1``): Serve sends a replica
  more requests at once (``max_ongoing_requests``) than its workers and queue hold, so the
  replica's own queue is what fills first.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..engine import Engine
from ..engine.process import configure_process
from ..errors import InvalidSetting
from .cluster import connected, import_ray, private_process

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application
    from starlette.types import Message, Receive, Scope, Send

__all__ = ["APP_NAME", "replica_settings", "deployment_options", "build",
           "serve_until_stopped"]

APP_NAME = "cleancut"
_HEADROOM = 16  # requests in flight beyond the workers and queue: health checks, slow uploads


def replica_settings(settings: Settings) -> Settings:
    """The settings one replica's app runs with: workers and ONNX Runtime threads from the
    replica's CPUs where the settings leave them to the machine (a replica shares its node)."""
    cpus = max(1, math.ceil(settings.ray_replica_cpus))
    return settings.model_copy(update={"workers": settings.workers or cpus,
                                       "intra_op_threads": settings.intra_op_threads or cpus})


def deployment_options(settings: Settings) -> dict[str, Any]:
    """``serve.deployment`` options from cleancut's settings (docs/settings.md, Ray)."""
    own = replica_settings(settings)
    workers = own.effective_workers()
    options: dict[str, Any] = {
        "name": APP_NAME,
        "ray_actor_options": {"num_cpus": settings.ray_replica_cpus},
        "max_ongoing_requests": settings.ray_serve_max_ongoing_requests
        or workers + own.effective_queue_size() + _HEADROOM,
        "max_queued_requests": settings.ray_serve_max_queued_requests,
        # Serve's own refusal, past max_queued_requests, at least says when to retry
        "backpressure_config": {"status_code": 503, "retry_after_s": 1},
        "graceful_shutdown_timeout_s": settings.shutdown_grace_s,
    }
    if settings.ray_serve_max_replicas:
        if settings.ray_serve_min_replicas > settings.ray_serve_max_replicas:
            raise InvalidSetting(
                "CLEANCUT_RAY_SERVE_MIN_REPLICAS",
                f"CLEANCUT_RAY_SERVE_MIN_REPLICAS ({settings.ray_serve_min_replicas}) is above "
                f"CLEANCUT_RAY_SERVE_MAX_REPLICAS ({settings.ray_serve_max_replicas})")
        options["autoscaling_config"] = {
            "min_replicas": settings.ray_serve_min_replicas,
            "max_replicas": settings.ray_serve_max_replicas,
            "target_ongoing_requests": settings.ray_serve_target_ongoing_requests or workers,
        }
    else:
        options["num_replicas"] = settings.ray_serve_replicas
    return options


class WarmStartup:
    """The app as one replica serves it.

    - Its lifespan start-up completes only once the models are warm (or fails with the
      reason they did not load): Serve sends a replica traffic from then on.
    - One ``X-Request-Id``: Serve's proxy gives every request an id (the client's, or one of
      its own), which the app echoes, and adds it to the response again; the app's copy goes.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.service = app.state.service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._held_startup(send))
        elif scope["type"] == "http":
            await self.app(scope, receive, _without_echoed_id(scope, send))
        else:
            await self.app(scope, receive, send)

    def _held_startup(self, send: Send) -> Send:
        service = self.service

        async def forward(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                while not service.ready.is_set() and service.load_error is None:
                    await asyncio.sleep(0.05)  # the models load on a thread (ServiceState)
                if service.load_error is not None:
                    message = {"type": "lifespan.startup.failed",
                               "message": service.load_error}
            await send(message)

        return forward


def _without_echoed_id(scope: Scope, send: Send) -> Send:
    incoming = next((v for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
    if incoming is None:
        return send

    async def forward(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [
                (k, v) for k, v in message.get("headers", ())
                if not (k.lower() == b"x-request-id" and v == incoming)]}
        await send(message)

    return forward


def build(settings: Settings) -> Application:
    """The Serve application of the service: one deployment whose replicas each build their
    own app from ``settings``."""
    serve = import_ray("serve").serve

    def replica_app() -> WarmStartup:  # called on each replica, after the constructor below
        from ..server import create_app

        return WarmStartup(create_app(replica_settings(settings)))

    class Cleancut:
        def __init__(self) -> None:
            private_process(settings)  # before ONNX Runtime is imported in this process
            configure_process(settings)  # the replica owns its process, as `serve` does

        def check_health(self) -> None:
            service = getattr(self, "app").service  # noqa: B009  # set by serve.ingress
            if service.load_error is not None:
                raise RuntimeError(service.load_error)

    deployment = serve.deployment(**deployment_options(settings))(
        serve.ingress(replica_app)(Cleancut))
    application: Application = deployment.bind()
    return application


def serve_until_stopped(settings: Settings, address: str | None = None) -> None:
    """Serve on ``settings.host:settings.port`` through Ray Serve until SIGTERM or SIGINT:
    on a local Ray started for it, or on the cluster at ``address``
    (:func:`~cleancut.ray.cluster.address_of`), where the application is removed at exit."""
    from ..server.auth import check_exposure

    check_exposure(settings)  # before anything starts: a refusal comes at once
    engine = Engine(settings)
    for name in settings.models:  # verified here; loaded by each replica
        engine.store.resolve(name)
    with connected(settings, address, parts=("serve",)) as started_here:
        from ray import serve

        application = build(settings)
        serve.start(http_options={
            "host": settings.host, "port": settings.port,
            "location": settings.ray_serve_proxy_location,
            "keep_alive_timeout_s": settings.keep_alive_timeout_s,
        })
        serve.run(application, name=APP_NAME, route_prefix="/")  # returns once replicas are warm
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own
            signal.signal(sig, lambda *_: stop.set())
        print(f"cleancut: serving on http://{settings.host}:{settings.port} (Ray Serve)",
              file=sys.stderr, flush=True)
        stop.wait()
        # Serve first, while Ray still runs: replicas finish their requests (up to
        # CLEANCUT_SHUTDOWN_GRACE_S) and leave no process behind
        if started_here:
            serve.shutdown()  # type: ignore[no-untyped-call]
        else:
            serve.delete(APP_NAME)
