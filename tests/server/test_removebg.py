"""The remove.bg-compatible API, driven the way remove.bg's client libraries call it."""

from __future__ import annotations

import base64
import io
import zipfile

import numpy as np
import pytest
from scipy import ndimage

from .conftest import Server, has_transparency, open_image

KEY = {"X-Api-Key": "any-key-while-auth-is-off"}


def compat_error(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    body = response.json()
    (entry,) = body["errors"]
    assert {"title", "code", "detail"} <= set(entry)
    return entry  # type: ignore[no-any-return]


def test_client_library_call_multipart_size_regular_api_key(server: Server, photo_path) -> None:
    # what remove.bg's Python client (and its curl example) send
    with open(photo_path, "rb") as image_file:
        response = server.post("/v1.0/removebg", files={"image_file": image_file},
                               data={"size": "regular"}, headers=KEY)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    im = open_image(response.content)
    assert has_transparency(im)
    assert im.width * im.height <= 250_000  # regular = up to 0.25 MP
    assert (int(response.headers["X-Width"]), int(response.headers["X-Height"])) == im.size
    assert response.headers["X-Type"] == "other"
    for side in ("Top", "Left", "Width", "Height"):
        assert f"X-Foreground-{side}" in response.headers


@pytest.mark.parametrize(("size", "max_pixels"), [
    ("preview", 250_000), ("small", 250_000), ("medium", 1_500_000), ("hd", 4_000_000),
    ("full", None), ("4k", None), ("50MP", None), ("auto", None)])
def test_sizes(server: Server, photo: bytes, size: str, max_pixels: int | None) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"size": size, "model": "u2netp"})
    im = open_image(response.content)
    if max_pixels is None or max_pixels >= 512 * 512:
        assert im.size == (512, 512)
    else:
        assert im.width * im.height <= max_pixels
        assert im.width == im.height  # aspect ratio kept


def test_default_size_is_preview_as_remove_bg(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo}, data={"model": "u2netp"})
    im = open_image(response.content)
    assert im.width * im.height <= 250_000


def test_json_body_with_accept_json_returns_result_b64(server: Server, photo: bytes) -> None:
    response = server.post(
        "/v1.0/removebg",
        json={"image_file_b64": base64.b64encode(photo).decode(), "size": "auto",
              "model": "u2netp"},
        headers={**KEY, "Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    data = response.json()["data"]
    im = open_image(base64.b64decode(data["result_b64"]))
    assert im.size == (512, 512) and has_transparency(im)
    assert data["foreground_width"] == int(response.headers["X-Foreground-Width"])
    assert response.headers["X-Width"] == "512"


def test_urlencoded_b64_with_data_url_prefix(server: Server, photo: bytes) -> None:
    b64 = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    response = server.post("/v1.0/removebg", data={"image_file_b64": b64, "size": "full",
                                                   "model": "u2netp"})
    assert response.status_code == 200, response.text
    assert open_image(response.content).size == (512, 512)


def test_zip_holds_color_jpg_and_alpha_png(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"format": "zip", "size": "full", "model": "u2netp"})
    assert response.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["alpha.png", "color.jpg"]
        color = open_image(archive.read("color.jpg"))
        alpha = open_image(archive.read("alpha.png"))
    assert color.format == "JPEG" and color.mode == "RGB" and color.size == (512, 512)
    assert alpha.format == "PNG" and alpha.mode == "L" and alpha.getextrema() == (0, 255)


def test_channels_alpha_is_the_mask(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"channels": "alpha", "size": "full", "model": "u2netp"})
    im = open_image(response.content)
    assert im.mode == "L" and im.getextrema() == (0, 255)


def _background_pixels(server: Server, photo: bytes) -> np.ndarray:
    """Where the cutout is fully transparent, a few pixels away from any edge."""
    mask = server.post("/v1.0/removebg", files={"image_file": photo},
                       data={"channels": "alpha", "size": "full", "model": "u2netp"})
    clear = np.asarray(open_image(mask.content)) == 0
    away: np.ndarray = ndimage.binary_erosion(clear, iterations=4)
    assert away.sum() > 1000
    return away


@pytest.mark.parametrize("colour", ["81d4fa", "#81d4fa", "lightblue", "81d4faff"])
def test_bg_color_gives_an_opaque_jpeg_with_format_auto(server: Server, photo: bytes,
                                                        colour: str) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"bg_color": colour, "size": "full", "model": "u2netp"})
    assert response.headers["Content-Type"] == "image/jpeg"
    rgb = np.asarray(open_image(response.content), dtype=np.float64)
    r, g, b = rgb[_background_pixels(server, photo)].mean(axis=0)
    assert b > 200 and 150 < g < 240 and r < 200


def test_jpg_without_bg_color_is_on_white(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"format": "jpg", "size": "full", "model": "u2netp"})
    assert response.headers["Content-Type"] == "image/jpeg"
    rgb = np.asarray(open_image(response.content))
    assert rgb[_background_pixels(server, photo)].min() > 230


def test_webp(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"format": "webp", "size": "full", "model": "u2netp"})
    assert response.headers["Content-Type"] == "image/webp"
    assert has_transparency(open_image(response.content).convert("RGBA"))


def test_crop_to_the_subject_with_margin(server: Server, photo: bytes) -> None:
    plain = server.post("/v1.0/removebg", files={"image_file": photo},
                        data={"size": "full", "model": "u2netp", "channels": "alpha"})
    fg_w, fg_h = int(plain.headers["X-Foreground-Width"]), int(plain.headers["X-Foreground-Height"])
    cropped = server.post("/v1.0/removebg", files={"image_file": photo},
                          data={"size": "full", "model": "u2netp", "crop": "true"})
    assert open_image(cropped.content).size == (fg_w, fg_h)
    margin = server.post("/v1.0/removebg", files={"image_file": photo},
                         data={"size": "full", "model": "u2netp", "crop": "true",
                               "crop_margin": "20px"})
    assert open_image(margin.content).size == (fg_w + 40, fg_h + 40)
    assert margin.headers["X-Foreground-Left"] == "20"
    assert margin.headers["X-Foreground-Top"] == "20"


def test_scale_and_position(server: Server) -> None:
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (400, 300), (250, 250, 250))
    ImageDraw.Draw(canvas).ellipse((40, 40, 160, 160), fill=(200, 20, 20))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    response = server.post("/v1.0/removebg", files={"image_file": buf.getvalue()},
                           data={"size": "full", "model": "u2net", "scale": "50%",
                                 "position": "center"})
    assert response.status_code == 200, response.text
    assert open_image(response.content).size == (400, 300)
    h = response.headers
    fg_h = int(h["X-Foreground-Height"])
    assert 140 <= fg_h <= 152  # 50% of the 300 px canvas height
    centre_x = int(h["X-Foreground-Left"]) + int(h["X-Foreground-Width"]) / 2
    assert abs(centre_x - 200) <= 4


def test_type_person_falls_back_to_the_default_model(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"type": "person", "size": "preview"})
    assert response.status_code == 200
    assert response.headers["X-Type"] == "person"
    assert response.headers["X-Model"] == "u2net"  # u2net_human_seg is not installed


def test_account_reports_the_limits(server: Server) -> None:
    response = server.get("/v1.0/account", headers=KEY)
    attributes = response.json()["data"]["attributes"]
    assert "credits" in attributes and "api" in attributes
    assert attributes["limits"]["max_upload_bytes"] == 10_000_000


@pytest.mark.parametrize(("data", "code"), [
    ({"size": "huge"}, "invalid_size"),
    ({"type": "spaceship"}, "invalid_type"),
    ({"format": "gif"}, "invalid_format"),
    ({"channels": "rgb"}, "invalid_channels"),
    ({"bg_color": "not-a-colour"}, "invalid_bgcolor"),
    ({"crop": "perhaps"}, "invalid_crop"),
    ({"crop": "true", "crop_margin": "lots"}, "invalid_crop_margin"),
    ({"scale": "5%"}, "invalid_scale"),
    ({"scale": "big"}, "invalid_scale"),
    ({"position": "101%"}, "invalid_position"),
    ({"bg_image_url": "http://example.com/bg.jpg"}, "invalid_bg_image_url"),
    ({"type_level": "9"}, "invalid_type_level"),
    ({"model": "nope"}, "unknown_model"),
])
def test_bad_parameters_are_400_with_remove_bg_shape(server: Server, photo: bytes,
                                                     data: dict[str, str], code: str) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo}, data=data)
    assert response.status_code == 400, response.text
    assert compat_error(response)["code"] == code


def test_no_image_is_400(server: Server) -> None:
    response = server.post("/v1.0/removebg", data={"size": "auto"}, headers=KEY)
    assert response.status_code == 400
    assert compat_error(response)["code"] == "invalid_image_file"


def test_image_url_is_refused_while_url_fetching_is_off(server: Server) -> None:
    response = server.post("/v1.0/removebg", data={"image_url": "https://example.com/a.jpg"})
    assert response.status_code == 400
    entry = compat_error(response)
    assert entry["code"] == "invalid_image_url"
    assert "CLEANCUT_URL_FETCH_ENABLED" in entry["detail"]


def test_two_image_sources_are_400(server: Server, photo: bytes) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": photo},
                           data={"image_file_b64": base64.b64encode(photo).decode()})
    assert response.status_code == 400


def test_bad_base64_is_400(server: Server) -> None:
    response = server.post("/v1.0/removebg", data={"image_file_b64": "!!!not base64!!!"})
    assert response.status_code == 400
    assert compat_error(response)["code"] == "invalid_image_file_b64"


def test_not_an_image_is_400_in_the_compat_route(server: Server) -> None:
    response = server.post("/v1.0/removebg", files={"image_file": ("a.txt", b"just text")})
    assert response.status_code == 400  # remove.bg answers 400 where the native API says 415
    assert compat_error(response)["code"] == "invalid_file_type"


def test_too_large_is_400_in_the_compat_route(tight_server: Server) -> None:
    response = tight_server.post("/v1.0/removebg", files={"image_file": b"\xff" * 300_000})
    assert response.status_code == 400
    assert compat_error(response)["code"] == "file_too_large"


@pytest.mark.parametrize(("body", "ctype"), [
    (b"{not json", "application/json"), (b"[1, 2]", "application/json"),
    (b'{"image_file_b64": {"a": 1}}', "application/json"), (b"raw bytes", "image/jpeg")])
def test_malformed_bodies_are_400(server: Server, body: bytes, ctype: str) -> None:
    response = server.post("/v1.0/removebg", data=body, headers={"Content-Type": ctype})
    assert response.status_code == 400
    compat_error(response)
