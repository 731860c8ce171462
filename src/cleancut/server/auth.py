"""API-key authentication: ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.

Only when keys are configured (``CLEANCUT_API_KEYS`` / ``CLEANCUT_API_KEYS_FILE``). Deny by
default: every path needs a key except the few that must stay open: the health checks (container
probes), the WebUI page and its static files (so it can ask for a key), the API docs and their
schema, and ``/metrics`` when ``CLEANCUT_METRICS_PUBLIC`` is true. A missing or wrong key is 401
``unauthorized`` with ``WWW-Authenticate: Bearer`` (403 under ``/v1.0/``, as remove.bg answers).
The key's id (never the key) is kept in the scope for logs and the rate limiter.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..apikeys import KeyTable
from ..errors import InvalidParameter, Unauthorized
from .errors import error_response

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["AuthMiddleware", "key_id_of", "check_exposure", "is_loopback", "OPEN_PATHS"]

log = logging.getLogger("cleancut.server")

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/docs", "/openapi.json", "/favicon.ico"})
_OPEN_PREFIX = "/ui/"
_SCOPE_KEY = "cleancut.key_id"
_MAX_KEY_LENGTH = 1024  # longer is not a key; refused without hashing


def key_id_of(scope: Scope) -> str | None:
    """The id of the API key this request authenticated with, if any."""
    value = scope.get(_SCOPE_KEY)
    return value if isinstance(value, str) else None


def _presented_key(scope: Scope) -> str | None:
    api_key: str | None = None
    bearer: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
        elif name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                bearer = token.strip()
    return api_key or bearer or None


class AuthMiddleware:
    """Refuse requests without a valid key on every non-open path, when keys are configured."""

    def __init__(self, app: ASGIApp, keys: KeyTable, metrics_public: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = OPEN_PATHS | ({"/metrics"} if metrics_public else set())

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(_OPEN_PREFIX)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        key = _presented_key(scope)
        key_id = self.keys.check(key) if key and len(key) <= _MAX_KEY_LENGTH else None
        if key_id is not None:
            scope[_SCOPE_KEY] = key_id
        elif not self._is_open(scope.get("path", "")):
            detail = (
                "this API key is not valid; check it with the service's operator"
                if key else
                "an API key is required: send it as X-API-Key: KEY or Authorization: Bearer KEY"
            )
            response = await error_response(Request(scope), Unauthorized(detail))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` only lets this machine in (``localhost`` or a loopback IP)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def check_exposure(settings: Settings) -> KeyTable:
    """Load the keys and refuse to serve a non-loopback address without them unless
    ``allow_anonymous``; raises :class:`~cleancut.errors.InvalidParameter` with a one-line
    message. Call before binding."""
    keys = KeyTable.load(settings.api_keys, settings.api_keys_file)
    if keys:
        log.info("API keys required: %d key(s) configured", len(keys))
    elif not is_loopback(settings.host):
        if not settings.allow_anonymous:
            raise InvalidParameter(
                "allow_anonymous",
                f"refusing to serve on {settings.host} without API keys: set CLEANCUT_API_KEYS "
                "or CLEANCUT_API_KEYS_FILE, or pass --allow-anonymous "
                "(CLEANCUT_ALLOW_ANONYMOUS=true) to serve anyone who can reach this address")
        log.warning("serving %s without API keys (--allow-anonymous)", settings.host)
    return keys
