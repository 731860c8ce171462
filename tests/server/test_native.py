"""The native API against a real server: POST /api/remove, GET /api/models, GET /api/limits."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from cleancut.models import ModelStore

from .conftest import Server, has_transparency, open_image

IMAGE_HEADERS = ("X-Width", "X-Height", "X-Model", "X-Foreground-Top", "X-Foreground-Left",
                 "X-Foreground-Width", "X-Foreground-Height")


def error_of(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"errors", "request_id"}
    assert body["request_id"] == response.headers["X-Request-Id"]
    (entry,) = body["errors"]
    assert {"code", "title", "detail"} <= set(entry)
    return entry  # type: ignore[no-any-return]


def test_the_issue_client_verbatim_gets_a_png_with_real_transparency(
    server: Server, photo_path, monkeypatch, tmp_path
) -> None:
    (tmp_path / "input.jpg").write_bytes(photo_path.read_bytes())
    monkeypatch.chdir(tmp_path)
    # --- the client from the issue, unchanged but for the port ---
    import requests

    url = server.url + "/api/remove"
    files = {'file': open('input.jpg', 'rb')}  # noqa: SIM115
    data = {'model': 'u2net'}   # or u2netp, u2net_human_seg when installed
    response = requests.post(url, files=files, data=data)
    # ---
    files["file"].close()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    im = open_image(response.content)
    assert im.format == "PNG" and im.size == (512, 512)
    assert has_transparency(im)
    assert response.headers["X-Model"] == "u2net"
    for name in IMAGE_HEADERS:
        assert name in response.headers
    assert (int(response.headers["X-Width"]), int(response.headers["X-Height"])) == (512, 512)
    assert 'filename="input-cutout.png"' in response.headers["Content-Disposition"]


def test_a_pipeline_warning_reaches_the_client_in_a_header(server: Server,
                                                           photo: bytes) -> None:
    # a background threshold of 0 leaves the trimap without background, so matting falls back
    response = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2netp", "a": "true", "ab": "0"})
    assert response.status_code == 200
    assert response.headers["X-Cleancut-Warning"].startswith("alpha matting failed")
    plain = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                        data={"model": "u2netp"})
    assert "X-Cleancut-Warning" not in plain.headers


def test_foreground_headers_match_the_alpha(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2netp"})
    alpha = open_image(response.content).getchannel("A")
    left, top, right, bottom = alpha.point(lambda v: 255 if v > 127 else 0).getbbox()
    h = response.headers
    assert (int(h["X-Foreground-Left"]), int(h["X-Foreground-Top"]),
            int(h["X-Foreground-Width"]), int(h["X-Foreground-Height"])) == (
        left, top, right - left, bottom - top)


@pytest.mark.parametrize("field", ["return_mask", "only_mask", "om"])
def test_mask_only_under_each_name(server: Server, photo: bytes, field: str) -> None:
    response = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", field: "true"})
    assert response.status_code == 200
    im = open_image(response.content)
    assert im.mode == "L" and im.size == (512, 512)
    assert im.getextrema() == (0, 255)
    assert "-mask.png" in response.headers["Content-Disposition"]


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "on", "yes"])
def test_booleans_accept_the_strict_true_spellings(server: Server, photo: bytes,
                                                   value: str) -> None:
    response = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", "om": value})
    assert open_image(response.content).mode == "L"


@pytest.mark.parametrize("value", ["false", "0", "off", "no", ""])
def test_booleans_accept_the_strict_false_spellings(server: Server, photo: bytes,
                                                    value: str) -> None:
    response = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", "return_mask": value})
    assert open_image(response.content).mode == "RGBA"


def test_alpha_matting_with_its_thresholds_long_names(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": photo}, data={
        "model": "u2netp", "alpha_matting": "true", "alpha_matting_foreground_threshold": "230",
        "alpha_matting_background_threshold": "20", "alpha_matting_erode_size": "5"})
    assert response.status_code == 200
    assert has_transparency(open_image(response.content))


def test_alpha_matting_short_names_give_the_same_result(server: Server, photo: bytes) -> None:
    long = server.post("/api/remove", files={"file": photo}, data={
        "model": "u2netp", "alpha_matting": "true", "alpha_matting_foreground_threshold": "230",
        "alpha_matting_background_threshold": "20", "alpha_matting_erode_size": "5"})
    short = server.post("/api/remove", files={"file": photo}, data={
        "model": "u2netp", "a": "1", "af": "230", "ab": "20", "ae": "5"})
    assert short.status_code == 200
    assert short.content == long.content


def test_post_process_mask_long_and_short(server: Server, photo: bytes) -> None:
    long = server.post("/api/remove", files={"file": photo},
                       data={"model": "u2netp", "post_process_mask": "true", "om": "true"})
    short = server.post("/api/remove", files={"file": photo},
                        data={"model": "u2netp", "ppm": "true", "om": "true"})
    plain = server.post("/api/remove", files={"file": photo},
                        data={"model": "u2netp", "om": "true"})
    assert long.content == short.content
    assert long.content != plain.content


@pytest.mark.parametrize("field", ["bgcolor", "bgc"])
def test_background_colour_makes_an_opaque_result(server: Server, photo: bytes,
                                                  field: str) -> None:
    response = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", field: "#00ff00", "format": "jpeg"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    im = open_image(response.content)
    assert im.mode == "RGB"
    r, g, b = im.getpixel((2, 500))  # bottom-left corner is background in this photo
    assert g > 200 and r < 60 and b < 60


def test_premultiplied_changes_the_colours_not_the_alpha(server: Server, photo: bytes) -> None:
    straight = open_image(server.post("/api/remove", files={"file": photo},
                                      data={"model": "u2netp"}).content)
    premul = open_image(server.post("/api/remove", files={"file": photo},
                                    data={"model": "u2netp", "premultiplied": "yes"}).content)
    assert straight.getchannel("A").tobytes() == premul.getchannel("A").tobytes()
    assert straight.tobytes() != premul.tobytes()


@pytest.mark.parametrize(("fmt", "media_type", "pil"), [
    ("png", "image/png", "PNG"), ("webp", "image/webp", "WEBP")])
def test_output_formats(server: Server, photo: bytes, fmt: str, media_type: str,
                        pil: str) -> None:
    response = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", "format": fmt})
    assert response.headers["Content-Type"] == media_type
    im = open_image(response.content)
    assert im.format == pil and has_transparency(im.convert("RGBA"))


def test_quality_makes_webp_lossy_and_smaller(server: Server, photo: bytes) -> None:
    lossless = server.post("/api/remove", files={"file": photo},
                           data={"model": "u2netp", "format": "webp"})
    lossy = server.post("/api/remove", files={"file": photo},
                        data={"model": "u2netp", "format": "webp", "quality": "50"})
    assert lossy.status_code == 200
    assert len(lossy.content) < len(lossless.content)


def test_default_model_is_u2net(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": photo})
    assert response.headers["X-Model"] == "u2net"


@pytest.mark.parametrize(("data", "code"), [
    ({"om": "maybe"}, "invalid_return_mask"),
    ({"return_mask": "2"}, "invalid_return_mask"),
    ({"a": "yes please"}, "invalid_alpha_matting"),
    ({"ppm": "tru"}, "invalid_post_process_mask"),
    ({"premultiplied": "nope"}, "invalid_premultiplied"),
    ({"af": "300"}, "invalid_alpha_matting_foreground_threshold"),
    ({"alpha_matting_foreground_threshold": "abc"}, "invalid_alpha_matting_foreground_threshold"),
    ({"ab": "-1"}, "invalid_alpha_matting_background_threshold"),
    ({"ae": "1e9"}, "invalid_alpha_matting_erode_size"),
    ({"ae": "99999999999999999999"}, "invalid_alpha_matting_erode_size"),
    ({"bgc": "notacolour"}, "invalid_bgcolor"),
    ({"bgcolor": "1,2"}, "invalid_bgcolor"),
    ({"bgcolor": "300,0,0"}, "invalid_bgcolor"),
    ({"format": "gif"}, "invalid_format"),
    ({"format": "jpeg"}, "invalid_format"),  # JPEG cannot carry the cutout's transparency
    ({"quality": "0"}, "invalid_quality"),
    ({"quality": "high"}, "invalid_quality"),
    ({"om": "true", "return_mask": "false"}, "invalid_return_mask"),
])
def test_malformed_values_are_400_naming_the_field(server: Server, photo: bytes,
                                                   data: dict[str, str], code: str) -> None:
    response = server.post("/api/remove", files={"file": photo}, data={"model": "u2netp", **data})
    assert response.status_code == 400, response.text
    entry = error_of(response)
    assert entry["code"] == code
    assert entry["field"] == code.removeprefix("invalid_")


@pytest.mark.parametrize("name", ["nope", "u2net$", "../u2net", "U2NET", "u2net\n"])
def test_unknown_model_is_400_naming_the_field(server: Server, photo: bytes, name: str) -> None:
    response = server.post("/api/remove", files={"file": photo}, data={"model": name})
    assert response.status_code == 400
    entry = error_of(response)
    assert entry["code"] == "unknown_model" and entry["field"] == "model"


def test_known_model_not_installed_is_400_with_the_install_hint(server: Server,
                                                                photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": photo}, data={"model": "silueta"})
    assert response.status_code == 400
    entry = error_of(response)
    assert entry["code"] == "model_not_installed"
    assert "silueta" in entry["detail"]


def test_missing_file_is_400(server: Server) -> None:
    response = server.post("/api/remove", data={"model": "u2netp"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_file"


def test_not_multipart_at_all_is_400(server: Server) -> None:
    response = server.post("/api/remove", data=b"\x00\x01garbage",
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_body", "invalid_file")


def test_text_file_is_415(server: Server) -> None:
    response = server.post("/api/remove", files={"file": ("notes.txt", b"hello, world\n")})
    assert response.status_code == 415
    assert error_of(response)["code"] == "invalid_file_type"


def test_empty_file_is_415(server: Server) -> None:
    response = server.post("/api/remove", files={"file": ("empty.jpg", b"")})
    assert response.status_code == 415
    assert error_of(response)["code"] == "invalid_file_type"


def test_truncated_image_is_422(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": ("cut.jpg", photo[:2000])})
    assert response.status_code == 422
    assert error_of(response)["code"] == "failed_to_read_image"


def test_svg_is_415(server: Server) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
    response = server.post("/api/remove", files={"file": ("a.svg", svg, "image/svg+xml")})
    assert response.status_code == 415


def test_too_many_bytes_is_413(tight_server: Server) -> None:
    big = io.BytesIO()
    Image.effect_noise((400, 400), 80).convert("RGB").save(big, "PNG")  # ~480 kB > 200 kB limit
    response = tight_server.post("/api/remove", files={"file": ("big.png", big.getvalue())})
    assert response.status_code == 413
    entry = error_of(response)
    assert entry["code"] == "file_too_large" and "CLEANCUT_MAX_UPLOAD_BYTES" in entry["detail"]


def test_too_many_pixels_is_413(tight_server: Server) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (700, 700), "white").save(buf, "PNG")  # 0.49 MP > 0.3 MP, a few kB
    response = tight_server.post("/api/remove", files={"file": ("wide.png", buf.getvalue())})
    assert response.status_code == 413
    entry = error_of(response)
    assert entry["code"] == "resolution_too_high" and "CLEANCUT_MAX_PIXELS" in entry["detail"]


def test_a_valid_request_id_is_echoed(server: Server) -> None:
    response = server.get("/api/limits", headers={"X-Request-Id": "abc.DEF-123_x"})
    assert response.headers["X-Request-Id"] == "abc.DEF-123_x"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünïcode"])
def test_an_invalid_request_id_is_replaced(server: Server, bad: str) -> None:
    response = server.get("/api/limits", headers={"X-Request-Id": bad.encode("utf-8")})
    assert response.headers["X-Request-Id"] != bad
    assert 1 <= len(response.headers["X-Request-Id"]) <= 128


def test_errors_carry_the_request_id(server: Server) -> None:
    response = server.post("/api/remove", files={"file": b"nope"},
                           headers={"X-Request-Id": "trace-42"})
    assert response.headers["X-Request-Id"] == "trace-42"
    assert response.json()["request_id"] == "trace-42"


def test_models_lists_installed_models_with_size_and_licence(server: Server,
                                                            model_dir: Path) -> None:
    body = server.get("/api/models").json()
    names = [m["name"] for m in body["models"]]
    store = ModelStore(model_dir)
    # installed ones only, catalog order then derived or imported ones (an INT8 build, say)
    assert names == [n for n in store.names() if store.is_installed(n)]
    assert {"u2net", "u2netp"} <= set(names)
    for model in body["models"]:
        assert model["input_size"] == list(store.spec(model["name"]).input_size)
        assert model["licence"]
        assert model["loaded"] is (model["name"] in ("u2net", "u2netp"))  # the start-up ones
    assert body["default"] == "u2net"


def test_limits_reports_the_settings_in_force(tight_server: Server) -> None:
    body = tight_server.get("/api/limits").json()
    assert body["max_upload_bytes"] == 200_000
    assert body["max_pixels"] == 300_000
    assert body["max_megapixels"] == 0.3
    assert body["request_timeout_s"] == 30.0
    assert set(body["input_formats"]) == {"jpeg", "png", "webp", "bmp", "tiff", "gif"}
    assert body["output_formats"] == ["png", "webp", "jpeg"]
    assert (body["workers"], body["queue_size"]) == (1, 1)


def test_unknown_route_is_404_json(server: Server) -> None:
    response = server.get("/api/nothing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_wrong_method_is_405_json(server: Server) -> None:
    # GET /api/remove is the URL-input route (issue 4); PUT is nobody's
    response = requests.put(server.url + "/api/remove", timeout=60)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_options_lists_every_option_of_the_table_with_the_installed_models(
    server: Server,
) -> None:
    from cleancut.engine import OPTIONS

    rows = server.get("/api/options").json()["options"]
    assert [r["name"] for r in rows] == [s.name for s in OPTIONS if "api" in s.doors]
    by_name = {r["name"]: r for r in rows}
    assert {"u2net", "u2netp"} <= set(by_name["model"]["choices"])
    assert by_name["model"]["default"] == server.get("/api/models").json()["default"]
    assert by_name["only_mask"]["field"] == "return_mask"
    assert by_name["alpha_matting_erode_size"] | {"minimum": 0, "maximum": 64} == \
        by_name["alpha_matting_erode_size"]
    assert all(r["label"] and r["help"] for r in rows)


def test_every_listed_field_is_taken_by_remove(server: Server, photo: bytes) -> None:
    rows = server.get("/api/options").json()["options"]
    fields = {r["field"]: r for r in rows}
    # each option sent under its listed field changes the answer the way its row says
    mask = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                       data={fields["model"]["field"]: "u2netp", "return_mask": "true"})
    assert open_image(mask.content).mode == "L"
    on_white = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2netp", "bgcolor": "white", "format": "jpeg"})
    assert on_white.headers["Content-Type"] == "image/jpeg"


def test_every_image_response_carries_the_confidence(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2netp"})
    assert 0.0 <= float(response.headers["X-Confidence"]) <= 1.0
    compat = server.post("/v1.0/removebg", files={"image_file": ("p.jpg", photo)},
                         data={"size": "full"})
    assert compat.status_code == 200
    assert 0.0 <= float(compat.headers["X-Confidence"]) <= 1.0


def test_a_hint_image_and_keep_boxes_reach_the_cut(server: Server, photo: bytes) -> None:
    size = open_image(photo).size
    black = Image.new("RGBA", size, (0, 0, 0, 0))
    black.paste((0, 0, 0, 255), (0, 0, size[0], size[1]))  # remove everything
    buf = io.BytesIO()
    black.save(buf, "PNG")
    gone = server.post("/api/remove", files={"file": ("p.jpg", photo),
                                             "hints": ("h.png", buf.getvalue())},
                       data={"model": "u2netp", "return_mask": "true"})
    assert gone.status_code == 200
    assert open_image(gone.content).getextrema() == (0, 0)
    kept = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                       data={"model": "u2netp", "return_mask": "true",
                             "keep": f"[[0, 0, {size[0]}, {size[1]}]]"})
    assert open_image(kept.content).getextrema() == (255, 255)


@pytest.mark.parametrize(("files", "data", "code"), [
    ({"hints": ("h.png", b"not an image")}, {}, "invalid_hints"),
    ({}, {"hints": "white"}, "invalid_hints"),
    ({}, {"keep": "[[0, 0, 0, 0]]"}, "invalid_keep"),
    ({}, {"remove": "1,2,3"}, "invalid_remove"),
    ({}, {"keep": "[[99999, 0, 5, 5]]"}, "invalid_keep"),
])
def test_bad_hints_are_400_naming_the_field(server: Server, photo: bytes, files: dict,
                                            data: dict, code: str) -> None:
    response = server.post("/api/remove", files={"file": ("p.jpg", photo), **files},
                           data={"model": "u2netp", **data})
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_a_fused_model_is_named_in_the_answer(server: Server, photo: bytes) -> None:
    response = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                           data={"model": "u2net+u2netp"})
    assert response.status_code == 200 and response.headers["X-Model"] == "u2net+u2netp"
    unknown = server.post("/api/remove", files={"file": ("p.jpg", photo)},
                          data={"model": "u2net+nosuch"})
    assert unknown.status_code == 400 and error_of(unknown)["code"] == "unknown_model"
