"""SSRF-safe URL fetching (issue 4 §4), against real HTTP(S) servers on 127.0.0.1.

Every server here is started by the tests on a free loopback port; a guard fails any test whose
code tries to connect anywhere else, so "refused" always means "refused before connecting".
Loopback itself is refused unless a test allow-lists it, as the product does.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path

import pytest

from cleancut.errors import FileTooLarge, InvalidFileType, InvalidParameter
from cleancut.server.fetch import FetchPolicy, UrlFetchFailed, fetch_image, refusal_reason
from tests.conftest import GOLDEN

IMAGE = (GOLDEN / "inputs" / "coffee.jpg").read_bytes()
HOST = "img.test"  # a name only the tests' resolvers know


# --- guard: loopback traffic only ---------------------------------------------------------------
@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fail at once if anything connects to an address outside 127.0.0.0/8 and ::1."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        attempts.append(host)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ip_address(host).is_loopback:
            raise AssertionError(f"test tried to connect to {host}")
        real_connect(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


# --- the upstream server ------------------------------------------------------------------------
@dataclass
class Upstream:
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sni: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


TRICKLE_STEPS = 40  # a trickling response lasts TRICKLE_STEPS × TRICKLE_PAUSE_S = 8 s at most
TRICKLE_PAUSE_S = 0.2


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302) -> None:
        self._send(status, b"", [("Location", location)])

    def do_GET(self) -> None:
        self.upstream.seen.append((self.path, self.headers.get("Host", "")))
        path = self.path
        try:
            if path == "/coffee.jpg":
                self._send(200, IMAGE, [("Content-Type", "image/jpeg")])
            elif path.startswith("/chain/"):  # /chain/N redirects N times, then the image
                n = int(path.rsplit("/", 1)[1])
                self._redirect(f"/chain/{n - 1}" if n > 1 else "/coffee.jpg")
            elif path == "/relative":
                self._redirect("coffee.jpg", 301)
            elif path == "/absolute":
                self._redirect(self.upstream.url("/coffee.jpg", host=HOST), 307)
            elif path == "/loop":
                self._redirect("/loop")
            elif path.startswith("/to?"):
                self._redirect(path.split("?", 1)[1])
            elif path == "/no-location":
                self._send(302, b"")
            elif path == "/missing":
                self._send(404, b"not here")
            elif path == "/text":
                self._send(200, b"<html>not an image</html>", [("Content-Type", "image/jpeg")])
            elif path == "/svg":
                svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
                self._send(200, svg, [("Content-Type", "image/svg+xml")])
            elif path == "/big-declared":  # Content-Length over the limit: never read
                self._send(200, IMAGE, [("Content-Length", "999999999")])
            elif path == "/big-streamed":  # no Content-Length: the limit holds while reading
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for _ in range(4):  # 4 × the image, sent until the client hangs up
                    self.wfile.write(IMAGE)
            elif path == "/understated":  # says 1000 bytes, sends the whole image
                self._send(200, IMAGE, [("Content-Length", "1000")])
            elif path == "/overstated":  # says 5000 bytes, sends 100 and hangs up
                self._send(200, IMAGE[:100], [("Content-Length", "5000")])
                self.close_connection = True
            elif path == "/slow-body":
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                self.wfile.write(IMAGE[:16])
                for i in range(TRICKLE_STEPS):
                    time.sleep(TRICKLE_PAUSE_S)
                    self.wfile.write(IMAGE[16 + i : 17 + i])
                    self.wfile.flush()
            elif path == "/slow-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(TRICKLE_STEPS):
                    time.sleep(TRICKLE_PAUSE_S)
                    self.wfile.write(b"a")
                    self.wfile.flush()
            else:
                self._send(404, b"no route")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should when a limit trips


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Upstream]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    upstream = Upstream(port=server.server_address[1])
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: upstream.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    handler = type("BoundHandler", (Handler,), {"upstream": upstream})
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    yield from _serve()


@pytest.fixture(autouse=True)
def _clear(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").seen.clear()


def resolver_for(answers: dict[str, Sequence[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown test host")
        return list(answers[host])

    return resolve


LOCAL = resolver_for({HOST: ["127.0.0.1"]})
POLICY = FetchPolicy(
    max_bytes=1_000_000, connect_timeout_s=2.0, total_timeout_s=10.0, allow_hosts=(HOST,)
)


def fetch(upstream: Upstream, path: str, policy: FetchPolicy = POLICY) -> bytes:
    return fetch_image(upstream.url(path, host=HOST), policy, resolver=LOCAL)


# --- the happy path -----------------------------------------------------------------------------
def test_fetches_an_image_from_an_allow_listed_host(upstream: Upstream) -> None:
    assert fetch(upstream, "/coffee.jpg") == IMAGE
    # connected to the checked address, named the host in the Host header
    assert upstream.seen == [("/coffee.jpg", f"{HOST}:{upstream.port}")]


def test_follows_a_redirect_chain_up_to_the_limit(upstream: Upstream) -> None:
    assert fetch(upstream, "/chain/3") == IMAGE
    assert [p for p, _ in upstream.seen] == ["/chain/3", "/chain/2", "/chain/1", "/coffee.jpg"]


def test_one_redirect_more_than_the_limit_is_refused(upstream: Upstream) -> None:
    with pytest.raises(UrlFetchFailed, match="redirected more than 3 times") as info:
        fetch(upstream, "/chain/4")
    assert (info.value.code, info.value.status) == ("url_fetch_failed", 400)
    assert len(upstream.seen) == 4  # the fourth redirect is never followed


def test_redirect_loop_stops(upstream: Upstream) -> None:
    with pytest.raises(UrlFetchFailed, match="redirected more than 1 times"):
        fetch(upstream, "/loop", replace(POLICY, max_redirects=1))
    assert len(upstream.seen) == 2


@pytest.mark.parametrize("path", ["/relative", "/absolute"])
def test_relative_and_absolute_locations(upstream: Upstream, path: str) -> None:
    assert fetch(upstream, path) == IMAGE
    assert upstream.seen[-1][0] == "/coffee.jpg"


# --- refused addresses, before any connection ---------------------------------------------------
def test_loopback_is_refused_unless_allow_listed(
    upstream: Upstream, loopback_only: list[str]
) -> None:
    open_policy = replace(POLICY, allow_hosts=())
    for url in (upstream.url("/coffee.jpg"), upstream.url("/coffee.jpg", host="localhost")):
        with pytest.raises(InvalidParameter, match="loopback address") as info:
            fetch_image(url, open_policy)
        assert (info.value.code, info.value.status) == ("invalid_url", 400)
    with pytest.raises(InvalidParameter, match="loopback address"):
        fetch_image(upstream.url("/coffee.jpg", host=HOST), open_policy, resolver=LOCAL)
    assert upstream.seen == [] and loopback_only == []


def test_a_host_outside_the_allow_list_is_refused(upstream: Upstream) -> None:
    with pytest.raises(InvalidParameter, match="not an allowed host") as info:
        fetch_image(upstream.url("/coffee.jpg"), POLICY, resolver=LOCAL)  # 127.0.0.1 ≠ img.test
    assert info.value.code == "invalid_url"
    assert upstream.seen == []


REFUSED = {
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "127.0.0.53": "loopback",
    "100.64.0.1": "shared (CGNAT)",
    "169.254.169.254": "cloud metadata",
    "100.100.100.200": "cloud metadata",
    "168.63.129.16": "cloud metadata",
    "169.254.10.10": "link-local",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "reserved",
    "224.0.0.1": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "reserved",
    "192.0.0.192": "non-public",
    "198.18.0.1": "private",
    "192.0.2.10": "private",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "fd00:ec2::254": "cloud metadata",
    "ff02::1": "multicast",
    "fec0::1": "reserved",
    "2001:db8::1": "private",
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:169.254.169.254": "cloud metadata",
    "::ffff:10.1.2.3": "private",
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1": "cloud metadata",  # 6to4 of 169.254.169.254
    "2002:c0a8:101::": "private",  # 6to4 of 192.168.1.1
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "64:ff9b::a9fe:a9fe": "cloud metadata",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1": "loopback",
    "64:ff9b:1::a00:1": "reserved",  # local-use NAT64
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "private",  # Teredo (client 192.0.2.45)
    "2001:0:a9fe:a9fe::1": "cloud metadata",  # Teredo, server 169.254.169.254
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_a_name_resolving_to_a_non_public_address_is_refused(
    address: str, loopback_only: list[str]
) -> None:
    resolver = resolver_for({"images.example.com": [address]})
    with pytest.raises(InvalidParameter) as info:
        fetch_image("https://images.example.com/a.jpg", FetchPolicy(), resolver=resolver)
    assert info.value.code == "invalid_url"
    assert info.value.detail.startswith(
        f"refused: images.example.com resolves to {'an' if REFUSED[address][0] in 'aeiou' else 'a'}"
        f" {REFUSED[address]} address"
    )
    assert address not in info.value.detail  # the message names the host, not the address
    assert loopback_only == []  # no connection was attempted


def test_one_non_public_answer_among_public_ones_is_enough_to_refuse(
    loopback_only: list[str],
) -> None:
    resolver = resolver_for({"images.example.com": ["93.184.215.14", "2606:4700::1", "10.0.0.7"]})
    with pytest.raises(InvalidParameter, match="private address"):
        fetch_image("http://images.example.com/a.jpg", FetchPolicy(), resolver=resolver)
    assert loopback_only == []


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "2606:4700::1", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"],
)
def test_public_addresses_and_their_ipv6_forms_are_allowed(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "0.0.0.0",
        "ff02::1",
        "fe80::1",
        "::ffff:169.254.169.254",
        "64:ff9b:1::1",
    ],
)
def test_an_allow_list_never_admits_metadata_link_local_or_unspecified(address: str) -> None:
    assert refusal_reason(ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://[fd00:ec2::254]/",
        "http://0x7f000001/a.jpg",  # the system resolver reads these odd IPv4 forms as 127.0.0.1
        "http://2130706433/a.jpg",
        "http://127.1/a.jpg",
        "http://localhost./a.jpg",
    ],
)
def test_addresses_written_in_the_url_are_checked_too(url: str, loopback_only: list[str]) -> None:
    with pytest.raises(InvalidParameter, match="^refused: ") as info:
        fetch_image(url, FetchPolicy())
    assert info.value.code == "invalid_url"
    assert loopback_only == []


def test_a_redirect_to_a_host_outside_the_allow_list_is_refused(upstream: Upstream) -> None:
    with pytest.raises(InvalidParameter, match="10.0.0.1 is not an allowed host"):
        fetch(upstream, "/to?http://10.0.0.1/a.jpg")
    assert [p for p, _ in upstream.seen] == ["/to?http://10.0.0.1/a.jpg"]


def test_each_redirect_hop_is_resolved_and_checked_again(
    upstream: Upstream, loopback_only: list[str]
) -> None:
    """DNS rebinding across a redirect: the second answer for the same name is metadata."""
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    url = upstream.url(f"/to?{upstream.url('/coffee.jpg', host=HOST)}", host=HOST)
    with pytest.raises(InvalidParameter, match="cloud metadata address"):
        fetch_image(url, POLICY, resolver=rebinding)
    assert calls == [HOST, HOST]
    assert loopback_only == ["127.0.0.1"]  # only the first hop connected


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://127.0.0.1:70/_x", "scheme 'gopher'"),
        ("ftp://img.test/a.jpg", "scheme 'ftp'"),
    ],
)
def test_a_redirect_to_another_scheme_is_refused(
    upstream: Upstream, target: str, message: str
) -> None:
    with pytest.raises(InvalidParameter, match=message):
        fetch(upstream, f"/to?{target}")


# --- refused URLs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://img.test/_GET", "scheme 'gopher'"),
        ("ftp://img.test/a.jpg", "scheme 'ftp'"),
        ("dict://img.test:11211/stats", "scheme 'dict'"),
        ("data:image/png;base64,AAAA", "scheme 'data'"),
        ("//img.test/a.jpg", "scheme none"),
        ("img.test/a.jpg", "scheme none"),
        ("http://user:secret@img.test/a.jpg", "credentials"),
        ("http://user@img.test/a.jpg", "credentials"),
        ("http://img.test@127.0.0.1/a.jpg", "credentials"),
        ("http:///a.jpg", "no host"),
        ("http://img.test:99999/a.jpg", "port"),
        ("http://img.test/a b.jpg", "whitespace or control"),
        ("http://img.test/a\r\nX-Injected: 1", "whitespace or control"),
        ("http://img.test/" + "a" * 9000, "longer than 8192"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str, loopback_only: list[str]) -> None:
    with pytest.raises(InvalidParameter, match=message) as info:
        fetch_image(url, POLICY, resolver=LOCAL)
    assert (info.value.code, info.value.status) == ("invalid_url", 400)
    assert "secret" not in info.value.detail
    assert loopback_only == []


# --- size limits ---------------------------------------------------------------------------------
def test_a_body_one_byte_over_the_limit_is_refused(upstream: Upstream) -> None:
    with pytest.raises(FileTooLarge, match=rf"limit is {len(IMAGE) - 1} bytes") as info:
        fetch(upstream, "/coffee.jpg", replace(POLICY, max_bytes=len(IMAGE) - 1))
    assert (info.value.code, info.value.status) == ("file_too_large", 413)
    assert "CLEANCUT_MAX_UPLOAD_BYTES" in info.value.detail
    assert fetch(upstream, "/coffee.jpg", replace(POLICY, max_bytes=len(IMAGE))) == IMAGE


def test_a_declared_length_over_the_limit_is_refused_before_reading(upstream: Upstream) -> None:
    with pytest.raises(FileTooLarge, match="999999999 bytes \\(Content-Length\\)"):
        fetch(upstream, "/big-declared")


def test_the_limit_holds_while_streaming_without_a_length(upstream: Upstream) -> None:
    with pytest.raises(FileTooLarge, match="larger than that"):
        fetch(upstream, "/big-streamed", replace(POLICY, max_bytes=2 * len(IMAGE)))


def test_an_understated_length_never_yields_more_than_it_says(upstream: Upstream) -> None:
    assert fetch(upstream, "/understated") == IMAGE[:1000]


def test_an_overstated_length_is_a_cut_short_response(upstream: Upstream) -> None:
    with pytest.raises(UrlFetchFailed, match="malformed or cut short"):
        fetch(upstream, "/overstated")


# --- deadlines -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_a_trickling_server_is_cut_off_at_the_total_deadline(upstream: Upstream, path: str) -> None:
    policy = replace(POLICY, connect_timeout_s=0.5, total_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="longer than 1 s \\(CLEANCUT_URL_TIMEOUT_S\\)"):
        fetch(upstream, path, policy)
    # Each byte arrives well within any per-read timeout; only the total deadline stops it, long
    # before the server's 8 s of trickling would end.
    assert time.monotonic() - started < TRICKLE_STEPS * TRICKLE_PAUSE_S / 2


def test_a_resolver_that_hangs_is_bounded_by_the_deadline() -> None:
    release = threading.Event()

    def hanging(host: str, port: int) -> list[str]:
        release.wait(timeout=30)
        return ["127.0.0.1"]

    policy = replace(POLICY, connect_timeout_s=0.2, total_timeout_s=0.3)
    try:
        with pytest.raises(UrlFetchFailed, match="longer than 0.3 s"):
            fetch_image(f"http://{HOST}/a.jpg", policy, resolver=hanging)
    finally:
        release.set()


# --- upstream failures ---------------------------------------------------------------------------
def test_an_unknown_host_is_a_fetch_failure() -> None:
    with pytest.raises(UrlFetchFailed, match="could not resolve nowhere.test") as info:
        fetch_image("http://nowhere.test/a.jpg", FetchPolicy(), resolver=LOCAL)
    assert (info.value.code, info.value.status) == ("url_fetch_failed", 400)


def test_a_refused_connection_is_a_fetch_failure() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UrlFetchFailed, match="connection was refused"):
        fetch_image(f"http://{HOST}:{port}/a.jpg", POLICY, resolver=LOCAL)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", f"{HOST} answered HTTP 404"),
        ("/no-location", "HTTP 302 without a Location"),
    ],
)
def test_a_non_success_answer_is_a_fetch_failure(
    upstream: Upstream, path: str, message: str
) -> None:
    with pytest.raises(UrlFetchFailed, match=message):
        fetch(upstream, path)


@pytest.mark.parametrize("path", ["/text", "/svg"])
def test_content_that_is_not_an_image_is_refused(upstream: Upstream, path: str) -> None:
    with pytest.raises(InvalidFileType, match="did not return an image") as info:
        fetch(upstream, path)
    assert (info.value.code, info.value.status) == ("invalid_file_type", 415)


# --- https: pinned address, name checked ---------------------------------------------------------
@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    for upstream in _serve(context):
        yield upstream, cert


def test_https_connects_to_the_checked_address_with_the_name_for_sni_and_certificate(
    tls_upstream: tuple[Upstream, Path], loopback_only: list[str]
) -> None:
    upstream, cert = tls_upstream
    policy = replace(POLICY, ca_certs=str(cert))
    url = upstream.url("/coffee.jpg", host=HOST, scheme="https")
    assert fetch_image(url, policy, resolver=LOCAL) == IMAGE
    assert upstream.sni[-1] == HOST
    assert upstream.seen[-1] == ("/coffee.jpg", f"{HOST}:{upstream.port}")
    assert loopback_only[-1] == "127.0.0.1"


def test_https_refuses_a_certificate_for_another_name(tls_upstream: tuple[Upstream, Path]) -> None:
    upstream, cert = tls_upstream
    other = "other.test"
    policy = replace(POLICY, ca_certs=str(cert), allow_hosts=(other,))
    with pytest.raises(UrlFetchFailed, match="certificate did not verify"):
        fetch_image(
            upstream.url("/coffee.jpg", host=other, scheme="https"),
            policy,
            resolver=resolver_for({other: ["127.0.0.1"]}),
        )


def test_https_refuses_an_untrusted_certificate(tls_upstream: tuple[Upstream, Path]) -> None:
    upstream, _ = tls_upstream
    with pytest.raises(UrlFetchFailed, match="certificate did not verify"):
        fetch_image(upstream.url("/coffee.jpg", host=HOST, scheme="https"), POLICY, resolver=LOCAL)


# --- the policy -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"max_bytes": 0},
        {"connect_timeout_s": 0},
        {"connect_timeout_s": 20.0, "total_timeout_s": 10.0},
        {"max_redirects": -1},
    ],
)
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FetchPolicy(**bad)  # type: ignore[arg-type]


def test_policy_normalizes_allowed_hosts() -> None:
    assert FetchPolicy(allow_hosts=("IMG.Test.", " ", "[::1]")).allow_hosts == ("img.test", "::1")
