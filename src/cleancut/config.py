"""Every setting of cleancut, in one place, with safe defaults.

Each field is read from the environment as ``CLEANCUT_<FIELD NAME IN CAPITALS>`` (lists as
comma-separated values). Nothing is read at import: call :func:`load` (or build ``Settings(...)``
directly, as the tests do).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .apikeys import ApiKey, parse_entries
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
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLEANCUT_", frozen=True, extra="forbid", protected_namespaces=(),
        hide_input_in_errors=True,  # an invalid API key entry must never be echoed in an error
    )

    # --- models -------------------------------------------------------------------------------
    model_dir: Path = Field(default_factory=default_model_dir)  # where verified weights live
    default_model: str = "u2net"  # model used when a request names none
    providers: CsvList = ["CPUExecutionProvider"]  # ONNX Runtime execution providers, in order
    # threads inside one inference; 0 = every core. Inferences run side by side only as far as
    # they fit on the cores (cores // threads at once; one at a time by default).
    intra_op_threads: int = Field(0, ge=0, le=256)
    inter_op_threads: int = Field(1, ge=0, le=256)  # threads across graph branches; 0 = ORT's
    # keep large image buffers in the C heap between requests instead of fresh pages each time
    # (glibc's mmap threshold 256 MB, trim threshold 512 MB; process-wide, set by the Engine)
    keep_large_buffers: bool = True

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
    workers: int = Field(0, ge=0, le=256)  # requests processed at once; 0 = one per CPU core
    queue_size: int = Field(0, ge=0, le=10_000)  # requests allowed to wait; 0 = 4 × workers
    request_timeout_s: float = Field(30.0, gt=0, le=3600)  # deadline per request, wait included
    body_timeout_s: float = Field(30.0, gt=0, le=3600)  # time for a request body to arrive; 408
    header_timeout_s: float = Field(10.0, gt=0, le=3600)  # request line + headers; then closed
    keep_alive_timeout_s: int = Field(5, ge=1, le=3600)  # idle keep-alive connection closed after
    max_connections: int = Field(0, ge=0, le=100_000)  # open connections; 0 = workers+queue+64
    max_header_bytes: int = Field(65_536, ge=4096, le=1_048_576)  # request line + headers, bytes
    shutdown_grace_s: float = Field(30.0, ge=0, le=3600)  # SIGTERM: time to finish in-flight work
    tmp_dir: Path | None = None  # the only place written at run time; none = the system temp dir
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"  # service logs
    log_format: Literal["json", "text"] = "json"  # access log (stdout) and service log (stderr)
    access_log_file: Path | None = None  # also write the access log here (rotated); none = off
    access_log_max_bytes: int = Field(10_000_000, ge=1024)  # rotate the log file at this size
    access_log_backups: int = Field(5, ge=0, le=1000)  # rotated access log files kept

    # --- URL input ----------------------------------------------------------------------------
    url_fetch_enabled: bool = False  # accept image URLs (?url=, image_url); off: refused, 400
    url_allow_hosts: CsvList = []  # hosts that may be fetched (may be private); none = any public
    url_connect_timeout_s: float = Field(5.0, gt=0, le=300)  # TCP connect + TLS, per redirect hop
    url_timeout_s: float = Field(15.0, gt=0, le=3600)  # whole fetch incl. redirects and body
    url_max_redirects: int = Field(3, ge=0, le=20)  # redirects followed, each re-checked

    # --- access control -----------------------------------------------------------------------
    # API keys: entries `KEY`, `ID:KEY` or `ID:sha256:HEX` (see cleancut.apikeys); hashed on load.
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = ()  # comma-separated; none = no keys
    api_keys_file: Path | None = None  # file of key entries, one a line (# comments); read at start
    allow_anonymous: bool = False  # serve without keys on a non-loopback address (else refused)
    metrics_public: bool = False  # /metrics open without a key even when keys are configured
    rate_limit_per_minute: int = Field(0, ge=0, le=1_000_000)  # requests per key/client; 0 = off
    rate_limit_burst: int = Field(0, ge=0, le=1_000_000)  # bucket size; 0 = rate_limit_per_minute
    rate_limit_max_clients: int = Field(10_000, ge=1, le=10_000_000)  # buckets kept (LRU)
    trusted_proxies: CsvList = []  # IPs/CIDRs whose X-Forwarded-For is believed; none = ignored
    cors_origins: CsvList = []  # origins allowed by CORS (scheme://host[:port], or *); none = off

    @classmethod
    def settings_customise_sources(  # type: ignore[override]
        cls, settings_cls: Any, init_settings: Any, **_: Any
    ) -> tuple[Any, ...]:
        # Only what load() passes counts: the environment is read there, from the mapping given,
        # so that building settings is a pure function of its inputs.
        return (init_settings,)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return parse_entries(value, "CLEANCUT_API_KEYS")
        return value

    @field_validator("allow_anonymous", "metrics_public", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if text not in ("true", "false", "1", "0"):
                raise ValueError("use true, false, 1 or 0")
            return text in ("true", "1")
        return value

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item[:60]!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("cors_origins", mode="after")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "*" and not _ORIGIN.fullmatch(item):
                raise ValueError(f"{item[:60]!r} is not an origin like https://app.example.com")
        return value

    @field_validator("providers", "models", "trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("url_allow_hosts", mode="before")
    @classmethod
    def _csv_hosts(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

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
