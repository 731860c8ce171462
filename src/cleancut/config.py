"""Every setting of cleancut, in one place, with safe defaults.

Each field is read from the environment as ``CLEANCUT_<FIELD NAME IN CAPITALS>`` (lists as
comma-separated values). Nothing is read at import: call :func:`load` (or build ``Settings(...)``
directly, as the tests do).

Each field's ``description`` is its documentation: :func:`reference_markdown` renders them, grouped
by section, into ``docs/settings.md`` (``scripts/gen-docs`` writes it; a test checks it is current).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, Field, JsonValue, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .apikeys import ApiKey, parse_entries
from .errors import InvalidSetting

__all__ = ["Settings", "load", "default_model_dir", "env_var", "reference_markdown"]

DOCS: Final = "docs/settings.md"  # where the reference lives; error messages point there
# Ray puts its sockets at DIR/session_<date>_<time>_<µs>_<pid>/sockets/plasma_store, and
# a Unix socket path has at most 107 bytes.
RAY_DIR_MAX_BYTES: Final = 40


def default_model_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/cleancut/models``, falling back to ``~/.local/share/cleancut/models``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cleancut" / "models"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _strict_bool(value: Any) -> Any:
    """``true``/``false``/``1``/``0`` in any case, spaces around allowed; nothing else."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise ValueError(f"use true, false, 1 or 0, not {value.strip()[:20]!r}")
        return text in ("true", "1")
    return value


CsvList = Annotated[list[str], NoDecode]
JsonDict = dict[str, JsonValue]  # what json_schema_extra takes
# Every boolean setting has this type: yes/on/t/"" are start-up errors, not a guess.
StrictEnvBool = Annotated[bool, BeforeValidator(_strict_bool)]
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

# The sections of the reference, in order: key -> (title, lead paragraph).
_SECTIONS: Final[dict[str, tuple[str, str]]] = {
    "models": ("Models", "Where the weights live and how ONNX Runtime runs them."),
    "limits": ("Limits on input", "Checked from the image header before any pixel is decoded. "
               "Raising a limit raises what one request may cost; see the memory budget in "
               "[SECURITY.md](../SECURITY.md#memory-budget)."),
    "matting": ("Alpha matting", ""),
    "service": ("HTTP service", "Read by `cleancut serve` and `python -m cleancut.server`."),
    "url": ("URL input", "Off by default. [SECURITY.md](../SECURITY.md#threat-model) describes "
            "the guards against server-side request forgery."),
    "access": ("Access control", "API keys, rate limits, proxies and CORS."),
    "ray": ("Ray (`--engine ray`)", "Read by `cleancut p --engine ray`, `cleancut serve --engine "
            "ray` and `serve run cleancut.ray:app`, which need `pip install 'cleancut[ray]'`. "
            "Whatever these say, cleancut turns Ray's usage statistics off "
            "(`RAY_USAGE_STATS_ENABLED=0`) and asks for token authentication "
            "(`RAY_AUTH_MODE=token`); Ray's own `RAY_ADDRESS`, `RAY_AUTH_TOKEN` and "
            "`RAY_AUTH_TOKEN_PATH` are honoured. The defaults fit a small machine: see "
            "`bench/results/ray.md` for what Ray costs there."),
}


def _doc(section: str, *, warning: str = "", default: str = "") -> JsonDict:
    """The documentation extras of a field: its section, a warning for a switch that weakens
    security, and the default as the reference shows it (for a default that depends on the
    machine)."""
    extra: JsonDict = {"section": section}
    if warning:
        extra["security_warning"] = warning
    if default:
        extra["default_doc"] = default
    return extra


class Settings(BaseSettings):
    """All settings; ``load()`` builds them from ``CLEANCUT_*`` variables. Frozen."""

    model_config = SettingsConfigDict(
        env_prefix="CLEANCUT_", frozen=True, extra="forbid", protected_namespaces=(),
        hide_input_in_errors=True,  # an invalid API key entry must never be echoed in an error
    )

    # --- models -------------------------------------------------------------------------------
    model_dir: Path = Field(
        default_factory=default_model_dir,
        description="where verified weights live (`cleancut models pull` and `models import` "
        "install into it; nothing is downloaded at run time)",
        json_schema_extra=_doc("models", default="`$XDG_DATA_HOME/cleancut/models` (fallback "
                               "`~/.local/share/cleancut/models`)"))
    default_model: str = Field(
        "u2net", description="model used when a request names none",
        json_schema_extra=_doc("models"))
    providers: CsvList = Field(
        ["CPUExecutionProvider"], description="ONNX Runtime execution providers, in order",
        json_schema_extra=_doc("models"))
    intra_op_threads: int = Field(
        0, ge=0, le=256,
        description="threads inside one inference; 0 = every core. Inferences run side by side "
        "only as far as they fit on the cores (cores ÷ threads at once, so one at a time by "
        "default) while decoding and encoding of other requests go on in parallel",
        json_schema_extra=_doc("models"))
    inter_op_threads: int = Field(
        1, ge=0, le=256,
        description="threads across graph branches; 0 = ONNX Runtime's default",
        json_schema_extra=_doc("models"))
    keep_large_buffers: StrictEnvBool = Field(
        True,
        description="on Linux (glibc), keep large image buffers in the C heap between requests "
        "instead of faulting in fresh pages each time (mmap threshold 256 MB, trim threshold "
        "512 MB, one malloc arena; process-wide): ~170 ms less on a 12 MP photo, same peak "
        "memory. Applied by the doors that own the process (`cleancut serve` and the CLI), not "
        "by constructing an `Engine`; a library caller opts in with "
        "`cleancut.configure_process()`. Where it is applied, sessions loaded afterwards run "
        "without ONNX Runtime's memory arena, so an idle process hands its memory back; "
        "elsewhere they keep the arena (faster than the untuned heap)",
        json_schema_extra=_doc("models"))

    # --- limits on input ----------------------------------------------------------------------
    max_upload_bytes: int = Field(
        10_000_000, ge=1,
        description="largest accepted encoded image, in bytes, enforced while the body streams "
        "in (413 `file_too_large`)",
        json_schema_extra=_doc("limits"))
    max_pixels: int = Field(
        40_000_000, ge=1,
        description="largest accepted width × height, in pixels, from the header (413 "
        "`resolution_too_high`); `cleancut serve` and the CLI also set Pillow's own guard "
        "(`Image.MAX_IMAGE_PIXELS`) to it (a library caller: `cleancut.configure_process()`)",
        json_schema_extra=_doc("limits"))
    max_side_px: int = Field(
        16_384, ge=1,
        description="longest accepted side, in pixels, from the header (413 "
        "`resolution_too_high`)",
        json_schema_extra=_doc("limits"))
    max_frames: int = Field(
        256, ge=1,
        description="most frames accepted in an animated GIF/WebP/PNG or pages in a TIFF, "
        "counted no further than the limit (413 `resolution_too_high`)",
        json_schema_extra=_doc("limits"))

    # --- alpha matting ------------------------------------------------------------------------
    matting_max_pixels: int = Field(
        1_000_000, ge=10_000,
        description="matting works on at most this many pixels, whatever the image size (the "
        "region around the subject's edge is scaled down to fit first)",
        json_schema_extra=_doc("matting"))

    # --- HTTP service -------------------------------------------------------------------------
    host: str = Field(
        "127.0.0.1",
        description="address the service binds to; any address but loopback needs API keys "
        "or `CLEANCUT_ALLOW_ANONYMOUS`",
        json_schema_extra=_doc("service"))
    port: int = Field(
        5000, ge=0, le=65535,
        description="TCP port of the service; 0 = a free port the system picks",
        json_schema_extra=_doc("service"))
    models: CsvList = Field(
        ["u2net", "u2netp"],
        description="models loaded and warmed at start-up (a request can name only installed "
        "catalogue models)",
        json_schema_extra=_doc("service"))
    workers: int = Field(
        0, ge=0, le=256,
        description="requests processed at once (decode, inference, encode); 0 = one per CPU "
        "core (in a container: the host's cores, so set it). Inferences among them share the "
        "cores as `CLEANCUT_INTRA_OP_THREADS` says",
        json_schema_extra=_doc("service"))
    queue_size: int = Field(
        0, ge=0, le=10_000,
        description="requests allowed to wait for a worker; 0 = 4 × workers. Beyond: 503 "
        "`overloaded` with `Retry-After`, at once",
        json_schema_extra=_doc("service"))
    request_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="deadline per request, in seconds, waiting included (504 "
        "`processing_timeout` after)",
        json_schema_extra=_doc("service"))
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600,
        description="time for a request body to arrive, in seconds (slow clients are cut off "
        "with 408 `request_timeout`)",
        json_schema_extra=_doc("service"))
    header_timeout_s: float = Field(
        10.0, gt=0, le=3600,
        description="time for the request line and headers to arrive, in seconds, from the "
        "connection opening or the previous response; then the connection is closed",
        json_schema_extra=_doc("service"))
    keep_alive_timeout_s: int = Field(
        5, ge=1, le=3600,
        description="an idle keep-alive connection is closed after this many seconds",
        json_schema_extra=_doc("service"))
    max_connections: int = Field(
        0, ge=0, le=100_000,
        description="open connections at once; 0 = workers + queue + 64",
        json_schema_extra=_doc("service"))
    max_header_bytes: int = Field(
        65_536, ge=4096, le=1_048_576,
        description="largest request line + headers, in bytes",
        json_schema_extra=_doc("service"))
    shutdown_grace_s: float = Field(
        30.0, ge=0, le=3600,
        description="on SIGTERM, time to finish in-flight work, in seconds (new requests get "
        "503 meanwhile); 0 = in-flight work is not waited for",
        json_schema_extra=_doc("service"))
    tmp_dir: Path | None = Field(
        None,
        description="the only place written at run time; none = the system temp dir",
        json_schema_extra=_doc("service"))
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="level of the service log",
        json_schema_extra=_doc("service"))
    log_format: Literal["json", "text"] = Field(
        "json",
        description="format of the access log (stdout, one line per request, no image content "
        "or secrets) and of the service log (stderr)",
        json_schema_extra=_doc("service"))
    access_log_file: Path | None = Field(
        None, description="also write the access log to this file (rotated); none = off",
        json_schema_extra=_doc("service"))
    access_log_max_bytes: int = Field(
        10_000_000, ge=1024, description="rotate the access log file at this size, in bytes",
        json_schema_extra=_doc("service"))
    access_log_backups: int = Field(
        5, ge=0, le=1000,
        description="rotated access log files kept; 0 = the file is never rotated (it grows "
        "without bound)",
        json_schema_extra=_doc("service"))

    # --- URL input ----------------------------------------------------------------------------
    url_fetch_enabled: StrictEnvBool = Field(
        False,
        description="accept image URLs (`GET /api/remove?url=`, remove.bg's `image_url` and "
        "`bg_image_url`); off: refused with 400",
        json_schema_extra=_doc(
            "url", warning="the service then connects to addresses that clients choose. "
            "Private, loopback, link-local, CGNAT, multicast, reserved and cloud-metadata "
            "addresses are refused (unless listed in `CLEANCUT_URL_ALLOW_HOSTS`), every redirect "
            "is re-checked, and the byte limit and timeouts hold while reading; the host also "
            "needs egress to the internet. Turn it on only if clients need it."))
    url_allow_hosts: CsvList = Field(
        [],
        description="hosts that may be fetched (they may be private); none = any public "
        "address",
        json_schema_extra=_doc(
            "url", warning="a listed host is fetched even when it resolves to a private or "
            "loopback address, so anyone who can send a URL can reach it through the service. "
            "List only hosts meant to serve images to it."))
    url_connect_timeout_s: float = Field(
        5.0, gt=0, le=300,
        description="TCP connect + TLS handshake, in seconds, per redirect hop",
        json_schema_extra=_doc("url"))
    url_timeout_s: float = Field(
        15.0, gt=0, le=3600,
        description="the whole fetch, in seconds, redirects and body included",
        json_schema_extra=_doc("url"))
    url_max_redirects: int = Field(
        3, ge=0, le=20, description="redirects followed, each re-checked; 0 = none",
        json_schema_extra=_doc("url"))

    # --- access control -----------------------------------------------------------------------
    api_keys: Annotated[tuple[ApiKey, ...], NoDecode] = Field(
        (),
        description="API keys, comma-separated entries `KEY`, `ID:KEY` or `ID:sha256:HEX` (see "
        "`cleancut.apikeys`), hashed on load and compared in constant time; when set, a key is "
        "required on `/api`, `/v1.0` and `/metrics`, as `X-API-Key` or `Authorization: Bearer` "
        "(401; 403 in `/v1.0/removebg`); none = no keys",
        json_schema_extra=_doc("access"))
    api_keys_file: Path | None = Field(
        None,
        description="file of key entries, one a line (`#` starts a comment), read at start-up; "
        "none = no file",
        json_schema_extra=_doc("access"))
    allow_anonymous: StrictEnvBool = Field(
        False,
        description="serve without keys on a non-loopback address (refused at start-up "
        "otherwise); also `cleancut serve --allow-anonymous`",
        json_schema_extra=_doc(
            "access", warning="anyone who can reach the address can use the service and its "
            "CPU time. Prefer API keys; if the service must be open, set "
            "`CLEANCUT_RATE_LIMIT_PER_MINUTE`."))
    metrics_public: StrictEnvBool = Field(
        False, description="`/metrics` open without a key even when keys are configured",
        json_schema_extra=_doc(
            "access", warning="anyone who can reach the service then reads its request "
            "counts, error rates, latencies, queue depth and model names."))
    rate_limit_per_minute: int = Field(
        0, ge=0, le=1_000_000,
        description="requests per minute per key, or per client address without keys: a token "
        "bucket, 429 with `X-RateLimit-*` and `Retry-After` beyond; 0 = off",
        json_schema_extra=_doc("access"))
    rate_limit_burst: int = Field(
        0, ge=0, le=1_000_000,
        description="bucket size, in requests; 0 = `CLEANCUT_RATE_LIMIT_PER_MINUTE`",
        json_schema_extra=_doc("access"))
    rate_limit_max_clients: int = Field(
        10_000, ge=1, le=10_000_000,
        description="buckets kept (the least recently used is dropped)",
        json_schema_extra=_doc("access"))
    trusted_proxies: CsvList = Field(
        [],
        description="IPs/CIDRs whose `X-Forwarded-For` is believed; none = `X-Forwarded-For` "
        "is ignored",
        json_schema_extra=_doc(
            "access", warning="a listed address can claim to forward any client address: rate "
            "limits per client and the access log then take its word. List only your own "
            "reverse proxies, never a network that clients share."))
    cors_origins: CsvList = Field(
        [],
        description="origins allowed by CORS (`scheme://host[:port]`, or `*`); none = CORS off",
        json_schema_extra=_doc(
            "access", warning="web pages of the listed origins may call the service from their "
            "visitors' browsers, and `*` lets any web page do so. List only your own front "
            "ends."))

    # --- Ray (--engine ray) ---------------------------------------------------------------
    # Only the Ray doors (cleancut.ray) read these; the rest of cleancut never imports Ray.
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join: `HOST:PORT` of a head started with `ray start --head`, "
        "or `ray://HOST:PORT`; `--address` takes precedence. None = `RAY_ADDRESS` if set, else "
        "a local Ray is started for the command and stopped after it",
        json_schema_extra=_doc("ray"))
    ray_dir: Path | None = Field(
        None,
        description="Ray's folder on this machine: the session files and logs of a local Ray, "
        "and its token (`auth_token`, mode 0600) unless `RAY_AUTH_TOKEN` or "
        "`RAY_AUTH_TOKEN_PATH` is set, so nothing of Ray's goes to `/tmp/ray` or `~/.ray`. Keep "
        "it short (at most 40 bytes): Ray's sockets live below it and a socket path has at most "
        "107. None = `cleancut-ray` in `CLEANCUT_TMP_DIR`, else in the system temp dir",
        json_schema_extra=_doc("ray"))
    ray_cpus: int = Field(
        0, ge=0, le=4096,
        description="CPUs of the local Ray started for a command; 0 = every core. Not used "
        "when joining a cluster (its nodes say how many CPUs they have)",
        json_schema_extra=_doc("ray"))
    ray_actors: int = Field(
        0, ge=0, le=4096,
        description="`p --engine ray`: actors in the pool, each holding one engine (the model "
        "is loaded once per actor); 0 = one per CPU of the cluster when the job starts",
        json_schema_extra=_doc("ray"))
    ray_actor_cpus: float = Field(
        0.5, gt=0, le=256,
        description="`p --engine ray`: CPUs each actor reserves. Below 1 on purpose: actors "
        "that reserve every CPU leave none to Ray Data's read tasks, and the job hangs",
        json_schema_extra=_doc("ray"))
    ray_actor_threads: int = Field(
        0, ge=0, le=256,
        description="`p --engine ray`: ONNX Runtime threads inside each actor "
        "(`CLEANCUT_INTRA_OP_THREADS` of its engine); 0 = the actor's CPUs, rounded up",
        json_schema_extra=_doc("ray"))
    ray_batch_size: int = Field(
        2, ge=1, le=1024,
        description="`p --engine ray`: photos an actor takes at a time; a batch lost with its "
        "node is done again elsewhere",
        json_schema_extra=_doc("ray"))
    ray_replica_cpus: float = Field(
        1.0, gt=0, le=256,
        description="`serve --engine ray`: CPUs each replica reserves; with "
        "`CLEANCUT_WORKERS` or `CLEANCUT_INTRA_OP_THREADS` at 0, also a replica's workers and "
        "ONNX Runtime threads (rounded up)",
        json_schema_extra=_doc("ray"))
    ray_serve_replicas: int = Field(
        1, ge=1, le=4096,
        description="`serve --engine ray`: replicas of the service, each with its own app, "
        "engine and worker pool, when autoscaling is off",
        json_schema_extra=_doc("ray"))
    ray_serve_min_replicas: int = Field(
        1, ge=0, le=4096,
        description="autoscaling: fewest replicas (0 lets the service scale to zero, and the "
        "first request then waits for a replica to load its models)",
        json_schema_extra=_doc("ray"))
    ray_serve_max_replicas: int = Field(
        0, ge=0, le=4096,
        description="autoscaling: most replicas; 0 = autoscaling off "
        "(`CLEANCUT_RAY_SERVE_REPLICAS` replicas)",
        json_schema_extra=_doc("ray"))
    ray_serve_target_ongoing_requests: float = Field(
        0.0, ge=0, le=100_000,
        description="autoscaling: requests in progress per replica that the autoscaler aims "
        "for; 0 = a replica's workers",
        json_schema_extra=_doc("ray"))
    ray_serve_max_ongoing_requests: int = Field(
        0, ge=0, le=100_000,
        description="requests Ray Serve sends one replica at once; 0 = the replica's workers + "
        "queue + 16, so that the replica's own queue is what fills first and overload is "
        "cleancut's 503 `overloaded` JSON with `Retry-After`",
        json_schema_extra=_doc("ray"))
    ray_serve_max_queued_requests: int = Field(
        -1, ge=-1, le=1_000_000,
        description="requests Ray Serve holds while every replica is at its "
        "`CLEANCUT_RAY_SERVE_MAX_ONGOING_REQUESTS`; beyond, Ray Serve answers 503 itself "
        "(plain text, `Retry-After: 1`); -1 = no bound (the replicas' queues bound the work)",
        json_schema_extra=_doc("ray"))
    ray_serve_proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode",
        description="nodes that run Ray Serve's HTTP proxy, each on `CLEANCUT_HOST:"
        "CLEANCUT_PORT`",
        json_schema_extra=_doc("ray"))

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

    @field_validator("ray_dir", mode="after")
    @classmethod
    def _short_dir(cls, value: Path | None) -> Path | None:
        if value is not None and len(os.fsencode(value)) > RAY_DIR_MAX_BYTES:
            raise ValueError(f"{str(value)[:60]!r} is longer than {RAY_DIR_MAX_BYTES} bytes: "
                             "Ray's socket paths below it would not fit")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def effective_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def effective_queue_size(self) -> int:
        return self.queue_size or 4 * self.effective_workers()


def env_var(name: str) -> str:
    """The environment variable of field ``name``: ``port`` -> ``CLEANCUT_PORT``."""
    return f"CLEANCUT_{name.upper()}"


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``environ`` (default: the process environment) plus explicit overrides.

    Raises :class:`~cleancut.errors.InvalidSetting` whose detail lists every malformed
    ``CLEANCUT_*`` variable at once (``.variable`` names the first) and points to the reference.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = env_var(name)
        if key in env:
            values[name] = env[key]
    if "model_dir" not in values:
        values["model_dir"] = default_model_dir(env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        first = problems[0][0] if problems else "CLEANCUT_*"
        listed = "; ".join(f"{var}: {msg}" if not msg.startswith(var) else msg
                           for var, msg in problems)
        count = f"{len(problems)} invalid settings" if len(problems) != 1 else "invalid setting"
        raise InvalidSetting(first, f"{count}: {listed} (see {DOCS})") from exc


def _problem(err: ErrorDetails) -> tuple[str, str]:
    """(variable, message) of one pydantic error. Pydantic's own messages never quote the
    input (``hide_input_in_errors``: it may be an API key); our validators quote only values
    that are not secrets."""
    loc = err.get("loc") or ()
    var = env_var(str(loc[0])) if loc else "CLEANCUT_*"
    if err.get("type") == "value_error" and "error" in err.get("ctx", {}):
        message = str(err["ctx"]["error"])  # our own validators' words, without "Value error, "
    else:
        message = str(err.get("msg", "invalid"))
    if len(loc) > 1 and isinstance(loc[1], int):
        message = f"item {loc[1] + 1}: {message}"
    return var, message


# --- the reference ----------------------------------------------------------------------------

def _extra(info: FieldInfo) -> JsonDict:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _type_text(info: FieldInfo) -> str:
    annotation: Any = info.annotation
    optional = False
    if get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation):
        optional = True
        (annotation,) = [a for a in get_args(annotation) if a is not NoneType]
    origin = get_origin(annotation)
    if origin is Literal:
        text = "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    elif origin in (list, tuple):
        text = "comma-separated list"
    else:
        names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}
        text = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = _bounds(info)
    if bounds:
        text += f", {bounds}"
    return text + (", optional" if optional else "")


def _bounds(info: FieldInfo) -> str:
    """``0 to 256``, ``≥ 1``, ``> 0 and ≤ 3600``: the range a number field accepts."""
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = {kind: getattr(item, kind) for item in info.metadata
             if isinstance(item, (Ge, Gt, Le, Lt)) for kind in signs if hasattr(item, kind)}
    if "ge" in found and "le" in found:
        return f"{found['ge']} to {found['le']}"
    return " and ".join(f"{signs[k]} {v}" for k, v in found.items())


def _default_text(name: str, info: FieldInfo) -> str:
    shown = _extra(info).get("default_doc")
    if isinstance(shown, str):
        return shown
    if info.default_factory is not None:  # it depends on the machine: say how, in the field
        raise ValueError(f"{name}: a default_factory needs _doc(default=...) for the reference")
    value = info.default
    if value is None or value == [] or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{int(value) if value.is_integer() else value}`"
    if isinstance(value, (list, tuple)):
        return "`" + ",".join(str(v) for v in value) + "`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """The settings reference (``docs/settings.md``) as Markdown, from the fields of
    :class:`Settings`: name, type, default and meaning, by section. Pure: reads no environment,
    prints nothing."""
    by_section: dict[str, list[tuple[str, FieldInfo]]] = {key: [] for key in _SECTIONS}
    for name, info in Settings.model_fields.items():
        section = _extra(info).get("section")
        if not isinstance(section, str) or section not in by_section:
            raise ValueError(f"{name}: json_schema_extra needs a section, one of {list(_SECTIONS)}")
        by_section[section].append((name, info))
    out = [
        "# Settings",
        "",
        "<!-- Generated from src/cleancut/config.py by scripts/gen-docs: edit the descriptions "
        "there and run scripts/gen-docs. tests/test_settings.py fails when this file is stale. "
        "-->",
        "",
        "Every setting is an environment variable `CLEANCUT_<NAME>`, read once at start-up by "
        "the CLI (`cleancut`, including `cleancut serve`), by `python -m cleancut.server` and by "
        "`cleancut.config.load()` in the library (which can also build `Settings(...)` "
        "directly). The flags of `cleancut serve` (`--host`, `--port`, `--workers`, `--models`, "
        "`--allow-anonymous`) take precedence over the variables.",
        "",
        "- Lists are comma-separated (`CLEANCUT_MODELS=u2net,u2netp`); spaces around items are "
        "ignored.",
        "- Booleans are `true`, `false`, `1` or `0`, in any case; anything else (`yes`, `on`, "
        "an empty value) is an error.",
        "- Units are in the names: `_S` seconds, `_BYTES` bytes, `_PX` pixels.",
        "- A malformed value stops start-up with one error (code `invalid_setting`) that lists "
        "every malformed variable.",
        "- ⚠️ marks a setting that weakens security when changed from its default: read the "
        "warning under its table, and the threat model in [SECURITY.md](../SECURITY.md).",
    ]
    for key, (title, lead) in _SECTIONS.items():
        out += ["", f"## {title}", ""]
        if lead:
            out += [lead, ""]
        out += ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
        warnings: list[str] = []
        for name, info in by_section[key]:
            var = env_var(name)
            warning = _extra(info).get("security_warning")
            mark = " ⚠️" if warning else ""
            if isinstance(warning, str):
                warnings += ["", "> [!WARNING]", f"> **`{var}`**: {warning}"]
            meaning = info.description or ""
            out.append(f"| `{var}`{mark} | {_cell(_type_text(info))} | "
                       f"{_cell(_default_text(name, info))} | {_cell(meaning)} |")
        out += warnings
    return "\n".join(out) + "\n"
