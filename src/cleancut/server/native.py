"""The native API: ``POST /api/remove``, ``GET /api/remove?url=`` (when URL input is on),
``GET /api/models``, ``GET /api/limits``."""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from ..engine import Options
from ..engine.imageio import ALLOWED_FORMATS
from ..engine.options import FORMATS
from ..errors import FileTooLarge, InvalidParameter, ModelNotInstalled
from .context import context_of
from .openapi import ERROR_RESPONSES, IMAGE_RESPONSE
from .params import parse_bool, parse_int, pick
from .urlinput import check_enabled, fetch_url

__all__ = ["router", "read_upload", "check_model", "image_headers"]

router = APIRouter(tags=["native"])

_BOOL = "Boolean: true/false, 1/0, on/off or yes/no."


def _f(description: str) -> Any:
    return Form(description=description)


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The uploaded bytes, refusing more than ``max_bytes`` without reading them all."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLarge(
            f"file is larger than the limit of {max_bytes} bytes (CLEANCUT_MAX_UPLOAD_BYTES)"
        )
    return data


def check_model(request: Request, name: str) -> str:
    """The model ``name`` if it is known and installed; else 400 naming the field."""
    from .app import service_of

    store = service_of(request).engine.store
    store.spec(name)  # UnknownModel
    if not store.is_installed(name):
        store.resolve(name)  # raises ModelNotInstalled with the install hint
        raise ModelNotInstalled(f"model {name!r} is not installed")  # pragma: no cover
    context_of(request).model = name
    return name


def image_headers(request: Request, width: int, height: int, model: str,
                  foreground: tuple[int, int, int, int] | None) -> dict[str, str]:
    headers = {"X-Width": str(width), "X-Height": str(height), "X-Model": model}
    if foreground is not None:
        left, top, fg_width, fg_height = foreground
        headers.update({"X-Foreground-Top": str(top), "X-Foreground-Left": str(left),
                        "X-Foreground-Width": str(fg_width),
                        "X-Foreground-Height": str(fg_height)})
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
)
async def remove(
    request: Request,
    file: Annotated[UploadFile | None, File(
        description="The image: JPEG, PNG, WebP, BMP, TIFF or GIF (by content).")] = None,
    model: Annotated[str | None, _f("Model name (see GET /api/models); default: the "
                                    "service's default model.")] = None,
    return_mask: Annotated[str | None, _f(f"Return the mask (greyscale) instead of the cutout. "
                                          f"{_BOOL} Default false.")] = None,
    only_mask: Annotated[str | None, _f("The library's name of return_mask.")] = None,
    om: Annotated[str | None, _f("Short name of return_mask.")] = None,
    post_process_mask: Annotated[str | None, _f(f"Smooth the mask (morphological clean-up). "
                                                f"{_BOOL} Default false.")] = None,
    ppm: Annotated[str | None, _f("Short name of post_process_mask.")] = None,
    alpha_matting: Annotated[str | None, _f(f"Refine edges with alpha matting (slower). "
                                            f"{_BOOL} Default false.")] = None,
    a: Annotated[str | None, _f("Short name of alpha_matting.")] = None,
    alpha_matting_foreground_threshold: Annotated[str | None, _f(
        "Mask value above which a pixel is sure foreground, 0-255. Default 240.")] = None,
    af: Annotated[str | None, _f("Short name of alpha_matting_foreground_threshold.")] = None,
    alpha_matting_background_threshold: Annotated[str | None, _f(
        "Mask value below which a pixel is sure background, 0-255. Default 10.")] = None,
    ab: Annotated[str | None, _f("Short name of alpha_matting_background_threshold.")] = None,
    alpha_matting_erode_size: Annotated[str | None, _f(
        "Erosion of the sure regions in pixels, 0-64. Default 10.")] = None,
    ae: Annotated[str | None, _f("Short name of alpha_matting_erode_size.")] = None,
    bgcolor: Annotated[str | None, _f(
        "Background colour instead of transparency: #rrggbb, #rrggbbaa, a CSS name or "
        "R,G,B[,A]. Default: none (transparent).")] = None,
    bgc: Annotated[str | None, _f("Short name of bgcolor.")] = None,
    premultiplied: Annotated[str | None, _f(
        f"Scale colours by alpha, as the reference tool does. {_BOOL} Default false.")] = None,
    format: Annotated[str | None, _f(
        "Output format: png, webp or jpeg (jpg). Default png. JPEG needs an opaque result "
        "(bgcolor or only_mask).")] = None,
    quality: Annotated[str | None, _f(
        "1-100: JPEG quality, or lossy WebP at that quality. Default: JPEG 90, lossless WebP."
    )] = None,
) -> Response:
    from .app import service_of

    if file is None:
        raise InvalidParameter("file", "send the image as the multipart/form-data field 'file'")
    # Every parameter but the file, by its form-field name (the signature above is the list).
    values = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
    upload = file
    max_bytes = service_of(request).engine.limits.max_bytes

    async def source(_deadline: float) -> bytes:
        return await read_upload(upload, max_bytes)

    return await _remove(request, values, source, file.filename)


_OPTION_NAMES = ("model", "return_mask", "only_mask", "om", "post_process_mask", "ppm",
                 "alpha_matting", "a", "alpha_matting_foreground_threshold", "af",
                 "alpha_matting_background_threshold", "ab", "alpha_matting_erode_size", "ae",
                 "bgcolor", "bgc", "premultiplied", "format", "quality")


def _options(values: Mapping[str, str | None]) -> Options:
    v = values.get
    return Options.create(
        only_mask=parse_bool("return_mask", pick(("return_mask", v("return_mask")),
                                                 ("only_mask", v("only_mask")), ("om", v("om")))),
        post_process_mask=parse_bool("post_process_mask", pick(
            ("post_process_mask", v("post_process_mask")), ("ppm", v("ppm")))),
        alpha_matting=parse_bool("alpha_matting", pick(("alpha_matting", v("alpha_matting")),
                                                       ("a", v("a")))),
        alpha_matting_foreground_threshold=_int(
            "alpha_matting_foreground_threshold", v("alpha_matting_foreground_threshold"),
            "af", v("af"), 240),
        alpha_matting_background_threshold=_int(
            "alpha_matting_background_threshold", v("alpha_matting_background_threshold"),
            "ab", v("ab"), 10),
        alpha_matting_erode_size=_int("alpha_matting_erode_size", v("alpha_matting_erode_size"),
                                      "ae", v("ae"), 10),
        bgcolor=pick(("bgcolor", v("bgcolor")), ("bgc", v("bgc"))) or None,
        premultiplied=parse_bool("premultiplied", v("premultiplied")),
        format=v("format") or "png",
        quality=parse_int("quality", v("quality"), None),
    )


async def _remove(request: Request, values: Mapping[str, str | None],
                  source: Callable[[float], Awaitable[bytes]], filename: str | None) -> Response:
    """Check the parameters, get the image bytes from ``source(deadline)``, process, answer."""
    from .app import service_of

    service = service_of(request)
    ctx = context_of(request)
    name = check_model(request, values.get("model") or service.settings.default_model)
    options = _options(values)
    deadline = time.monotonic() + service.settings.request_timeout_s
    data = await source(deadline)
    result = await service.process(
        lambda end: service.engine.process(data, options, model=name, deadline=end),
        ctx=ctx, deadline=deadline,
    )
    service.metrics.observe_stages(result.model, result.timings_ms)
    ctx.record(image_format=result.source_format, width=result.width, height=result.height,
               timings_ms=result.timings_ms)
    headers = image_headers(request, result.width, result.height, result.model, result.foreground)
    fmt = result.format or "png"
    headers["Content-Disposition"] = (
        f'inline; filename="{_download_name(filename, options.only_mask, fmt)}"'
    )
    return Response(result.data, media_type=result.media_type, headers=headers)


def _query_docs() -> list[dict[str, Any]]:
    """The POST form fields, documented as query parameters of the GET route."""
    params = inspect.signature(remove, eval_str=True).parameters
    docs = []
    for name in _OPTION_NAMES:
        meta = [m for m in getattr(params[name].annotation, "__metadata__", ())
                if hasattr(m, "description")]
        docs.append({"name": name, "in": "query", "required": False,
                     "schema": {"type": "string"},
                     "description": meta[0].description if meta else ""})
    return docs


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
    from .app import service_of

    settings = service_of(request).settings
    check_enabled(settings, "url")
    if not url:
        raise InvalidParameter("url", "give the image's address as ?url=https://...")
    target = url
    values = {k: request.query_params.get(k) for k in _OPTION_NAMES}

    async def source(deadline: float) -> bytes:
        return await fetch_url(settings, target, "url", deadline)

    return await _remove(request, values, source, urlsplit(target).path.rsplit("/", 1)[-1])


def _int(name: str, value: str | None, short: str, short_value: str | None, default: int) -> int:
    parsed = parse_int(name, pick((name, value), (short, short_value)), default)
    assert parsed is not None
    return parsed


@router.get("/api/models", summary="The installed models")
async def models(request: Request) -> dict[str, Any]:
    from .app import service_of

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
    from .app import service_of

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
