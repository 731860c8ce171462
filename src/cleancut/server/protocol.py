"""uvicorn's h11 protocol with a deadline on the request line and headers.

uvicorn bounds the size of the headers (``h11_max_incomplete_event_size``) and the idle time
between requests (keep-alive), but a client that trickles a header byte every few seconds keeps
its connection, and a slot of ``limit_concurrency``, for as long as it likes. Here the request line
and headers must be complete within ``header_timeout_s`` of the connection opening or of the
previous response finishing; otherwise the connection is closed, as nginx's
``client_header_timeout`` does. Bodies have their own deadline (bodylimit.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["with_header_timeout"]


class _HeaderDeadline(H11Protocol):
    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        # IDLE: no complete request line and headers since the timer was armed
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``http=``) for a header deadline of ``seconds``."""
    return type("CleancutH11Protocol", (_HeaderDeadline,), {"header_timeout_s": seconds})
