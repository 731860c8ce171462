"""Graceful shutdown: on SIGTERM finish the requests in flight, refuse new ones with 503.

:class:`Drain` is the shared state: the server's signal handler calls :meth:`Drain.begin`, the
middleware counts requests in flight and, once draining, answers every new request (``/readyz``
included, so load balancers stop sending) 503 ``shutting_down`` with ``Retry-After`` and
``Connection: close``. ``/healthz`` still answers: the process is alive. The server stops
listening once nothing is in flight or the grace period is over, whichever comes first.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ShuttingDown
from .errors import error_response

__all__ = ["Drain", "DrainMiddleware"]

_ALWAYS_OPEN = frozenset({"/healthz"})


class Drain:
    def __init__(self) -> None:
        self.in_flight = 0
        self.deadline: float | None = None  # monotonic; set when draining begins

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def begin(self, grace_s: float) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + grace_s

    def finished(self) -> bool:
        """Draining, and nothing is left in flight or the grace period is over."""
        return self.deadline is not None and (
            self.in_flight == 0 or time.monotonic() >= self.deadline
        )


class DrainMiddleware:
    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _ALWAYS_OPEN:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            response = await error_response(Request(scope), ShuttingDown(
                "the service is shutting down; retry on another instance or after a restart",
                retry_after_s=5,
            ))
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        self.drain.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= 1
