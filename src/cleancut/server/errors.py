"""One place that turns errors into JSON: ``{"errors": [{code, title, detail}], "request_id"}``.

The status comes from the error class (:mod:`cleancut.errors`); 503 and 429 carry Retry-After.
In the remove.bg-compatible routes (``/v1.0/``) statuses follow remove.bg: every client mistake is
400, authentication 403, rate limits 429. Anything unexpected is a generic 500 and is logged with
its traceback; no client input is meant to reach it.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    CleancutError,
    HttpError,
    InputError,
    InvalidBody,
    InvalidParameter,
    MethodNotAllowed,
    RetryLater,
    RouteNotFound,
    UnknownModel,
)
from .context import context_of
from .security import headers_for

__all__ = ["install", "error_body", "error_response", "COMPAT_PREFIX"]

log = logging.getLogger("cleancut.server")
COMPAT_PREFIX = "/v1.0/"


def error_body(entry: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"errors": [entry], "request_id": request_id}


def _respond(request: Request, status: int, entry: dict[str, Any],
             headers: dict[str, str] | None = None) -> JSONResponse:
    state = request.app.state.service
    state.metrics.rejects.labels(reason=entry["code"]).inc()
    context_of(request).error_code = entry["code"]  # for the access log
    if request.url.path.startswith(COMPAT_PREFIX):
        status = _compat_status(status)
    elif status == 401:  # RFC 9110: a 401 names the scheme; remove.bg's 403 does not
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(error_body(entry, context_of(request).request_id), status_code=status,
                        headers=headers)


def _compat_status(status: int) -> int:
    if status == 401:
        return 403
    if 400 <= status < 500 and status not in (403, 429):
        return 400
    return status


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """The JSON response for a :class:`CleancutError`; also used by middleware (auth, rate
    limits), which sits outside the exception handlers."""
    assert isinstance(exc, CleancutError)
    entry: dict[str, Any] = exc.to_dict()
    if isinstance(exc, UnknownModel):
        entry["field"] = "model"
    headers = None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif exc.status == 503:
        headers = {"Retry-After": "30"}
    if exc.report and not isinstance(exc, InputError):
        log.error("request %s failed: %s", context_of(request).request_id, exc.detail)
    return _respond(request, exc.status, entry, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "header")]
    field = loc[0][:40] if loc else "body"
    error = InvalidParameter(field, f"{field}: {first.get('msg', 'invalid value')}")
    return _respond(request, 400, error.to_dict())


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    detail = exc.detail if isinstance(exc.detail, str) else phrase
    error: CleancutError
    if exc.status_code == 404:
        error = RouteNotFound(f"no route {request.url.path}; see /docs for the API")
    elif exc.status_code == 405:
        error = MethodNotAllowed(detail)
    elif exc.status_code == 400:  # the body cannot be parsed (broken multipart, encoding, ...)
        error = InvalidBody(detail)
    else:
        error = HttpError(detail, exc.status_code)
    return _respond(request, exc.status_code, error.to_dict(), dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request %s failed unexpectedly", context_of(request).request_id,
                  exc_info=exc)
    entry = {"code": "internal_error", "title": "Internal error",
             "detail": "the server failed to process this request; it has been logged"}
    # Starlette sends this from its outermost layer, past the security-headers middleware.
    headers = {k.decode(): v.decode() for k, v in headers_for(request.url.path)}
    return _respond(request, 500, entry, headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(CleancutError, error_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
