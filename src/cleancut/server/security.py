"""Security headers on every response: pages, static files, API results, errors and 404s.

One strict Content-Security-Policy for everything (no inline script or style anywhere; the WebUI
shows the chosen file and the result through ``blob:`` URLs it makes itself), relaxed only for
``/docs``, where the offline Swagger UI draws its icons from ``data:`` URLs (it needs no inline
script or style: Chromium reports no violation).
API responses (everything outside ``/ui/``) are never cached.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeadersMiddleware", "STRICT_CSP", "DOCS_CSP", "headers_for"]

_COMMON = "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
STRICT_CSP = f"default-src 'self'; img-src 'self' blob:; {_COMMON}"
DOCS_CSP = f"default-src 'self'; img-src 'self' data:; {_COMMON}"  # Swagger UI's SVG icons

_FIXED: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_NAMES = {name for name, _ in _FIXED} | {b"content-security-policy", b"cache-control"}


def headers_for(path: str) -> list[tuple[bytes, bytes]]:
    """The security headers a response to ``path`` carries."""
    csp = DOCS_CSP if path == "/docs" else STRICT_CSP
    headers = [*_FIXED, (b"content-security-policy", csp.encode("latin-1"))]
    if not path.startswith("/ui/"):  # static files keep their own validators and may be cached
        headers.append((b"cache-control", b"no-store"))
    return headers


class SecurityHeadersMiddleware:
    """Set the security headers on every HTTP response (replacing any the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
