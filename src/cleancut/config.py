"""Every setting of cleancut, in one place, with safe defaults.

Each field is read from the environment as ``CLEANCUT_<FIELD NAME IN CAPITALS>`` (lists as
comma-separated values). Nothing is read at import: call :func:`load` (or build ``Settings(...)``
directly, as the tests do).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import InvalidParameter

__all__ = ["Settings", "load", "default_model_dir"]


def default_model_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/cleancut/models``, falling back to ``~/.local/share/cleancut/models``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cleancut" / "models"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLEANCUT_", frozen=True, extra="forbid", protected_namespaces=()
    )

    # --- models -------------------------------------------------------------------------------
    model_dir: Path = Field(default_factory=default_model_dir)  # where verified weights live
    default_model: str = "u2net"  # model used when a request names none
    providers: CsvList = ["CPUExecutionProvider"]  # ONNX Runtime execution providers, in order
    intra_op_threads: int = Field(0, ge=0, le=256)  # threads inside one inference; 0 = ORT's choice
    inter_op_threads: int = Field(1, ge=0, le=256)  # threads across graph branches; 0 = ORT's

    # --- limits on input ----------------------------------------------------------------------
    max_upload_bytes: int = Field(10_000_000, ge=1)  # largest accepted encoded image, in bytes
    max_pixels: int = Field(40_000_000, ge=1)  # largest accepted width × height, in pixels
    max_side_px: int = Field(16_384, ge=1)  # longest accepted side, in pixels
    max_frames: int = Field(256, ge=1)  # most frames accepted in an animated GIF/WebP/TIFF

    # --- alpha matting ------------------------------------------------------------------------
    matting_max_pixels: int = Field(1_000_000, ge=10_000)  # matting works on at most this many px

    # --- HTTP service -------------------------------------------------------------------------
    host: str = "127.0.0.1"  # address the service binds to
    port: int = Field(5000, ge=0, le=65535)  # TCP port of the service
    models: CsvList = ["u2net", "u2netp"]  # models loaded and warmed at start-up
    workers: int = Field(0, ge=0, le=256)  # concurrent inferences; 0 = one per CPU core
    queue_size: int = Field(0, ge=0, le=10_000)  # requests allowed to wait; 0 = 4 × workers
    request_timeout_s: float = Field(30.0, gt=0, le=3600)  # deadline per request, wait included
    url_fetch_enabled: bool = False  # accept image URLs (remove.bg image_url); off: refused, 400

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: Any, init_settings: Any, **_: Any
    ) -> tuple[Any, ...]:
        # Only what load() passes counts: the environment is read there, from the mapping given,
        # so that building settings is a pure function of its inputs.
        return (init_settings,)

    @field_validator("providers", "models", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    def effective_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def effective_queue_size(self) -> int:
        return self.queue_size or 4 * self.effective_workers()


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default: the process environment) plus explicit overrides.

    Raises :class:`~cleancut.errors.InvalidParameter` naming the ``CLEANCUT_*`` variable at fault.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = f"CLEANCUT_{name.upper()}"
        if key in env:
            values[name] = env[key]
    if "model_dir" not in values:
        values["model_dir"] = default_model_dir(env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"CLEANCUT_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        field = str(exc.errors()[0]["loc"][0]) if exc.errors() else "settings"
        raise InvalidParameter(field, f"invalid setting: {problems}") from exc
