"""Operations endpoints: ``/healthz`` (alive), ``/readyz`` (models warm), ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import __version__
from .context import context_of
from .errors import error_body
from .metrics import CONTENT_TYPE
from .state import service_of

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    summary="Every start-up model is loaded and warm (503 with Retry-After before)",
    responses={503: {"description": "Still loading, or a model failed to load"}},
)
async def readyz(request: Request) -> Any:
    service = service_of(request)
    if not service.ready.is_set():
        detail = service.load_error or "models are still loading"
        entry = {"code": "not_ready", "title": "Service not ready", "detail": detail}
        body = {**error_body(entry, context_of(request).request_id), "status": "loading"}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    return {"status": "ready", "models": {name: {"load_seconds": round(secs, 3)}
                                          for name, secs in service.loaded.items()}}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request) -> Response:
    return Response(service_of(request).metrics.render(), media_type=CONTENT_TYPE)
