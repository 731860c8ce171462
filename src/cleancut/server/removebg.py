"""remove.bg-compatible API: ``POST /v1.0/removebg`` and ``GET /v1.0/account``.

Accepts what remove.bg's API accepts for local work (multipart, urlencoded or JSON bodies), so
existing remove.bg client libraries work by changing only the base URL. Errors use remove.bg's
shape and statuses (400, 403, 429; 503/504 for the service's own overload and deadline).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, ImageOps
from starlette.datastructures import UploadFile

from ..engine import Engine, Options, imageio
from ..engine.mask import foreground_box
from ..engine.options import OutputFormat
from ..errors import FileTooLarge, InvalidParameter, ProcessingTimeout
from .context import context_of
from .layout import Layout, apply_layout, fit, parse_layout, size_limit
from .native import check_model, read_upload
from .openapi import ERROR_SCHEMA
from .params import parse_bool
from .removebg_schema import request_body_schema
from .urlinput import check_enabled, fetch_url

__all__ = ["router"]

router = APIRouter(tags=["remove.bg compatible"])

_TYPES = {"auto", "person", "product", "animal", "car", "car_interior", "car_part",
          "transportation", "graphic", "graphics", "other"}
_FORMATS = {"auto", "png", "jpg", "jpeg", "webp", "zip"}
_UNSUPPORTED = ("bg_image_file",)


@dataclass(frozen=True)
class _Job:
    payload: bytes | str  # uploaded bytes, or base64 text decoded on the worker
    options: Options
    model: str
    max_pixels: int | None
    layout: Layout
    zip: bool
    background: bytes | None = None  # bg_image_url's image: the cutout goes over it, scaled
    encode_format: OutputFormat | None = None  # when it differs from options.format


@dataclass
class _Output:
    data: bytes
    media_type: str
    width: int
    height: int
    foreground: tuple[int, int, int, int] | None
    timings_ms: dict[str, float]
    model: str
    source_format: str | None = None


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
                raise InvalidParameter(str(key)[:40], f"{str(key)[:40]} must be a string")
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
    from .app import service_of

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


def _work(engine: Engine, job: _Job, deadline: float) -> _Output:
    def check(stage: str) -> None:
        if time.monotonic() > deadline:
            raise ProcessingTimeout(f"request ran past its deadline before {stage}")

    started = time.perf_counter()
    data = job.payload if isinstance(job.payload, bytes) else \
        _decode_b64(job.payload, engine.limits.max_bytes)
    decoded = engine.decode(data)
    color, icc = imageio.cmyk_to_rgb(decoded.image, decoded.icc_profile)
    image = fit(imageio.to_color(color), job.max_pixels)
    decode_ms = (time.perf_counter() - started) * 1e3
    check("inference")
    result = engine.cut(image, job.options, model=job.model)
    check("encode")
    started = time.perf_counter()
    bg = job.options.bgcolor
    fill: tuple[int, ...] | int = 0 if result.image.mode == "L" else (
        (0, 0, 0, 0) if result.image.mode == "RGBA" else tuple((bg or (255, 255, 255))[:3]))
    out, alpha = apply_layout([result.image, result.alpha], result.foreground, [fill, 0],
                              job.layout)
    box = result.foreground if job.layout.is_identity else foreground_box(alpha)
    if job.background is not None and out.mode == "RGBA":
        out = _over_background(engine, out, job.background)
    if job.zip:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("color.jpg", imageio.encode(out.convert("RGB"), "jpeg",
                                                         quality=job.options.quality))
            archive.writestr("alpha.png", imageio.encode(alpha, "png"))
        body, media_type = buf.getvalue(), "application/zip"
    else:
        fmt = job.encode_format or job.options.format
        body = imageio.encode(out, fmt, icc_profile=None if job.options.only_mask else icc,
                              quality=job.options.quality)
        media_type = imageio.MEDIA_TYPES[fmt]
    timings = {"decode": decode_ms, **result.timings_ms,
               "encode": (time.perf_counter() - started) * 1e3}
    return _Output(body, media_type, out.width, out.height, box, timings, result.model,
                   decoded.format)


def _over_background(engine: Engine, cutout: Image.Image, data: bytes) -> Image.Image:
    """``cutout`` (RGBA) over the image ``data``, scaled to cover and centred: an RGB image."""
    decoded = engine.decode(data)
    color, _icc = imageio.cmyk_to_rgb(decoded.image, decoded.icc_profile)
    bg = ImageOps.fit(imageio.to_color(color).convert("RGB"), cutout.size,
                      Image.Resampling.LANCZOS).convert("RGBA")
    bg.alpha_composite(cutout)
    return bg.convert("RGB")


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
    from .app import service_of

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
    for name in _UNSUPPORTED:
        if values.get(name):
            raise InvalidParameter(name, f"{name} is not supported; use bg_color")
    for name in ("semitransparency", "add_shadow"):
        parse_bool(name, values.get(name))
    if (values.get("type_level") or "latest").lower() not in ("none", "1", "2", "latest"):
        raise InvalidParameter("type_level", "type_level must be none, 1, 2 or latest")
    max_pixels = size_limit(values.get("size") or "preview")
    model, kind = _model_for(request, values)
    fmt = (values.get("format") or "auto").strip().lower()
    if fmt not in _FORMATS:
        raise InvalidParameter("format", f"format {fmt!r:.40} is not one of auto, png, jpg, "
                               "webp, zip")
    channels = (values.get("channels") or "rgba").strip().lower()
    if channels not in ("rgba", "alpha"):
        raise InvalidParameter("channels", "channels must be rgba or alpha")
    only_mask = channels == "alpha"
    bgcolor = _bg_color(values.get("bg_color"))
    bg_url = None if only_mask else values.get("bg_image_url")
    if bg_url and bgcolor:
        raise InvalidParameter("bg_image_url", "send only one of bg_color and bg_image_url")
    if fmt == "auto":
        fmt = "jpeg" if (bgcolor or bg_url) and not only_mask else "png"
    elif fmt == "jpg" and not only_mask and bgcolor is None and not bg_url:
        bgcolor = "white"  # JPEG has no transparency: remove.bg puts the subject on white
    fmt = "jpeg" if fmt == "jpg" else fmt
    # Over a background image the engine makes the transparent cutout; _work encodes the result.
    options = Options.create(only_mask=only_mask, bgcolor=bgcolor,
                             format="png" if fmt == "zip" or bg_url else fmt)
    layout = parse_layout(parse_bool("crop", values.get("crop")), values.get("crop_margin"),
                          values.get("scale"), values.get("position"))
    payload: bytes | str
    if upload is not None:
        payload = await read_upload(upload, max_bytes)
    elif given[0] == "image_url":
        payload = await fetch_url(service.settings, values["image_url"], "image_url", deadline)
    else:
        payload = values["image_file_b64"]
    background = await fetch_url(service.settings, bg_url, "bg_image_url", deadline) \
        if bg_url else None
    job = _Job(payload, options, model, max_pixels, layout, fmt == "zip", background,
               None if fmt == "zip" else cast(OutputFormat, fmt))
    out = await service.process(lambda end: _work(service.engine, job, end),
                                ctx=ctx, deadline=deadline)
    service.metrics.observe_stages(out.model, out.timings_ms)
    ctx.record(image_format=out.source_format, width=out.width, height=out.height,
               timings_ms=out.timings_ms)
    headers = {"X-Width": str(out.width), "X-Height": str(out.height), "X-Type": kind,
               "X-Model": out.model, "X-Credits-Charged": "0"}
    fg: dict[str, int] = {}
    if out.foreground is not None:
        left, top, width, height = out.foreground
        fg = {"foreground_top": top, "foreground_left": left,
              "foreground_width": width, "foreground_height": height}
        headers.update({f"X-Foreground-{k.split('_')[1].title()}": str(v) for k, v in fg.items()})
    if "application/json" in request.headers.get("accept", "").lower():
        return JSONResponse({"data": {"result_b64": base64.b64encode(out.data).decode(), **fg}},
                            headers=headers)
    return Response(out.data, media_type=out.media_type, headers=headers)


@router.get("/v1.0/account", summary="Account and limits (remove.bg-compatible)")
async def account(request: Request) -> dict[str, Any]:
    from .app import service_of

    s = service_of(request).settings
    return {"data": {"attributes": {
        "credits": {"total": 0, "subscription": 0, "payg": 0, "enterprise": 0},
        "api": {"free_calls": 1_000_000, "sizes": "all", "unlimited": True},
        "limits": {"max_upload_bytes": s.max_upload_bytes, "max_pixels": s.max_pixels,
                   "max_side_px": s.max_side_px, "request_timeout_s": s.request_timeout_s,
                   "url_fetch_enabled": s.url_fetch_enabled},
    }}}

