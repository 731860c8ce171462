"""Request bodies: a byte limit enforced while the body streams in, and a deadline for it.

- A ``Content-Length`` over the limit is answered 413 ``file_too_large`` before any of the body
  is read.
- Otherwise the bytes are counted as ``receive()`` delivers them; the moment the count passes the
  limit the application is stopped and the client gets 413. Nothing reads a 2 GB body to find out
  it is too big.
- A body that has not fully arrived ``timeout_s`` after the request started is cut off with 408
  ``request_timeout``, so a client that trickles its upload cannot hold a connection and its
  buffers for long.

Both answers carry ``Connection: close``: the server closes the connection after them instead of
reading (or waiting for) the rest of the body. The limit allows for the multipart framing around
the image; in the remove.bg routes the image may arrive base64-encoded (4/3 the bytes), so the
allowance is larger there. The exact per-image check stays in the routes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import CleancutError, FileTooLarge, RequestTimeout
from .errors import COMPAT_PREFIX, error_response

__all__ = ["BodyLimitMiddleware", "body_limit"]

FRAMING_BYTES = 64 * 1024  # multipart boundaries, part headers and the other form fields


def body_limit(max_bytes: int, path: str) -> int:
    """The most request-body bytes accepted on ``path`` for images of ``max_bytes``."""
    if path.startswith(COMPAT_PREFIX):  # image_file_b64: 4 characters for every 3 bytes
        return max_bytes * 4 // 3 + 4096 + FRAMING_BYTES
    return max_bytes + FRAMING_BYTES


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length before we run
    return None


class _Rejected(Exception):
    """Raised into the application from ``receive()``; carries the answer to send instead."""

    def __init__(self, error: CleancutError) -> None:
        super().__init__(error.detail)
        self.error = error


class BodyLimitMiddleware:
    """Limit every HTTP request body to ``body_limit(max_bytes, path)`` bytes and ``timeout_s``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self, limit: int, size: str) -> FileTooLarge:
        return FileTooLarge(
            f"request body is {size} bytes; the limit is {limit} bytes for an image of at most "
            f"{self.max_bytes} bytes (CLEANCUT_MAX_UPLOAD_BYTES); send a smaller image"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.max_bytes, scope.get("path", ""))
        length = _content_length(scope)
        if length is not None and length > limit:
            await _answer(scope, send, self._too_large(limit, str(length)))
            return

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        complete = False
        rejected: CleancutError | None = None
        started = False  # the application began its response
        answered = False  # we sent our own answer instead

        async def limited_receive() -> Message:
            nonlocal received, complete, rejected
            if rejected is not None:
                return {"type": "http.disconnect"}
            if complete:  # only a disconnect can come now; no deadline on waiting for it
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                rejected = RequestTimeout(
                    f"the request body did not arrive within {self.timeout_s:g} s "
                    f"({received} bytes received; CLEANCUT_BODY_TIMEOUT_S)"
                )
                raise _Rejected(rejected) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = self._too_large(limit, f"over {received}")
                    raise _Rejected(rejected)
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, answered
            if rejected is None or started:
                if message["type"] == "http.response.start":
                    started = True
                await send(message)
                return
            # The application turned our exception into some answer of its own (FastAPI makes
            # a failed form parse a 400): send ours instead, once, and drop the rest.
            if not answered:
                answered = True
                await _answer(scope, send, rejected)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _Rejected:
            pass
        except Exception:
            if rejected is None or started:
                raise
        if rejected is not None and not started and not answered:
            await _answer(scope, send, rejected)


async def _answer(scope: Scope, send: Send, error: CleancutError) -> None:
    """Send the JSON error for ``error`` and ask the server to close the connection."""
    response = await error_response(Request(scope), error)
    response.headers["Connection"] = "close"

    async def no_body() -> Any:  # the response never reads the request
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
