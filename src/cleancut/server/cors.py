"""CORS: off unless ``CLEANCUT_CORS_ORIGINS`` lists origins; then Starlette's middleware answers
preflights for those origins only (before authentication, so browsers can send the key) and lets
pages there read the results and their headers. No cookies are used, so no credentials mode."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

__all__ = ["cors_middleware"]

_ALLOW_HEADERS = ["X-API-Key", "Authorization", "Content-Type", "Accept", "X-Request-Id"]
_EXPOSE_HEADERS = [
    "X-Request-Id", "X-Width", "X-Height", "X-Model", "X-Foreground-Top", "X-Foreground-Left",
    "X-Foreground-Width", "X-Foreground-Height", "X-RateLimit-Limit", "X-RateLimit-Remaining",
    "X-RateLimit-Reset", "Retry-After",
]


def cors_middleware(origins: list[str]) -> list[Middleware]:
    """The CORS layer for these origins, or none at all when the list is empty."""
    if not origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                       allow_headers=_ALLOW_HEADERS, expose_headers=_EXPOSE_HEADERS,
                       allow_credentials=False, max_age=600)]
