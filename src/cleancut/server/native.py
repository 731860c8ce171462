"""The native API: ``POST /api/remove``, ``GET /api/remove?url=`` (when URL input is on),
``GET /api/options``, ``GET /api/models``, ``GET /api/limits``.

Its form and query fields, their OpenAPI description and ``GET /api/options`` are derived from
the engine's option table (:data:`cleancut.engine.OPTIONS`); this module only translates.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from ..engine import OPTIONS, Options, OptionSpec, Result
from ..engine.fusion import model_names
from ..engine.imageio import ALLOWED_FORMATS
from ..engine.options import FORMATS
from ..engine.pipeline import PRESETS, expand
from ..errors import FileTooLarge, InvalidParameter, ModelNotInstalled
from .context import context_of
from .openapi import ERROR_RESPONSES, IMAGE_RESPONSE
from .state import service_of
from .urlinput import check_enabled, fetch_url

__all__ = ["router", "read_upload", "check_model", "image_headers", "API_OPTIONS"]

router = APIRouter(tags=["native"])

API_OPTIONS: tuple[OptionSpec, ...] = tuple(spec for spec in OPTIONS if "api" in spec.doors)
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_TYPE_WORDS = {
    "boolean": "Boolean: true/false, 1/0, on/off or yes/no.",
    "color": "",
    "model": "",
}


def _description(spec: OptionSpec) -> str:
    words = [spec.help, _TYPE_WORDS.get(spec.kind, "")]
    if spec.kind == "integer" and spec.low is not None:
        words.append(f"{spec.low:g}-{spec.high:g}.")
    if spec.default is not None and spec.kind != "model":
        default = str(spec.default).lower() if isinstance(spec.default, bool) else spec.default
        words.append(f"Default {default}.")
    return " ".join(w for w in words if w)


def _field_docs() -> list[tuple[str, str]]:
    """(name, description) of every form / query field, aliases after their option."""
    docs = []
    for spec in API_OPTIONS:
        docs.append((spec.field, _description(spec)))
        docs.extend((alias, f"Another name of {spec.field}.") for alias in spec.names[1:])
    return docs


def _request_body() -> dict[str, Any]:
    props: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description":
                 "The image: JPEG, PNG, WebP, BMP, TIFF or GIF (by content)."},
        "hints": {"type": "string", "format": "binary", "description":
                  "Optional hint image, the photo's size (or its aspect ratio, then scaled): "
                  "white = keep, black = remove, anything else = no opinion. The marked "
                  "pixels are forced and the edges around them re-solved from the photo."},
    }
    props.update({name: {"type": "string", "description": text} for name, text in _field_docs()})
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": props, "required": ["file"]}}}}


def _query_docs() -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": text} for name, text in _field_docs()]


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The uploaded bytes, refusing more than ``max_bytes`` without reading them all."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"file is larger than the limit of {max_bytes} bytes (CLEANCUT_MAX_UPLOAD_BYTES)"
        )
    return data


def check_model(request: Request, name: str) -> str:
    """The model ``name`` (or models joined by +) if known and installed; else 400."""
    store = service_of(request).engine.store
    for part in model_names(expand(name)):
        store.spec(part)  # UnknownModel
        if not store.is_installed(part):
            store.resolve(part)  # raises ModelNotInstalled with the install hint
            raise ModelNotInstalled(f"model {part!r} is not installed")  # pragma: no cover
    context_of(request).model = name
    return name


def image_headers(result: Result) -> dict[str, str]:
    """What every image response says about its result: size, model, subject, warnings."""
    headers = {"X-Width": str(result.width), "X-Height": str(result.height),
               "X-Model": result.model}
    if result.foreground is not None:
        left, top, fg_width, fg_height = result.foreground
        headers.update({"X-Foreground-Top": str(top), "X-Foreground-Left": str(left),
                        "X-Foreground-Width": str(fg_width),
                        "X-Foreground-Height": str(fg_height)})
    if result.confidence is not None:
        headers["X-Confidence"] = f"{result.confidence:.3f}"
    if result.warnings:
        # one header line, printable ASCII only: the warnings are the pipeline's own words
        text = "; ".join(" ".join(w.split()) for w in result.warnings)
        headers["X-Cleancut-Warning"] = text.encode("ascii", "replace").decode()[:1000]
    return headers


def _download_name(filename: str | None, only_mask: bool, fmt: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", (filename or "image").rsplit(".", 1)[0])[:64]
    ext = "jpg" if fmt == "jpeg" else fmt
    return f"{stem.strip('._') or 'image'}-{'mask' if only_mask else 'cutout'}.{ext}"


@router.post(
    "/api/remove",
    summary="Remove the background of one image",
    response_class=Response,
    responses={**IMAGE_RESPONSE, **ERROR_RESPONSES},
    openapi_extra={"requestBody": _request_body()},
)
async def remove(request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _FORM_TYPES:
        raise InvalidParameter("file", "send the image as the multipart/form-data field 'file'")
    form = await request.form(max_files=4, max_fields=64)
    uploads: dict[str, UploadFile] = {}
    values: dict[str, str | None] = {}
    for key, item in form.multi_items():
        if isinstance(item, UploadFile):
            if key in ("file", "hints"):
                uploads[key] = item
        else:
            values[key] = item
    if "file" not in uploads:
        raise InvalidParameter("file", "send the image as the multipart/form-data field 'file'")
    file = uploads["file"]
    if "hints" in values:
        raise InvalidParameter("hints", "send the hint image as a file part named 'hints'")
    max_bytes = service_of(request).engine.limits.max_bytes
    hints = await read_upload(uploads["hints"], max_bytes) if "hints" in uploads else None

    async def source(_deadline: float) -> bytes:
        return await read_upload(file, max_bytes)

    return await _remove(request, values, source, file.filename, hints)


@router.get(
    "/api/remove",
    summary="Remove the background of the image at a URL (when URL input is enabled)",
    response_class=Response,
    responses={**IMAGE_RESPONSE, **ERROR_RESPONSES},
    openapi_extra={"parameters": _query_docs()},
)
async def remove_url(
    request: Request,
    url: Annotated[str | None, Query(description=(
        "http(s) URL of the image. Refused (400) unless the service enables URL input "
        "(CLEANCUT_URL_FETCH_ENABLED); private and loopback addresses are refused unless "
        "allow-listed (CLEANCUT_URL_ALLOW_HOSTS). The other parameters are those of "
        "POST /api/remove, as query parameters."), max_length=4096)] = None,
) -> Response:
    settings = service_of(request).settings
    check_enabled(settings, "url")
    if not url:
        raise InvalidParameter("url", "give the image's address as ?url=https://...")
    target = url
    values = dict(request.query_params)

    async def source(deadline: float) -> bytes:
        return await fetch_url(settings, target, "url", deadline)

    return await _remove(request, values, source, urlsplit(target).path.rsplit("/", 1)[-1])


async def _remove(request: Request, values: Mapping[str, str | None],
                  source: Callable[[float], Awaitable[bytes]], filename: str | None,
                  hints: bytes | None = None) -> Response:
    """Check the parameters, get the image bytes from ``source(deadline)``, process, answer."""
    service = service_of(request)
    ctx = context_of(request)
    options = Options.from_fields(values, "api")
    name = check_model(request, options.model or service.settings.default_model)
    deadline = time.monotonic() + service.settings.request_timeout_s
    data = await source(deadline)
    result = await service.process(
        lambda end: service.engine.process(data, options, model=name, deadline=end,
                                           hints=hints),
        ctx=ctx, deadline=deadline,
    )
    service.metrics.observe_stages(result.model, result.timings_ms)
    ctx.record(image_format=result.source_format, width=result.width, height=result.height,
               timings_ms=result.timings_ms)
    headers = image_headers(result)
    fmt = result.format or "png"
    headers["Content-Disposition"] = (
        f'inline; filename="{_download_name(filename, options.only_mask, fmt)}"'
    )
    return Response(result.data, media_type=result.media_type, headers=headers)


@router.get("/api/options", summary="The options of POST /api/remove, for forms and clients")
async def options(request: Request) -> dict[str, Any]:
    """Every option with its type, bounds, default and help; ``webui`` marks those the WebUI
    shows. The model option lists the installed models as its choices."""
    service = service_of(request)
    store = service.engine.store
    rows = []
    for spec in API_OPTIONS:
        row = spec.describe()
        if spec.kind == "model":
            installed = [n for n in store.names() if store.is_installed(n)]
            presets = [name for name, parts in PRESETS.items()
                       if all(p in installed for p in parts.split("+"))]
            row["choices"] = installed + presets
            row["default"] = service.settings.default_model
        rows.append(row)
    return {"options": rows}


@router.get("/api/models", summary="The installed models")
async def models(request: Request) -> dict[str, Any]:
    service = service_of(request)
    store = service.engine.store
    rows = []
    for name in store.names():
        if not store.is_installed(name):
            continue
        spec = store.spec(name)
        rows.append({
            "name": name,
            "description": spec.description,
            "input_size": list(spec.input_size),
            "licence": spec.licence,
            "default": name == service.settings.default_model,
            "loaded": name in service.loaded,
        })
    return {"models": rows, "default": service.settings.default_model}


@router.get("/api/limits", summary="The limits in force, to check before uploading")
async def limits(request: Request) -> dict[str, Any]:
    s = service_of(request).settings
    return {
        "max_upload_bytes": s.max_upload_bytes,
        "max_pixels": s.max_pixels,
        "max_megapixels": s.max_pixels / 1e6,
        "max_side_px": s.max_side_px,
        "max_frames": s.max_frames,
        "input_formats": sorted({"jpeg" if f in ("JPEG", "MPO") else f.lower()
                                 for f in ALLOWED_FORMATS}),
        "output_formats": list(FORMATS),
        "request_timeout_s": s.request_timeout_s,
        "workers": s.effective_workers(),
        "queue_size": s.effective_queue_size(),
        "url_fetch_enabled": s.url_fetch_enabled,
    }
