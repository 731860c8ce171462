"""The WebUI at ``/`` and the offline API docs at ``/docs``: static files, no inline script.

``/docs`` uses Swagger UI from the ``fastapi-offline`` package when it is installed (no CDN);
without it the same page renders a plain, complete list of routes and parameters from
``/openapi.json``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["install", "WEBUI_DIR"]

WEBUI_DIR = Path(__file__).parent / "webui"


def _swagger_dir() -> Path | None:
    try:
        import fastapi_offline  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    static = Path(fastapi_offline.__file__).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def install(app: FastAPI) -> None:
    async def index() -> Response:
        return FileResponse(WEBUI_DIR / "index.html", media_type="text/html")

    swagger = _swagger_dir()
    docs_page = WEBUI_DIR / ("docs.html" if swagger is not None else "docs-plain.html")

    async def docs() -> Response:
        return FileResponse(docs_page, media_type="text/html")

    app.add_api_route("/", index, include_in_schema=False, methods=["GET"])
    app.add_api_route("/docs", docs, include_in_schema=False, methods=["GET"])
    if swagger is not None:  # mounted before /ui, which would otherwise shadow it
        app.mount("/ui/swagger", StaticFiles(directory=swagger), name="swagger")
    app.mount("/ui", StaticFiles(directory=WEBUI_DIR), name="ui")
