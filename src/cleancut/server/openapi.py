"""Shared OpenAPI fragments: the error body and the image responses."""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_RESPONSES", "IMAGE_RESPONSE", "ERROR_SCHEMA"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "description": "stable, for programs"},
                    "title": {"type": "string"},
                    "detail": {"type": "string", "description": "what went wrong, what to do"},
                    "field": {"type": "string", "description": "the parameter at fault"},
                },
                "required": ["code", "title", "detail"],
            },
        },
        "request_id": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("A parameter is malformed (code invalid_<field>), the model is unknown "
                "(unknown_model) or not installed (model_not_installed)"),
    413: _error("File too large (file_too_large) or too many pixels (resolution_too_high)"),
    415: _error("Not a supported image format (invalid_file_type)"),
    422: _error("The image cannot be decoded (failed_to_read_image)"),
    503: _error("Overloaded or not ready yet (overloaded, not_ready); see Retry-After"),
    504: _error("The request ran past its deadline (processing_timeout)"),
}

_FG = "Bounding box of the subject (alpha > 127); absent when the result is empty."
IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result image",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": {
            "X-Request-Id": {"description": "The request id", "schema": {"type": "string"}},
            "X-Width": {"description": "Width of the result", "schema": {"type": "integer"}},
            "X-Height": {"description": "Height of the result", "schema": {"type": "integer"}},
            "X-Model": {"description": "The model used", "schema": {"type": "string"}},
            "X-Foreground-Top": {"description": _FG, "schema": {"type": "integer"}},
            "X-Foreground-Left": {"description": _FG, "schema": {"type": "integer"}},
            "X-Foreground-Width": {"description": _FG, "schema": {"type": "integer"}},
            "X-Foreground-Height": {"description": _FG, "schema": {"type": "integer"}},
            "X-Confidence": {"description": "How sure the model is of this mask, 0-1: send "
                             "results below ~0.5 to a person", "schema": {"type": "number"}},
            "X-Cleancut-Warning": {"description": "Present when the pipeline fell back (e.g. "
                                   "alpha matting failed and the plain cutout was returned)",
                                   "schema": {"type": "string"}},
        },
    }
}
