"""Access control against real service processes: API keys, the refusal to serve a public address
without them, rate limits, X-Forwarded-For from trusted proxies only, CORS, security headers, and
the WebUI asking for a key in a real browser with no Content-Security-Policy violations.

Three processes, all with u2netp only: ``keyed`` (keys, a CORS allow-list, a small per-key rate
limit; each test uses its own key so the buckets do not meet), ``anonymous`` (started with
``cleancut serve --host 0.0.0.0 --allow-anonymous``, trusting 127.0.0.2 as a proxy; requests only
ever go to 127.0.0.1) and the short-lived ones that must refuse to start.
"""

from __future__ import annotations

import hashlib
import http.client
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import Server, free_port, server_env, start_server, stop_server, wait_ready

KEYS = {name: f"{name}-0123456789abcdefghij" for name in (
    "envkey", "filekey", "hashkey", "bearer", "compat", "rl_a", "rl_b", "headers", "cors",
    "metrics", "webui", "webui_later")}
BURST = 3  # per key on the keyed server; refills at one a minute, so a test never sees it refill
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
ORIGIN = "https://app.example.com"


def key_header(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name]}


@pytest.fixture(scope="module")
def keyed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("keyed")
    hashed = hashlib.sha256(KEYS["hashkey"].encode()).hexdigest()
    file_keys = [f"{name}:{key}" for name, key in KEYS.items() if name not in ("envkey",
                                                                            "hashkey")]
    (root / "keys").write_text("# cleancut API keys\n\n" + "\n".join(file_keys)
                               + f"\nhashkey:sha256:{hashed}\n")
    srv = start_server(model_dir, root / "server.log", models="u2netp", default_model="u2netp",
                       workers="1", api_keys=f"envkey:{KEYS['envkey']}",
                       api_keys_file=str(root / "keys"), rate_limit_per_minute="1",
                       rate_limit_burst=str(BURST), cors_origins=ORIGIN)
    yield srv
    stop_server(srv)
    log = (root / "server.log").read_text()
    for key in KEYS.values():
        assert key not in log, "a key reached the log"


def _start_cli(args: list[str], env: dict[str, str], log: Path, url: str) -> Server:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from cleancut.cli import main; "
             "sys.exit(main(sys.argv[1:]))", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    return wait_ready(Server(url, process, log))


@pytest.fixture(scope="module")
def anonymous(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No keys, bound to every interface by --allow-anonymous; 127.0.0.2 is a trusted proxy."""
    log = tmp_path_factory.mktemp("anonymous") / "server.log"
    port = free_port()
    env = server_env(model_dir, models="u2netp", default_model="u2netp", workers="1",
                     rate_limit_per_minute="1", rate_limit_burst="2",
                     trusted_proxies="127.0.0.2")
    srv = _start_cli(["serve", "--host", "0.0.0.0", "--port", str(port), "--allow-anonymous"],
                     env, log, f"http://127.0.0.1:{port}")
    yield srv
    stop_server(srv)


def assert_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["code"] == code, body
    assert body["errors"][0]["title"] and body["errors"][0]["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body  # type: ignore[no-any-return]


def assert_security_headers(response: requests.Response, api: bool = True) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    csp = response.headers["Content-Security-Policy"]
    for part in ("default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                 "form-action 'self'"):
        assert part in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    if api:
        assert response.headers.get("Cache-Control") == "no-store"


# --- API keys ------------------------------------------------------------------------------
def test_no_key_is_401_with_the_error_shape_on_every_protected_route(keyed: Server,
                                                                      photo: bytes) -> None:
    for response in (keyed.get("/api/limits"), keyed.get("/api/models"), keyed.get("/metrics"),
                     keyed.post("/api/remove", files={"file": ("a.jpg", photo, "image/jpeg")})):
        body = assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "X-API-Key" in body["errors"][0]["detail"]
        assert_security_headers(response)


def test_a_wrong_key_is_401(keyed: Server) -> None:
    for headers in ({"X-API-Key": "not-a-key-but-long-enough"},
                    {"Authorization": "Bearer not-a-key-but-long-enough"},
                    {"X-API-Key": KEYS["envkey"][:-1]},
                    {"X-API-Key": "x" * 5000},
                    {"Authorization": f"Basic {KEYS['envkey']}"}):
        response = keyed.get("/api/limits", headers=headers)
        body = assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert KEYS["envkey"] not in response.text, body


def test_the_right_key_as_x_api_key_or_bearer(keyed: Server) -> None:
    # from the environment, any header case
    assert keyed.get("/api/limits", headers={"X-Api-Key": KEYS["envkey"]}).status_code == 200
    assert keyed.get("/api/limits", headers={"x-api-key": KEYS["envkey"]}).status_code == 200
    # from the file, plain and stored as its sha256
    assert keyed.get("/api/limits", headers=key_header("filekey")).status_code == 200
    assert keyed.get("/api/limits", headers=key_header("hashkey")).status_code == 200
    # as a bearer token, the scheme in any case
    for scheme in ("Bearer", "bearer"):
        response = keyed.get("/api/models",
                             headers={"Authorization": f"{scheme} {KEYS['bearer']}"})
        assert response.status_code == 200, response.text
        assert response.json()["models"]


def test_the_compat_route_answers_403_in_remove_bg_shape(keyed: Server, photo: bytes) -> None:
    response = keyed.post("/v1.0/removebg", files={"image_file": ("a.jpg", photo, "image/jpeg")},
                          data={"size": "regular"})
    body = assert_error(response, 403, "unauthorized")
    assert "WWW-Authenticate" not in response.headers
    assert set(body["errors"][0]) >= {"title", "code", "detail"}
    assert_error(keyed.get("/v1.0/account", headers={"X-Api-Key": "wrong-key-0123456789"}),
                 403, "unauthorized")
    # remove.bg's client libraries send X-Api-Key
    response = keyed.post("/v1.0/removebg", files={"image_file": ("a.jpg", photo, "image/jpeg")},
                          data={"size": "regular"}, headers={"X-Api-Key": KEYS["compat"]})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"


def test_health_ready_webui_and_docs_stay_open(keyed: Server) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/readyz").status_code == 200
    for path in ("/", "/ui/app.js", "/ui/style.css", "/docs", "/openapi.json"):
        response = keyed.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert_security_headers(response, api=not path.startswith("/ui/"))


def test_metrics_need_a_key_when_keys_are_on(keyed: Server) -> None:
    assert keyed.get("/metrics").status_code == 401
    response = keyed.get("/metrics", headers=key_header("metrics"))
    assert response.status_code == 200 and "cleancut_" in response.text


# --- refusing to serve a public address without keys ---------------------------------------
def _refused(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cleancut: error: ")
    return done


def test_refuses_to_start_on_all_interfaces_without_keys(model_dir: Path) -> None:
    env = server_env(model_dir, host="0.0.0.0", port=str(free_port()), models="u2netp")
    done = _refused([sys.executable, "-m", "cleancut.server"], env)
    assert "0.0.0.0" in done.stderr and "--allow-anonymous" in done.stderr
    assert "CLEANCUT_API_KEYS" in done.stderr
    cli = [sys.executable, "-c", "import sys; from cleancut.cli import main; "
           "sys.exit(main(sys.argv[1:]))", "serve", "--host", "::", "--port", str(free_port())]
    env = server_env(model_dir, models="u2netp")
    assert "--allow-anonymous" in _refused(cli, env).stderr


def test_refuses_to_start_with_bad_keys(model_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "cleancut.server"]
    done = _refused(cmd, server_env(model_dir, api_keys="short", port=str(free_port())))
    assert "CLEANCUT_API_KEYS" in done.stderr and "16 characters" in done.stderr
    missing = tmp_path / "no-such-file"
    done = _refused(cmd, server_env(model_dir, api_keys_file=str(missing),
                                    port=str(free_port())))
    assert "CLEANCUT_API_KEYS_FILE" in done.stderr and str(missing) in done.stderr
    bad = tmp_path / "keys"
    bad.write_text("ok:0123456789abcdef0123\nsecret:sha256:zz\n")
    done = _refused(cmd, server_env(model_dir, api_keys_file=str(bad), port=str(free_port())))
    assert "entry 2" in done.stderr and "0123456789abcdef0123" not in done.stderr


def test_allow_anonymous_serves_all_interfaces(anonymous: Server) -> None:
    assert anonymous.get("/readyz").status_code == 200
    assert "--allow-anonymous" in anonymous.log.read_text()  # the warning at start-up


# --- rate limits ----------------------------------------------------------------------------
def test_rate_limit_per_key_with_headers_and_retry_after(keyed: Server) -> None:
    seen = []
    for _ in range(BURST):
        response = keyed.get("/api/limits", headers=key_header("rl_a"))
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Limit"] == str(BURST)
        seen.append(int(response.headers["X-RateLimit-Remaining"]))
        assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert seen == list(range(BURST - 1, -1, -1))
    response = keyed.get("/api/limits", headers=key_header("rl_a"))
    body = assert_error(response, 429, "rate_limited")
    assert "CLEANCUT_RATE_LIMIT_PER_MINUTE" in body["errors"][0]["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(BURST)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert_security_headers(response)
    # the compat route counts against the same bucket and answers 429 too
    assert_error(keyed.get("/v1.0/account", headers={"X-Api-Key": KEYS["rl_a"]}),
                 429, "rate_limited")
    # another key has its own bucket; unlimited routes stay open
    other = keyed.get("/api/limits", headers=key_header("rl_b"))
    assert other.status_code == 200
    assert other.headers["X-RateLimit-Remaining"] == str(BURST - 1)
    assert keyed.get("/healthz").status_code == 200
    assert "X-RateLimit-Limit" not in keyed.get("/healthz").headers


def _get_from(source: str, server: Server, path: str,
              headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def _until_limited(source: str, server: Server, forwarded: list[str]) -> int:
    """Send requests, one per X-Forwarded-For value, until one is limited; return how many."""
    for count, value in enumerate(forwarded, start=1):
        status, _ = _get_from(source, server, "/api/limits", {"X-Forwarded-For": value})
        if status == 429:
            return count
        assert status == 200
    return 0


def test_forwarded_for_is_ignored_from_an_untrusted_peer(anonymous: Server) -> None:
    # 127.0.0.1 is not a trusted proxy: every request counts against 127.0.0.1, whatever
    # X-Forwarded-For claims, so the third one (burst 2) is limited
    spoofed = [f"198.51.100.{n}" for n in range(1, 6)]
    assert _until_limited("127.0.0.1", anonymous, spoofed) in (1, 2, 3)


def test_forwarded_for_is_honoured_from_a_trusted_proxy(anonymous: Server) -> None:
    try:
        _get_from("127.0.0.2", anonymous, "/healthz", {})
    except OSError as exc:
        pytest.skip(f"cannot send from 127.0.0.2 on this machine: {exc}")
    # through the proxy, each client address has its own bucket of two
    assert _until_limited("127.0.0.2", anonymous, ["203.0.113.10"] * 5) == 3
    assert _until_limited("127.0.0.2", anonymous, ["203.0.113.11"] * 5) == 3
    # the right-most untrusted address is the client: a forged left part changes nothing
    status, headers = _get_from("127.0.0.2", anonymous, "/api/limits",
                                {"X-Forwarded-For": "192.0.2.99, 203.0.113.10"})
    assert status == 429 and int(headers["retry-after"]) >= 1
    # a chain through the trusted proxy twice still finds the client
    status, headers = _get_from("127.0.0.2", anonymous, "/api/limits",
                                {"X-Forwarded-For": "203.0.113.12, 127.0.0.2"})
    assert status == 200 and headers["x-ratelimit-remaining"] == "1"


# --- CORS -----------------------------------------------------------------------------------
def _preflight(server: Server, origin: str, path: str = "/api/remove") -> requests.Response:
    return requests.options(server.url + path, timeout=60, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})


def test_cors_preflight_only_for_the_configured_origin(keyed: Server) -> None:
    allowed = _preflight(keyed, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-api-key" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert_security_headers(allowed)
    denied = _preflight(keyed, "https://evil.example")
    assert denied.status_code >= 400
    assert "Access-Control-Allow-Origin" not in denied.headers
    # the actual request: the allowed origin may read the answer and its headers
    response = keyed.get("/api/limits", headers={**key_header("cors"), "Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()
    response = keyed.get("/api/limits", headers={**key_header("cors"), "Origin": "https://x.y"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_no_cors_headers_by_default(anonymous: Server) -> None:
    response = _preflight(anonymous, ORIGIN, path="/healthz")
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    response = anonymous.get("/healthz", headers={"Origin": ORIGIN})
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


# --- security headers -----------------------------------------------------------------------
def test_security_headers_on_pages_errors_404s_and_images(keyed: Server, anonymous: Server,
                                                          photo: bytes) -> None:
    page = anonymous.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert_security_headers(page)
    missing = anonymous.get("/no/such/page")
    assert_error(missing, 404, "not_found")
    assert_security_headers(missing)
    static_missing = anonymous.get("/ui/no-such-file.js")
    assert static_missing.status_code == 404
    assert_security_headers(static_missing, api=False)
    error = keyed.post("/api/remove", headers=key_header("headers"),
                       files={"file": ("notes.txt", b"not an image", "text/plain")})
    assert_error(error, 415, "invalid_file_type")
    assert_security_headers(error)
    image = keyed.post("/api/remove", headers=key_header("headers"),
                       files={"file": ("a.jpg", photo, "image/jpeg")})
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert_security_headers(image)


# --- the WebUI with keys, in a real browser --------------------------------------------------
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _watched_page(browser: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text)
            if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return context, page, problems


def _csp_violations(page: Any, problems: list[str]) -> list[str]:
    return [*problems, *page.evaluate("window.__csp")]


@pytest.mark.browser
def test_webui_asks_for_a_key_once_keeps_it_for_the_session_and_asks_again_on_401(
        browser: Any, keyed: Server, photo_path: Path) -> None:
    from .test_webui import TRANSPARENT_PIXELS, wait_for_result

    context, page, problems = _watched_page(browser)
    page.goto(keyed.url + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    # a wrong key is refused and asked for again
    page.fill("#api-key", "wrong-key-0123456789")
    page.click("#key-submit")
    page.wait_for_function(
        "() => document.getElementById('key-message').textContent.includes('not accepted')")
    assert page.is_visible("#key-form")
    page.fill("#api-key", KEYS["webui"])
    page.press("#api-key", "Enter")
    page.wait_for_selector("#key-form", state="hidden")
    page.wait_for_function(
        "() => document.querySelectorAll('#model option[value=u2netp]').length == 1")
    assert page.evaluate("sessionStorage.getItem('cleancut.apiKey')") == KEYS["webui"]
    assert page.evaluate("localStorage.length") == 0
    page.set_input_files("#file", str(photo_path))
    wait_for_result(page)
    counts = page.evaluate(TRANSPARENT_PIXELS)
    assert counts["clear"] > 0.05 * counts["total"] and counts["solid"] > 0.2 * counts["total"]
    assert page.is_hidden("#error")

    # the key stops working (here: replaced): the next call's 401 clears it and asks again
    page.evaluate("sessionStorage.setItem('cleancut.apiKey', 'revoked-key-0123456789')")
    page.click("#run")
    page.wait_for_selector("#key-form:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('cleancut.apiKey')") is None
    assert "not accepted" in page.inner_text("#key-message")
    page.fill("#api-key", KEYS["webui_later"])
    page.click("#key-submit")
    page.wait_for_selector("#key-form", state="hidden")
    wait_for_result(page)
    assert "Done" in page.inner_text("#status")
    assert not _csp_violations(page, problems)
    context.close()


@pytest.mark.browser
def test_docs_render_without_csp_violations(browser: Any, keyed: Server) -> None:
    context, page, problems = _watched_page(browser)
    page.goto(keyed.url + "/docs")
    for path in ("/api/remove", "/v1.0/removebg"):
        page.get_by_text(path, exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("/api/remove", exact=True).first.click()  # expand: more of the UI draws
    page.wait_for_timeout(500)
    assert not _csp_violations(page, problems)
    context.close()


# --- the pure parts, without a server ----------------------------------------------------------
def test_key_entries_are_hashed_and_masked(tmp_path: Path) -> None:
    from cleancut.apikeys import KeyTable
    from cleancut.config import Settings
    from cleancut.errors import InvalidParameter

    plain = "plain-0123456789abcdef"
    settings = Settings(model_dir=tmp_path, api_keys=f"{plain},ci:{KEYS['envkey']}")
    assert plain not in repr(settings) and KEYS["envkey"] not in repr(settings)
    assert [k.id for k in settings.api_keys][1] == "ci"
    assert settings.api_keys[0].id.startswith("key-")  # a bare key gets an id from its hash
    file = tmp_path / "keys"
    file.write_text(f"# comment\n\nh:sha256:{hashlib.sha256(b'x' * 20).hexdigest().upper()}\n")
    table = KeyTable.load(settings.api_keys, file)
    assert len(table) == 3 and plain not in repr(table)
    assert table.check(plain) == settings.api_keys[0].id
    assert table.check(KEYS["envkey"]) == "ci"
    assert table.check("x" * 20) == "h"
    assert table.check("x" * 21) is None and table.check("") is None
    file.write_text(f"ci:{KEYS['filekey']}\n")
    with pytest.raises(InvalidParameter, match="both CLEANCUT_API_KEYS and"):
        KeyTable.load(settings.api_keys, file)


def test_the_bucket_table_is_bounded_and_buckets_refill() -> None:
    from cleancut.server.ratelimit import TokenBuckets

    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, max_entries=100, clock=lambda: now[0])
    assert [buckets.take("a").allowed for _ in range(3)] == [True, True, False]
    denied = buckets.take("a")
    assert denied.retry_after_s == 1 and denied.remaining == 0 and denied.reset_s == 2
    now[0] += 1.0  # one token back after a second at 60 a minute
    assert buckets.take("a").allowed and not buckets.take("a").allowed
    for n in range(1000):
        buckets.take(f"client-{n}")
    assert len(buckets) == 100  # least recently used ones are dropped


@pytest.mark.parametrize(("trusted", "peer", "forwarded", "client"), [
    ([], "198.51.100.1", "203.0.113.1", "198.51.100.1"),  # no proxies: the header is ignored
    (["10.0.0.0/8"], "198.51.100.1", "203.0.113.1", "198.51.100.1"),  # peer not trusted
    (["10.0.0.0/8"], "10.0.0.5", "203.0.113.1", "203.0.113.1"),
    (["10.0.0.0/8"], "10.0.0.5", "192.0.2.66, 203.0.113.1, 10.1.1.1", "203.0.113.1"),
    (["10.0.0.0/8"], "10.0.0.5", "10.2.2.2, 10.1.1.1", "10.2.2.2"),  # all trusted: left-most
    (["10.0.0.0/8"], "10.0.0.5", "garbage, 10.1.1.1", "10.1.1.1"),  # stop at garbage
    (["10.0.0.0/8"], "10.0.0.5", "", "10.0.0.5"),
    (["10.0.0.0/8"], "10.0.0.5", "[2001:db8::1]:443", "2001:db8::1"),
    (["::1"], "::ffff:127.0.0.1", "203.0.113.1", "::ffff:127.0.0.1"),  # mapped v4 is v4
    (["127.0.0.1"], "::ffff:127.0.0.1", "203.0.113.1:8080", "203.0.113.1"),
])
def test_the_client_address_is_the_right_most_untrusted_one(
        trusted: list[str], peer: str, forwarded: str, client: str) -> None:
    import ipaddress

    from cleancut.server.proxies import TrustedProxies

    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 1234), "headers": headers}
    expected = ipaddress.ip_address(client)
    if expected.version == 6 and expected.ipv4_mapped is not None:
        expected = expected.ipv4_mapped
    assert TrustedProxies(trusted).client_of(scope) == expected


def test_loopback_detection() -> None:
    from cleancut.server.auth import is_loopback

    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""):
        assert not is_loopback(host), host
