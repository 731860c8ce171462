"""The WebUI at ``/`` and the offline API docs at ``/docs``: static files, no inline script.

``/docs`` is Swagger UI from the ``fastapi-offline`` package (a dependency): its files are served
from this machine, never from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["install", "WEBUI_DIR", "SWAGGER_DIR"]

WEBUI_DIR = Path(__file__).parent / "webui"
SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    async def index() -> Response:
        return FileResponse(WEBUI_DIR / "index.html", media_type="text/html")

    async def docs() -> Response:
        return FileResponse(WEBUI_DIR / "docs.html", media_type="text/html")

    app.add_api_route("/", index, include_in_schema=False, methods=["GET"])
    app.add_api_route("/docs", docs, include_in_schema=False, methods=["GET"])
    # mounted before /ui, which would otherwise shadow it
    app.mount("/ui/swagger", StaticFiles(directory=SWAGGER_DIR), name="swagger")
    app.mount("/ui", StaticFiles(directory=WEBUI_DIR), name="ui")
