"""remove.bg-compatible API: ``POST /v1.0/removebg`` and ``GET /v1.0/account``.

Accepts what remove.bg's API accepts for local work (multipart, urlencoded or JSON bodies), so
existing remove.bg client libraries work by changing only the base URL. Errors use remove.bg's
shape and statuses (400, 403, 429; 503/504 for the service's own overload and deadline).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from ..engine import Options, Result
from ..engine.options import parse_bool
from ..errors import FileTooLarge, InvalidParameter
from .context import context_of
from .native import check_model, image_headers, read_upload
from .openapi import ERROR_SCHEMA
from .removebg_schema import request_body_schema
from .state import service_of
from .urlinput import check_enabled, fetch_url

__all__ = ["router"]

router = APIRouter(tags=["remove.bg compatible"])

_TYPES = {"auto", "person", "product", "animal", "car", "car_interior", "car_part",
          "transportation", "graphic", "graphics", "other"}
_FORMATS = {"auto", "png", "jpg", "jpeg", "webp", "zip"}
_UNSUPPORTED = ("bg_image_file",)

# remove.bg's size values -> most output pixels (None: the original, up to the service's limits)
SIZES: dict[str, int | None] = {
    "preview": 250_000, "small": 250_000, "regular": 250_000,
    "medium": 1_500_000, "hd": 4_000_000,
    "full": None, "4k": None, "50mp": None, "auto": None,
}


async def _read_params(
    request: Request, max_bytes: int
) -> tuple[dict[str, str], UploadFile | None]:
    b64_limit = max_bytes * 4 // 3 + 4096
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    values: dict[str, str] = {}
    upload: UploadFile | None = None
    if ctype == "application/json":
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > b64_limit + 65536:
                raise FileTooLarge(f"request body is over the limit for a {max_bytes}-byte image "
                                   "(CLEANCUT_MAX_UPLOAD_BYTES)")
        try:
            parsed = json.loads(body)
        except ValueError:
            raise InvalidParameter("body", "the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise InvalidParameter("body", "the JSON body must be an object of parameters")
        for key, value in parsed.items():
            if isinstance(value, bool):
                values[key] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                values[key] = str(value)
            elif value is not None:
                raise InvalidParameter("body", f"{str(key)[:40]!r} must be a string, a number "
                                       "or a boolean")
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=4, max_fields=64, max_part_size=b64_limit)
        for key, item in form.multi_items():
            if isinstance(item, UploadFile):
                if key == "image_file":
                    upload = item
                elif key in _UNSUPPORTED:
                    values[key] = "(file)"
            else:
                values[key] = item
    else:
        raise InvalidParameter("body", "send multipart/form-data, "
                               "application/x-www-form-urlencoded or application/json")
    return values, upload


def _bg_color(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    text = value.strip()
    return f"#{text}" if re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8}", text) \
        else text


def _model_for(request: Request, values: dict[str, str]) -> tuple[str, str]:
    service = service_of(request)
    kind = (values.get("type") or "auto").strip().lower()
    if kind not in _TYPES:
        raise InvalidParameter("type", f"type {kind!r:.40} is not one of "
                               + ", ".join(sorted(_TYPES)))
    name = values.get("model") or service.settings.default_model
    if not values.get("model") and kind == "person" \
            and service.engine.store.is_installed("u2net_human_seg"):
        name = "u2net_human_seg"
    return check_model(request, name), ("other" if kind == "auto" else kind)


def _decode_b64(text: str, max_bytes: int) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("image_file_b64", "image_file_b64 is not valid base64") from None
    if len(data) > max_bytes:
        raise FileTooLarge(f"image is {len(data)} bytes; limit is {max_bytes} "
                           "(CLEANCUT_MAX_UPLOAD_BYTES)")
    return data


@router.post(
    "/v1.0/removebg",
    summary="Remove the background (remove.bg-compatible)",
    response_class=Response,
    openapi_extra={"requestBody": request_body_schema()},
    responses={
        200: {"description": "The image (or a zip of color.jpg + alpha.png); with "
                             "Accept: application/json, {\"data\": {\"result_b64\": ...}}",
              "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {},
                          "application/zip": {}, "application/json": {}}},
        400: {"description": "Invalid parameters or input file",
              "content": {"application/json": {"schema": ERROR_SCHEMA}}},
        403: {"description": "Authentication failed (when API keys are configured)"},
        429: {"description": "Rate limit exceeded"},
        503: {"description": "Overloaded or not ready; see Retry-After"},
        504: {"description": "The request ran past its deadline"},
    },
)
async def removebg(request: Request) -> Response:
    service = service_of(request)
    ctx = context_of(request)
    deadline = time.monotonic() + service.settings.request_timeout_s
    max_bytes = service.engine.limits.max_bytes
    values, upload = await _read_params(request, max_bytes)
    given = [n for n in ("image_file", "image_file_b64", "image_url")
             if (upload if n == "image_file" else values.get(n))]
    if not given:
        raise InvalidParameter("image_file", "send the image as image_file (multipart), "
                               "image_file_b64 or image_url")
    if len(given) > 1:
        raise InvalidParameter(given[1], f"send only one of {', '.join(given)}")
    for name in ("image_url", "bg_image_url"):
        if values.get(name):
            check_enabled(service.settings, name)
    if values.get("bg_image_file"):
        raise InvalidParameter("bg_image_file", "bg_image_file is not supported; use bg_color "
                               "or bg_image_url")
    for name in ("semitransparency", "add_shadow"):
        parse_bool(name, values.get(name))
    if (values.get("type_level") or "latest").lower() not in ("none", "1", "2", "latest"):
        raise InvalidParameter("type_level", "type_level must be none, 1, 2 or latest")
    options, bg_url = _options(values)
    model, kind = _model_for(request, values)
    payload: bytes | str  # uploaded bytes, or base64 text decoded on the worker
    if upload is not None:
        payload = await read_upload(upload, max_bytes)
    elif given[0] == "image_url":
        payload = await fetch_url(service.settings, values["image_url"], "image_url", deadline)
    else:
        payload = values["image_file_b64"]
    background = await fetch_url(service.settings, bg_url, "bg_image_url", deadline) \
        if bg_url else None

    def work(end: float) -> Result:
        data = payload if isinstance(payload, bytes) else _decode_b64(payload, max_bytes)
        return service.engine.process(data, options, model=model, deadline=end,
                                      background=background)

    result = await service.process(work, ctx=ctx, deadline=deadline)
    service.metrics.observe_stages(result.model, result.timings_ms)
    ctx.record(image_format=result.source_format, width=result.width, height=result.height,
               timings_ms=result.timings_ms)
    headers = {**image_headers(result), "X-Type": kind, "X-Credits-Charged": "0"}
    fg: dict[str, int] = {}
    if result.foreground is not None:
        left, top, width, height = result.foreground
        fg = {"foreground_top": top, "foreground_left": left,
              "foreground_width": width, "foreground_height": height}
    assert result.data is not None
    if "application/json" in request.headers.get("accept", "").lower():
        return JSONResponse({"data": {"result_b64": base64.b64encode(result.data).decode(),
                                      **fg}}, headers=headers)
    return Response(result.data, media_type=result.media_type, headers=headers)


def _options(values: dict[str, str]) -> tuple[Options, str | None]:
    """remove.bg's parameters as the engine's options, and the background image's URL."""
    size = (values.get("size") or "preview").strip().lower()
    if size not in SIZES:
        raise InvalidParameter("size", f"size {size!r:.40} is not one of preview, small, "
                               "regular, medium, hd, full, 4k, 50MP, auto")
    fmt = (values.get("format") or "auto").strip().lower()
    if fmt not in _FORMATS:
        raise InvalidParameter("format", f"format {fmt!r:.40} is not one of auto, png, jpg, "
                               "webp, zip")
    channels = (values.get("channels") or "rgba").strip().lower()
    if channels not in ("rgba", "alpha"):
        raise InvalidParameter("channels", "channels must be rgba or alpha")
    only_mask = channels == "alpha"
    bgcolor = _bg_color(values.get("bg_color"))
    bg_url = None if only_mask else values.get("bg_image_url") or None
    if bg_url and bgcolor:
        raise InvalidParameter("bg_image_url", "send only one of bg_color and bg_image_url")
    if fmt == "auto":
        fmt = "jpeg" if (bgcolor or bg_url) and not only_mask else "png"
    elif fmt == "jpg" and not only_mask and bgcolor is None and not bg_url:
        bgcolor = "white"  # JPEG has no transparency: remove.bg puts the subject on white
    # crop, crop_margin, scale and position are the engine's own rows, under the same names
    geometry = {k: values.get(k) for k in ("crop", "crop_margin", "scale", "position")}
    scale = (geometry["scale"] or "").strip().lower()
    if scale and scale != "original" and not (geometry["position"] or "").strip():
        geometry["position"] = "center"  # scaling the subject centres it unless told otherwise
    placed = Options.from_fields(geometry, "removebg")
    options = Options.create(only_mask=only_mask, bgcolor=bgcolor, max_pixels=SIZES[size],
                             format="png" if fmt == "zip" else fmt, zip=fmt == "zip",
                             crop=placed.crop, crop_margin=placed.crop_margin,
                             scale=placed.scale, position=placed.position)
    return options, bg_url


@router.get("/v1.0/account", summary="Account and limits (remove.bg-compatible)")
async def account(request: Request) -> dict[str, Any]:
    s = service_of(request).settings
    return {"data": {"attributes": {
        "credits": {"total": 0, "subscription": 0, "payg": 0, "enterprise": 0},
        "api": {"free_calls": 1_000_000, "sizes": "all", "unlimited": True},
        "limits": {"max_upload_bytes": s.max_upload_bytes, "max_pixels": s.max_pixels,
                   "max_side_px": s.max_side_px, "request_timeout_s": s.request_timeout_s,
                   "url_fetch_enabled": s.url_fetch_enabled},
    }}}

