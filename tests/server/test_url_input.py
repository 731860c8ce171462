"""Issue 4, section 4: URL input (``GET /api/remove?url=``, remove.bg's ``image_url`` and
``bg_image_url``) is off by default, refuses loopback unless allow-listed, works when it is, and
re-checks redirects. Every server here is on 127.0.0.1; fetch.py's own tests cover the address
ranges with a fake resolver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from tests.server.conftest import Server, has_transparency, open_image, start_server, stop_server

PHOTO = (GOLDEN / "inputs" / "astronaut.jpg").read_bytes()
BACKGROUND = (GOLDEN / "inputs" / "coffee.jpg").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        status, headers, body = self.routes.get(self.path, (404, {}, b"not here"))
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """A web server on loopback with a photo, a background and some redirects."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    _Handler.routes = {
        "/photo.jpg": (200, {"Content-Type": "image/jpeg"}, PHOTO),
        "/bg.jpg": (200, {"Content-Type": "image/jpeg"}, BACKGROUND),
        "/text": (200, {"Content-Type": "text/plain"}, b"not an image at all"),
        "/to-photo": (302, {"Location": "/photo.jpg"}, b""),
        "/to-private": (302, {"Location": "http://10.0.0.1/photo.jpg"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-other-loopback": (302, {"Location": f"http://127.0.0.2:{httpd.server_address[1]}"
                                                 "/photo.jpg"}, b""),
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield base
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def open_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """URL input on, no allow-list: any public host, nothing private."""
    log = tmp_path_factory.mktemp("url-open") / "server.log"
    srv = start_server(model_dir, log, models="u2netp", default_model="u2netp", workers="1",
                       url_fetch_enabled="true")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def listed_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """URL input on, only 127.0.0.1 allowed."""
    log = tmp_path_factory.mktemp("url-listed") / "server.log"
    srv = start_server(model_dir, log, models="u2netp", default_model="u2netp", workers="1",
                       url_fetch_enabled="true", url_allow_hosts="127.0.0.1")
    yield srv
    stop_server(srv)


def _error(response: object) -> dict[str, str]:
    return response.json()["errors"][0]  # type: ignore[attr-defined, no-any-return]


def test_url_input_is_refused_by_default(server: Server, origin: str) -> None:
    response = server.get("/api/remove", params={"url": origin + "/photo.jpg"})
    assert response.status_code == 400
    entry = _error(response)
    assert entry["code"] == "invalid_url"
    assert "CLEANCUT_URL_FETCH_ENABLED" in entry["detail"]
    for field in ("image_url", "bg_image_url"):
        values = {"image_url": origin + "/photo.jpg"} if field == "image_url" else \
            {"image_file_b64": "aGVsbG8=", "bg_image_url": origin + "/bg.jpg"}
        compat = server.post("/v1.0/removebg", data=values)
        assert compat.status_code == 400
        assert _error(compat)["code"] == f"invalid_{field}"
        assert "CLEANCUT_URL_FETCH_ENABLED" in _error(compat)["detail"]


def test_loopback_is_refused_when_enabled_but_not_allow_listed(
        open_server: Server, origin: str) -> None:
    response = open_server.get("/api/remove", params={"url": origin + "/photo.jpg"})
    assert response.status_code == 400
    entry = _error(response)
    assert entry["code"] == "invalid_url"
    assert "loopback" in entry["detail"]
    compat = open_server.post("/v1.0/removebg", data={"image_url": origin + "/photo.jpg"})
    assert compat.status_code == 400
    assert _error(compat)["code"] == "invalid_image_url"


def test_an_allow_listed_host_is_fetched(listed_server: Server, origin: str) -> None:
    response = listed_server.get("/api/remove", params={"url": origin + "/photo.jpg"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-width"] == "512"
    assert 'filename="photo-cutout.png"' in response.headers["content-disposition"]
    assert has_transparency(open_image(response.content))
    mask = listed_server.get("/api/remove", params={"url": origin + "/to-photo", "om": "true"})
    assert mask.status_code == 200
    assert open_image(mask.content).mode == "L"
    compat = listed_server.post("/v1.0/removebg", data={"image_url": origin + "/photo.jpg",
                                                       "size": "regular"})
    assert compat.status_code == 200
    assert has_transparency(open_image(compat.content))


def test_a_background_image_url_goes_behind_the_subject(listed_server: Server,
                                                        origin: str) -> None:
    response = listed_server.post("/v1.0/removebg", data={
        "image_url": origin + "/photo.jpg", "bg_image_url": origin + "/bg.jpg", "size": "full"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"  # format=auto: opaque result
    result = open_image(response.content)
    assert result.mode == "RGB"
    assert result.size == (512, 512)
    png = listed_server.post("/v1.0/removebg", data={
        "image_url": origin + "/photo.jpg", "bg_image_url": origin + "/bg.jpg", "format": "png"})
    assert png.status_code == 200
    assert open_image(png.content).mode == "RGB"
    both = listed_server.post("/v1.0/removebg", data={
        "image_url": origin + "/photo.jpg", "bg_image_url": origin + "/bg.jpg",
        "bg_color": "ff0000"})
    assert both.status_code == 400
    assert _error(both)["code"] == "invalid_bg_image_url"


@pytest.mark.parametrize("path", ["/to-private", "/to-metadata", "/to-other-loopback"])
def test_a_redirect_to_a_private_address_is_refused(listed_server: Server, origin: str,
                                                    path: str) -> None:
    response = listed_server.get("/api/remove", params={"url": origin + path})
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_url"


def test_what_is_not_an_image_is_refused(listed_server: Server, origin: str) -> None:
    text = listed_server.get("/api/remove", params={"url": origin + "/text"})
    assert text.status_code == 415
    assert _error(text)["code"] == "invalid_file_type"
    missing = listed_server.get("/api/remove", params={"url": origin + "/nothing"})
    assert missing.status_code == 400
    assert _error(missing)["code"] == "url_fetch_failed"
    no_url = listed_server.get("/api/remove")
    assert no_url.status_code == 400
    assert _error(no_url)["code"] == "invalid_url"
