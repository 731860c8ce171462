"""SSRF-safe fetching of one image by URL (remove.bg's ``image_url``, ``GET /api/remove?url=``).

:func:`fetch_image` promises, for every hop of a redirect chain:

- only ``http`` and ``https`` URLs without credentials are fetched;
- the host is resolved once, *every* address it resolves to is checked, and the connection goes
  to the checked address (the ``Host`` header, TLS SNI and the certificate check use the name), so
  a second DNS answer cannot move the request elsewhere (DNS rebinding);
- loopback, private, link-local, shared (CGNAT), multicast, reserved, unspecified, broadcast and
  cloud-metadata addresses are refused, for IPv4 and IPv6, and IPv6 forms that carry an IPv4
  address (mapped, 6to4, NAT64, Teredo) are judged by that address too; anything else must be
  ``is_global``. With an allow-list, only listed hosts are fetched, and those may be private
  (never metadata, link-local, multicast, unspecified or reserved);
- at most ``max_redirects`` redirects, each re-checked as above;
- a connect timeout per attempt and one total deadline over resolving, connecting, TLS, headers
  and body, enforced by a watchdog that shuts the socket down, so a trickling server is cut off;
- a ``Content-Length`` over the limit is refused before reading; the limit holds while streaming;
- the body must start like an image (JPEG, PNG, GIF, WebP, BMP, TIFF, HEIF/AVIF); decoding and
  the real format allowlist are the caller's job.

Blocking: call it off the event loop (a worker thread). Failures raise :mod:`cleancut.errors`
types: ``InvalidParameter("url")`` for a refused URL, :class:`FileTooLarge`,
:class:`InvalidFileType`, and :class:`UrlFetchFailed` when the upstream fails.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..errors import FileTooLarge, InvalidFileType, InvalidParameter, UrlFetchFailed

__all__ = [
    "FetchPolicy",
    "Resolver",
    "UrlFetchFailed",
    "fetch_image",
    "refusal_reason",
    "system_resolver",
]

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``resolver(host, port)`` → the addresses of ``host`` as strings; raises ``OSError`` if none."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What one fetch may do. Build it from settings; every field has a safe default."""

    max_bytes: int = 10_000_000  # largest body accepted, in bytes (CLEANCUT_MAX_UPLOAD_BYTES)
    connect_timeout_s: float = 5.0  # TCP connect + TLS handshake, per hop
    total_timeout_s: float = 15.0  # whole fetch: DNS, every hop, headers and body
    max_redirects: int = 3  # redirects followed; one more is an error
    allow_hosts: tuple[str, ...] = ()  # empty: any public host; else only these (may be private)
    user_agent: str = "cleancut-fetch/0.1"  # User-Agent header sent upstream
    ca_certs: str | None = None  # PEM bundle trusted for https; None: the system store

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if not (0 < self.connect_timeout_s <= self.total_timeout_s):
            raise ValueError("need 0 < connect_timeout_s <= total_timeout_s")
        if not (0 <= self.max_redirects <= 20):
            raise ValueError("max_redirects must be within 0..20")
        hosts = tuple(_normalize_host(h) for h in self.allow_hosts if h.strip())
        object.__setattr__(self, "allow_hosts", hosts)


def system_resolver(host: str, port: int) -> list[str]:
    """The system resolver (``socket.getaddrinfo``), addresses in its order, duplicates dropped."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- addresses --------------------------------------------------------------------------------
# Python's is_global misses some special-purpose ranges (3.11: 192.0.0.0/24, fec0::/10,
# 64:ff9b:1::/48 and IPv4-compatible ::a.b.c.d all count as global), hence the explicit lists.
_METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ... instance metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure WireServer (a public-looking address)
    )
)
_NEVER_V4 = tuple(ip_network(n) for n in ("0.0.0.0/8", "240.0.0.0/4"))  # this-net, reserved
_NEVER_V6 = tuple(ip_network(n) for n in ("::/96", "64:ff9b:1::/48", "fec0::/10"))
_CGNAT = ip_network("100.64.0.0/10")
_NON_PUBLIC = tuple(ip_network(n) for n in ("192.0.0.0/24", "198.18.0.0/15", "2001::/23"))
_NAT64 = ip_network("64:ff9b::/96")
_BROADCAST = IPv4Address("255.255.255.255")


def _in_any(ip: IPAddress, nets: Sequence[IPv4Network | IPv6Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address that packets to ``ip`` really reach: mapped, NAT64 or 6to4 forms."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def refusal_reason(ip: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why fetching from ``ip`` is refused, as a phrase ("a loopback address"); None if allowed.

    ``allow_private`` (for allow-listed hosts) admits loopback, private and CGNAT addresses, never
    metadata, link-local, multicast, unspecified, broadcast or reserved ones.
    """
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            ip = IPv6Address(ip.compressed.split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return refusal_reason(inner, allow_private=allow_private)
        for part in ip.teredo or ():
            reason = refusal_reason(part, allow_private=allow_private)
            if reason is not None:
                return reason
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if ip == _BROADCAST:
        return "a broadcast address"
    if (_in_any(ip, _NEVER_V4 + _NEVER_V6) or ip.is_reserved) and not ip.is_loopback:
        return "a reserved address"
    if allow_private:
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or _in_any(ip, _NON_PUBLIC):
        return "a non-public address"
    return None


# --- URLs -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    https: bool
    host: str  # lower-case, IDNA-encoded, no brackets, no trailing dot
    port: int
    request_path: str  # path?query, percent-encoded ASCII
    host_header: str
    literal: IPAddress | None  # the host when the URL names an address


_MAX_URL_CHARS = 8192
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"


def _bad_url(detail: str) -> InvalidParameter:
    return InvalidParameter("url", detail)


def _normalize_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _bad_url(f"refused: {host!r} is not a valid host name") from None
    return host


def _parse(url: str) -> _Target:
    if len(url) > _MAX_URL_CHARS:
        raise _bad_url(f"refused: the URL is longer than {_MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _bad_url("refused: the URL contains whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme!r}" if scheme else "none"
        raise _bad_url(f"refused: URL scheme {shown}; only http and https URLs are fetched")
    if "@" in parts.netloc:
        raise _bad_url("refused: credentials (user@) in URLs are not accepted")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise _bad_url("refused: the URL's port is not a number within 1-65535") from None
    host = _normalize_host(parts.hostname or "")
    if not host:
        raise _bad_url("refused: the URL has no host")
    try:
        literal: IPAddress | None = ip_address(host)
    except ValueError:
        literal = None
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_PATH_SAFE)
    shown_host = f"[{host}]" if isinstance(literal, IPv6Address) else host
    default_port = 443 if scheme == "https" else 80
    host_header = shown_host if port == default_port else f"{shown_host}:{port}"
    return _Target(url, scheme == "https", host, port, path, host_header, literal)


# --- deadline ---------------------------------------------------------------------------------
class _Watchdog:
    """Shuts down the watched socket when the deadline passes, waking any blocked read."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._fd = -1
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._fd = sock.fileno()
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._fd < 0:
            return
        try:  # a dup of the fd: shutdown() acts on the connection, whatever wraps it (TLS)
            with socket.socket(fileno=socket.dup(self._fd)) as dup:
                dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        """Disarm; call before closing the socket, whose fd number may then be reused."""
        with self._lock:
            self._timer.cancel()
            self._fd = -1


if TYPE_CHECKING:  # the mixin below always comes before an HTTPConnection in the MRO
    _ConnectionBase = HTTPConnection
else:
    _ConnectionBase = object


class _Watched(_ConnectionBase):
    _watchdog: _Watchdog

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self._watchdog.watch(sock)
        return sock


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


def _remaining(deadline: float, policy: FetchPolicy) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(policy)
    return left


def _timed_out(policy: FetchPolicy) -> UrlFetchFailed:
    return UrlFetchFailed(
        f"fetching the image URL took longer than {policy.total_timeout_s:g} s "
        "(CLEANCUT_URL_TIMEOUT_S); try a faster host or upload the file"
    )


# --- resolving --------------------------------------------------------------------------------
def _resolve(target: _Target, policy: FetchPolicy, resolver: Resolver, deadline: float) -> str:
    """The one address to connect to, after checking every address the host resolves to."""
    allowed = not policy.allow_hosts or target.host in policy.allow_hosts
    if not allowed:
        raise _bad_url(f"refused: {target.host} is not an allowed host (CLEANCUT_URL_ALLOW_HOSTS)")
    if target.literal is not None:
        addresses: list[IPAddress] = [target.literal]
    else:
        addresses = _lookup(target, policy, resolver, deadline)
    for ip in addresses:
        reason = refusal_reason(ip, allow_private=bool(policy.allow_hosts))
        if reason is not None:
            verb = "is" if target.literal is not None else "resolves to"
            raise _bad_url(
                f"refused: {target.host} {verb} {reason}; only public addresses are fetched "
                "(CLEANCUT_URL_ALLOW_HOSTS lists exceptions)"
            )
    first = addresses[0]
    return first.compressed


def _lookup(
    target: _Target, policy: FetchPolicy, resolver: Resolver, deadline: float
) -> list[IPAddress]:
    """Run the resolver in a thread so the deadline bounds it (getaddrinfo has no timeout)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["answer"] = list(resolver(target.host, target.port))
        except Exception as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="cleancut-resolve", daemon=True)
    worker.start()
    worker.join(_remaining(deadline, policy))
    if worker.is_alive():
        raise _timed_out(policy)
    if "error" in box:
        if isinstance(box["error"], OSError):
            raise UrlFetchFailed(f"could not resolve {target.host}") from box["error"]
        raise box["error"]
    try:
        addresses = [ip_address(a) for a in box["answer"]]
    except ValueError as exc:
        raise UrlFetchFailed(f"could not resolve {target.host}") from exc
    if not addresses:
        raise UrlFetchFailed(f"could not resolve {target.host}")
    return addresses


# --- one request ------------------------------------------------------------------------------
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_UPSTREAM_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


def _connection(
    target: _Target, ip: str, policy: FetchPolicy, watchdog: _Watchdog, timeout: float
) -> HTTPConnection:
    conn: _WatchedHTTP | _WatchedHTTPS
    if target.https:
        conn = _WatchedHTTPS(
            ip,
            target.port,
            timeout=timeout,
            server_hostname=target.host,  # SNI, and ssl's own hostname check against it
            cert_reqs="CERT_REQUIRED",
            ca_certs=policy.ca_certs,
        )
    else:
        conn = _WatchedHTTP(ip, target.port, timeout=timeout)
    conn._watchdog = watchdog
    return conn


def _describe(exc: BaseException) -> str:
    """A short, safe phrase for an upstream failure (no addresses, no library text)."""
    chain = [c for c in (exc, exc.__cause__, exc.__context__) if c is not None]

    def seen(*types: type[BaseException]) -> bool:
        return any(isinstance(c, types) for c in chain)

    if seen(ssl.SSLCertVerificationError):
        return "its TLS certificate did not verify for that host"
    if seen(ConnectionRefusedError):
        return "the connection was refused"
    if seen(urllib3.exceptions.NewConnectionError):
        return "the connection failed"
    if seen(TimeoutError, urllib3.exceptions.TimeoutError):
        return "it timed out"
    if seen(ssl.SSLError, urllib3.exceptions.SSLError):
        return "the TLS handshake failed"
    if seen(urllib3.exceptions.ProtocolError, http.client.HTTPException):
        return "the response was malformed or cut short"
    return "the connection failed"


def _get(
    target: _Target, ip: str, policy: FetchPolicy, deadline: float
) -> tuple[str | None, bytes]:
    """GET one hop: (redirect Location, b"") or (None, body)."""
    remaining = _remaining(deadline, policy)
    watchdog = _Watchdog(remaining)
    conn = _connection(target, ip, policy, watchdog, min(policy.connect_timeout_s, remaining))
    watchdog.start()
    try:
        conn.connect()
        conn.timeout = _remaining(deadline, policy)
        headers = {
            "Host": target.host_header,
            "User-Agent": policy.user_agent,
            "Accept": "image/*",
            "Accept-Encoding": "identity",
            "Connection": "close",
        }
        conn.request(
            "GET",
            target.request_path,
            headers=headers,
            preload_content=False,
            decode_content=False,
        )
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise UrlFetchFailed(
                    f"{target.host} answered HTTP {response.status} without a Location"
                )
            return location, b""
        if not 200 <= response.status < 300:
            raise UrlFetchFailed(f"{target.host} answered HTTP {response.status}")
        body = _read_body(response, policy, deadline, watchdog)
    except _UPSTREAM_ERRORS as exc:
        if watchdog.fired or time.monotonic() >= deadline:
            raise _timed_out(policy) from exc
        raise UrlFetchFailed(
            f"could not fetch the image from {target.host}: {_describe(exc)}"
        ) from exc
    finally:
        watchdog.stop()  # first: once closed, the socket's fd number may belong to another
        conn.close()
    return None, body


def _too_large(policy: FetchPolicy, size: str) -> FileTooLarge:
    return FileTooLarge(
        f"the image at the URL is {size}; the limit is {policy.max_bytes} bytes "
        "(CLEANCUT_MAX_UPLOAD_BYTES)"
    )


def _read_body(response: Any, policy: FetchPolicy, deadline: float, watchdog: _Watchdog) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy, f"{int(declared)} bytes (Content-Length)")
    body = bytearray()
    sniffed = False
    # Each pass adds at least one byte to a body capped at max_bytes, or ends: bounded.
    for _ in range(policy.max_bytes + 2):
        _remaining(deadline, policy)
        chunk = response.read1(min(_CHUNK, policy.max_bytes + 1 - len(body)), decode_content=False)
        if not chunk:
            break
        body += chunk
        if len(body) > policy.max_bytes:
            raise _too_large(policy, "larger than that")
        if not sniffed and len(body) >= _SNIFF_BYTES:
            _sniff(body)
            sniffed = True
    if watchdog.fired or time.monotonic() >= deadline:  # EOF caused by the watchdog: not a body
        raise _timed_out(policy)
    _sniff(body)
    return bytes(body)


# --- content ----------------------------------------------------------------------------------
_SNIFF_BYTES = 16
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def _looks_like_image(head: bytes | bytearray) -> bool:
    if any(head.startswith(sig) for sig in _SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _sniff(head: bytes | bytearray) -> None:
    if not _looks_like_image(head[:_SNIFF_BYTES]):
        raise InvalidFileType(
            "the URL did not return an image (expected JPEG, PNG, WebP, GIF, BMP or TIFF data)"
        )


# --- the API ----------------------------------------------------------------------------------
def fetch_image(url: str, policy: FetchPolicy, *, resolver: Resolver | None = None) -> bytes:
    """Fetch the image at ``url`` under ``policy``: its bytes, still encoded.

    ``resolver`` defaults to :func:`system_resolver`; tests pass a fake one. Raises
    ``InvalidParameter("url")`` (code ``invalid_url``) for a refused URL or address,
    :class:`FileTooLarge`, :class:`InvalidFileType`, or :class:`UrlFetchFailed`.
    """
    resolve = resolver or system_resolver
    deadline = time.monotonic() + policy.total_timeout_s
    current = url
    for _hop in range(policy.max_redirects + 1):
        target = _parse(current)
        ip = _resolve(target, policy, resolve, deadline)
        location, body = _get(target, ip, policy, deadline)
        if location is None:
            return body
        current = urljoin(current, location)
    raise UrlFetchFailed(
        f"the image URL redirected more than {policy.max_redirects} times "
        "(CLEANCUT_URL_MAX_REDIRECTS)"
    )
