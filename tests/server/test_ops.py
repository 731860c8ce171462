"""Health, readiness, metrics, OpenAPI and the docs page."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from cleancut.config import Settings
from cleancut.server import create_app

from .conftest import Server


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = server.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(samples.get((name, tuple(sorted(labels.items()))), 0.0))


def test_healthz(server: Server) -> None:
    response = server.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_readyz_when_ready_lists_the_warm_models(server: Server) -> None:
    body = server.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["models"]) == {"u2net", "u2netp"}


def test_readyz_is_503_with_retry_after_before_the_models_are_loaded(model_dir) -> None:
    # the app before its lifespan has run: nothing loaded yet
    app = create_app(Settings(model_dir=model_dir, models=["u2netp"]))
    status, headers, body = asyncio.run(_asgi_get(app, "/readyz"))
    assert status == 503
    assert headers[b"retry-after"] == b"5"
    assert b'"not_ready"' in body
    status, headers, body = asyncio.run(_asgi_get(app, "/healthz"))
    assert status == 200


async def _asgi_get(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_metrics_counts_match_the_traffic(server: Server, photo: bytes) -> None:
    before = scrape(server)
    for _ in range(3):
        assert server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp"}).status_code == 200
    for _ in range(2):
        assert server.post("/api/remove", files={"file": b"not an image"},
                           data={"model": "u2netp"}).status_code == 415
    assert server.post("/v1.0/removebg", files={"image_file": photo},
                       data={"model": "u2netp"}).status_code == 200
    after = scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    remove = {"route": "/api/remove", "method": "POST", "model": "u2netp"}
    assert delta("cleancut_http_requests_total", status="200", **remove) == 3
    assert delta("cleancut_http_requests_total", status="415", **remove) == 2
    assert delta("cleancut_http_requests_total", route="/v1.0/removebg", method="POST",
                 status="200", model="u2netp") == 1
    assert delta("cleancut_rejects_total", reason="invalid_file_type") == 2
    # five images reached the pool (415s are found by the decoder, on a worker)
    assert delta("cleancut_queue_wait_seconds_count") == 6
    for stage in ("decode", "preprocess", "inference", "mask", "compose", "encode"):
        assert delta("cleancut_stage_duration_seconds_count", stage=stage, model="u2netp") == 4
    assert value(after, "cleancut_model_load_seconds", model="u2net") > 0
    assert value(after, "cleancut_model_load_seconds", model="u2netp") > 0
    assert value(after, "cleancut_ready") == 1
    assert value(after, "cleancut_queue_depth") == 0
    assert value(after, "cleancut_workers") == 2
    assert value(after, "cleancut_http_requests_in_flight") == 1  # this scrape itself
    assert delta("cleancut_http_request_duration_seconds_count", route="/api/remove") == 5


def test_metrics_is_prometheus_text(server: Server) -> None:
    response = server.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"cleancut_http_requests", "cleancut_queue_wait_seconds",
            "cleancut_stage_duration_seconds", "cleancut_queue_depth",
            "cleancut_http_requests_in_flight", "cleancut_rejects",
            "cleancut_model_load_seconds"} <= names


def test_openapi_documents_every_route_and_parameter(server: Server) -> None:
    spec = server.get("/openapi.json").json()
    assert {"/api/remove", "/api/models", "/api/limits", "/v1.0/removebg", "/v1.0/account",
            "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    props = spec["paths"]["/api/remove"]["post"]["requestBody"]["content"][
        "multipart/form-data"]["schema"]["properties"]
    for name in ("file", "model", "return_mask", "om", "alpha_matting", "a",
                 "alpha_matting_foreground_threshold", "af", "alpha_matting_background_threshold",
                 "ab", "alpha_matting_erode_size", "ae", "post_process_mask", "ppm", "bgcolor",
                 "bgc", "premultiplied", "format", "quality"):
        assert props[name].get("description"), name
    query = {p["name"] for p in spec["paths"]["/api/remove"]["get"]["parameters"]}
    assert set(props) - {"file", "hints"} <= query  # GET ?url= takes the same fields, not files
    assert "/api/options" in spec["paths"]
    compat = spec["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"]
    fields = compat["multipart/form-data"]["schema"]["properties"]
    for name in ("image_file", "image_file_b64", "image_url", "size", "type", "format",
                 "channels", "bg_color", "crop", "crop_margin", "scale", "position"):
        assert fields[name]["description"], name
    assert "application/json" in compat


def test_docs_page_loads_only_local_assets(server: Server) -> None:
    html = server.get("/docs").text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "<script>" not in html and "<style" not in html  # no inline code: CSP holds
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("/"), src
        assert server.get(src).status_code == 200, src


def test_webui_page_has_no_inline_code_and_local_assets(server: Server) -> None:
    html = server.get("/").text
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert "on" + "click=" not in html
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        if src.startswith("/ui/"):
            assert server.get(src).status_code == 200, src
        else:
            assert src in ("/docs",), src


def test_server_binds_loopback_by_default() -> None:
    assert Settings().host == "127.0.0.1"
    assert Settings().port == 5000


def test_no_request_returns_a_500(server: Server) -> None:
    # a few hostile shapes at every route; none may be a 500
    cases = [
        ("POST", "/api/remove", {"data": b"--x\r\nbroken", "headers": {
            "Content-Type": "multipart/form-data; boundary=x"}}),
        ("POST", "/api/remove", {"files": {"file": ("a", b"GIF89a\x01\x00")}}),
        ("POST", "/api/remove", {"files": {"file": ("a", b"\x89PNG\r\n\x1a\n" + b"\0" * 50)}}),
        ("POST", "/v1.0/removebg", {"json": {"image_file_b64": "////", "size": None}}),
        ("POST", "/v1.0/removebg", {"data": b"\xff\xfe", "headers": {
            "Content-Type": "application/x-www-form-urlencoded"}}),
        ("GET", "/api/models?x=%00", {}),
        ("DELETE", "/metrics", {}),
    ]
    for method, path, kwargs in cases:
        response = requests.request(method, server.url + path, timeout=60, **kwargs)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
