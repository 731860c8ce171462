"""The audit log: one line per request on the ``cleancut.access`` logger, and the service's
logging set-up.

Each line records when, who (request id, client address, user agent, API key *id*), what (method,
route, model, image format and size, bytes in and out), how long (queue wait, decode, inference,
encode, total, in milliseconds) and how it ended (status, error code). Never image content, never
a key, never a header other than the user agent. Client-supplied text is cut to a bounded length
and its control characters are escaped (JSON escaping; the text format escapes them the same way).

:func:`configure_logging` is called by the service entry point (``server.run``) only; the
library never configures logging.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import key_id_of
from .context import context_in
from .proxies import TrustedProxies

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["AccessLogMiddleware", "configure_logging", "JsonFormatter", "TextFormatter"]

log = logging.getLogger("cleancut.access")

_MAX_TEXT = 256  # longest client-supplied string kept (user agent, path)
_STAGES = ("decode", "inference", "encode")


def _cap(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return _cap(value.decode("latin-1"))
    return None


def _route(scope: Scope) -> str | None:
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


class AccessLogMiddleware:
    """Write one access record per HTTP request once its answer is sent (or it failed)."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies | None = None) -> None:
        self.app = app
        self.proxies = proxies or TrustedProxies(())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        when = datetime.now(UTC)
        started = time.perf_counter()
        bytes_in = bytes_out = 0
        status = 0

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            record = self._record(scope, when, started, status or 500, bytes_in, bytes_out)
            log.info("%s %s %s", record["method"], record["path"], record["status"],
                     extra={"access": record})

    def _record(self, scope: Scope, when: datetime, started: float, status: int,
                bytes_in: int, bytes_out: int) -> dict[str, Any]:
        ctx = context_in(scope)
        addr = self.proxies.client_of(scope)
        record: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request_id": ctx.request_id if ctx else None,
            "client": str(addr) if addr is not None else None,
            "user_agent": _header(scope, b"user-agent"),
            "key_id": key_id_of(scope),
            "method": _cap(str(scope.get("method", "")), 16),
            "route": _route(scope),
            "path": _cap(str(scope.get("path", ""))),
            "status": status,
            # an unexpected exception is answered by Starlette's outermost layer after this
            # line is written, so its code is not on the context yet
            "error_code": (ctx.error_code if ctx and ctx.error_code
                           else "internal_error" if status == 500 else None),
            "model": (ctx.model or None) if ctx else None,
            "image_format": (ctx.image_format or None) if ctx else None,
            "width": ctx.width if ctx else None,
            "height": ctx.height if ctx else None,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "queue_ms": _ms(ctx.queue_ms) if ctx else None,
        }
        timings = ctx.timings_ms if ctx else {}
        for stage in _STAGES:
            record[f"{stage}_ms"] = _ms(timings.get(stage))
        record["duration_ms"] = _ms((time.perf_counter() - started) * 1e3)
        return record


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# --- formatting -------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """Access records as they are; other records as ``{time, level, logger, message}``."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            return json.dumps(access, ensure_ascii=True, separators=(",", ":"))
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``key=value`` access lines (values JSON-escaped when they need it); plain service lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if not isinstance(access, dict):
            return super().format(record)
        parts = []
        for key, value in access.items():
            if value is None:
                continue
            text = str(value)
            if not text.isascii() or not text.isprintable() or " " in text or '"' in text:
                text = json.dumps(text, ensure_ascii=True)
            parts.append(f"{key}={text}")
        return " ".join(parts)


def configure_logging(settings: Settings) -> None:
    """Set up the service's logging: the access log on stdout (and optionally a rotated file),
    everything else on stderr at ``settings.log_level``, in ``settings.log_format``. uvicorn's own
    access log is left off: the access log above replaces it."""
    formatter: logging.Formatter = (JsonFormatter() if settings.log_format == "json"
                                    else TextFormatter())
    level = getattr(logging, settings.log_level.upper())

    service = logging.StreamHandler(sys.stderr)
    service.setFormatter(formatter)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(service)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True

    access = logging.getLogger("cleancut.access")  # the audit log: always written
    access.handlers.clear()
    access.propagate = False
    access.setLevel(logging.INFO)
    out = logging.StreamHandler(sys.stdout)
    out.setFormatter(formatter)
    access.addHandler(out)
    if settings.access_log_file is not None:
        rotating = logging.handlers.RotatingFileHandler(
            settings.access_log_file, maxBytes=settings.access_log_max_bytes,
            backupCount=settings.access_log_backups, encoding="utf-8",
        )
        rotating.setFormatter(formatter)
        access.addHandler(rotating)
