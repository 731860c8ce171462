"""Per-request context and the ASGI middleware that owns it: request id, in-flight count and the
request counter by route, method, status and model."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from starlette.requests import Request

    from .metrics import Metrics

__all__ = ["RequestContext", "ContextMiddleware", "context_of", "context_in"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_SCOPE_KEY = "cleancut.context"


@dataclass
class RequestContext:
    request_id: str
    model: str = ""  # the model a processing route used, for metrics and logs
    # For the access log (server/accesslog.py), filled by the routes:
    error_code: str = ""  # the ``code`` of an error answer
    image_format: str = ""  # the input image's format, as sniffed
    width: int | None = None  # the result's size, in pixels
    height: int | None = None
    queue_ms: float | None = None  # time the image waited for a worker
    timings_ms: dict[str, float] = field(default_factory=dict)  # the engine's stage timings

    def record(self, *, image_format: str | None, width: int, height: int,
               timings_ms: dict[str, float]) -> None:
        self.image_format = (image_format or "").lower()
        self.width, self.height = width, height
        self.timings_ms = dict(timings_ms)


def context_in(scope: Scope) -> RequestContext | None:
    """The context of a request in ``scope``, when the context middleware has set one."""
    ctx = scope.get(_SCOPE_KEY)
    return ctx if isinstance(ctx, RequestContext) else None


def context_of(request: Request) -> RequestContext:
    ctx: RequestContext | None = request.scope.get(_SCOPE_KEY)
    if ctx is None:  # a request that did not pass the middleware (direct ASGI calls in tests)
        ctx = request.scope[_SCOPE_KEY] = RequestContext(uuid.uuid4().hex)
    return ctx


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _REQUEST_ID.fullmatch(text) else None
    return None


class ContextMiddleware:
    """Echo a valid ``X-Request-Id`` (else make one) on every response and count the request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(_incoming_id(scope) or uuid.uuid4().hex)
        scope[_SCOPE_KEY] = ctx
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", ctx.request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            route = _route_of(scope)
            self.metrics.requests.labels(
                route=route, method=_method_of(scope), status=str(status), model=ctx.model
            ).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)


# Label values come from a fixed set: a client inventing methods must not grow the metrics.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method_of(scope: Scope) -> str:
    method = scope.get("method", "")
    return method if method in _METHODS else "other"


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "static" if scope.get("path", "").startswith("/ui/") else "unmatched"
