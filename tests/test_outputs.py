"""What comes out: background colours, output formats, option bounds, matting, return types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cleancut
from cleancut import InvalidParameter, Options
from cleancut.config import Settings

from .imagetools import alpha, encode, input_bytes, mad, open_image

MODEL = "u2netp"


@pytest.fixture(scope="module")
def photo() -> bytes:
    return input_bytes("chelsea.jpg")


@pytest.fixture(scope="module")
def photo_rgb(photo: bytes) -> np.ndarray:
    return np.asarray(open_image(photo).convert("RGB"), dtype=np.float64)


@pytest.fixture(scope="module")
def mask(photo: bytes, settings: Settings, model_dir) -> np.ndarray:
    return alpha(open_image(cleancut.remove(photo, model=MODEL, settings=settings, only_mask=True)))


def _remove(data: object, settings: Settings, **options: object) -> object:
    return cleancut.remove(data, model=MODEL, settings=settings, **options)


# --- background colour ---------------------------------------------------------------------------

COLOURS = [
    pytest.param("#1e90ff", (30, 144, 255, 255), id="hex"),
    pytest.param("#1E90FF", (30, 144, 255, 255), id="hex-upper"),
    pytest.param("#f00", (255, 0, 0, 255), id="hex-short"),
    pytest.param("#1e90ff80", (30, 144, 255, 128), id="hex-with-alpha"),
    pytest.param("dodgerblue", (30, 144, 255, 255), id="css-name"),
    pytest.param("White", (255, 255, 255, 255), id="css-name-any-case"),
    pytest.param("30,144,255", (30, 144, 255, 255), id="rgb"),
    pytest.param(" 30, 144, 255, 128 ", (30, 144, 255, 128), id="rgba-with-spaces"),
    pytest.param((30, 144, 255), (30, 144, 255, 255), id="tuple"),
    pytest.param([30, 144, 255, 0], (30, 144, 255, 0), id="list-transparent"),
]


@pytest.mark.parametrize(("given", "rgba"), COLOURS)
def test_background_colour_formats(given: object, rgba: tuple[int, ...]) -> None:
    assert Options.create(bgcolor=given).bgcolor == rgba


BAD_COLOURS = ["#12345", "#gggggg", "not-a-colour", "1,2", "1,2,3,4,5", "256,0,0", "-1,0,0",
               "a,b,c", "#", "rgb(1,2)", (1, 2), (0, 0, 300)]


@pytest.mark.parametrize("given", BAD_COLOURS, ids=[str(c) for c in BAD_COLOURS])
def test_a_malformed_background_colour_is_invalid_bgcolor(given: object, photo: bytes,
                                                          settings: Settings) -> None:
    with pytest.raises(InvalidParameter) as info:
        _remove(photo, settings, bgcolor=given)
    assert info.value.code == "invalid_bgcolor"
    assert info.value.field == "bgcolor"
    assert info.value.status == 400


def test_an_opaque_background_is_blended_by_alpha(
    photo: bytes, photo_rgb: np.ndarray, mask: np.ndarray, settings: Settings
) -> None:
    bg = np.array([30, 144, 255], dtype=np.float64)
    out = open_image(_remove(photo, settings, bgcolor="#1e90ff", decontaminate=False))
    assert out.mode == "RGB"  # nothing transparent is left
    a = mask[..., None] / 255.0
    expected = photo_rgb * a + bg * (1.0 - a)  # out = fg·α + bg·(1−α), not fg·α² (the reference)
    diff = np.abs(np.asarray(out, dtype=np.float64) - expected)
    assert diff.max() <= 1.0
    # the edges are not darkened: half-transparent pixels sit between the photo and the colour
    edge = (mask > 20) & (mask < 235)
    assert edge.sum() > 100
    assert mad(np.asarray(out, dtype=np.float64)[edge], expected[edge]) <= 0.5


def test_a_background_is_blended_with_the_cleaned_edge_colours_by_default(
    photo: bytes, mask: np.ndarray, settings: Settings
) -> None:
    bg = np.array([30, 144, 255], dtype=np.float64)
    cutout = open_image(_remove(photo, settings))  # decontaminated by default
    fg = np.asarray(cutout, dtype=np.float64)[..., :3]
    out = np.asarray(open_image(_remove(photo, settings, bgcolor="#1e90ff")), dtype=np.float64)
    a = mask[..., None] / 255.0
    assert np.abs(out - (fg * a + bg * (1.0 - a))).max() <= 1.0


def test_a_translucent_background_is_composited_over(
    photo: bytes, photo_rgb: np.ndarray, mask: np.ndarray, settings: Settings
) -> None:
    bg = np.array([30, 144, 255], dtype=np.float64)
    bg_a = 128 / 255.0
    out = open_image(_remove(photo, settings, bgcolor="30,144,255,128", decontaminate=False))
    assert out.mode == "RGBA"
    a = mask / 255.0
    out_a = a + bg_a * (1.0 - a)  # Porter-Duff "over"
    assert np.abs(alpha(out) - out_a * 255.0).max() <= 1.0
    rgb = (photo_rgb * a[..., None] + bg * bg_a * (1.0 - a[..., None])) / out_a[..., None]
    assert np.abs(np.asarray(out, dtype=np.float64)[..., :3] - rgb).max() <= 1.5


def test_a_fully_transparent_background_leaves_the_cutout_alpha(
    photo: bytes, mask: np.ndarray, settings: Settings
) -> None:
    out = open_image(_remove(photo, settings, bgcolor="0,0,0,0"))
    assert out.mode == "RGBA"
    assert np.abs(alpha(out).astype(int) - mask).max() <= 1


# --- output formats ------------------------------------------------------------------------------


def test_png_is_the_default_output(photo: bytes, settings: Settings) -> None:
    out = _remove(photo, settings)
    assert out[:8] == b"\x89PNG\r\n\x1a\n"
    assert open_image(out).mode == "RGBA"


def test_lossless_webp_is_the_same_cutout_as_png(photo: bytes, settings: Settings) -> None:
    png = open_image(_remove(photo, settings))
    webp = open_image(_remove(photo, settings, format="webp"))
    assert webp.format == "WEBP"
    assert webp.mode == "RGBA"
    assert np.array_equal(np.asarray(webp), np.asarray(png))


def test_lossy_webp_keeps_the_alpha_close(photo: bytes, mask: np.ndarray,
                                          settings: Settings) -> None:
    lossless = _remove(photo, settings, format="webp")
    lossy = _remove(photo, settings, format="webp", quality=75)
    assert len(lossy) < len(lossless)
    out = open_image(lossy)
    assert out.format == "WEBP"
    assert out.mode == "RGBA"
    assert mad(alpha(out), mask) <= 2.0


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "JPEG"])
def test_jpeg_carries_the_mask(fmt: str, photo: bytes, mask: np.ndarray,
                               settings: Settings) -> None:
    out = open_image(_remove(photo, settings, only_mask=True, format=fmt))
    assert out.format == "JPEG"
    assert out.mode == "L"
    assert mad(np.asarray(out), mask) <= 2.0


def test_jpeg_carries_a_cutout_on_an_opaque_background(photo: bytes, settings: Settings) -> None:
    out = open_image(_remove(photo, settings, bgcolor="white", format="jpeg", quality=95))
    assert out.format == "JPEG"
    assert out.mode == "RGB"
    png = open_image(_remove(photo, settings, bgcolor="white"))
    assert mad(np.asarray(out), np.asarray(png)) <= 2.0


@pytest.mark.parametrize(
    "options",
    [pytest.param({}, id="cutout"), pytest.param({"bgcolor": "#ffffff80"}, id="translucent-bg"),
     pytest.param({"premultiplied": True}, id="premultiplied")],
)
def test_jpeg_refuses_a_result_with_transparency(options: dict, photo: bytes,
                                                 settings: Settings) -> None:
    with pytest.raises(InvalidParameter) as info:
        _remove(photo, settings, format="jpeg", **options)
    assert info.value.code == "invalid_format"
    assert "transparency" in str(info.value)


@pytest.mark.parametrize("fmt", ["gif", "tiff", "", "png8"])
def test_an_unknown_output_format_is_invalid_format(fmt: str, photo: bytes,
                                                    settings: Settings) -> None:
    with pytest.raises(InvalidParameter) as info:
        _remove(photo, settings, format=fmt)
    assert info.value.code == "invalid_format"


# --- bounds of the options -----------------------------------------------------------------------

BOUNDED = [
    ("alpha_matting_foreground_threshold", 0, 255),
    ("alpha_matting_background_threshold", 0, 255),
    ("alpha_matting_erode_size", 0, 64),
    ("quality", 1, 100),
]


@pytest.mark.parametrize(("field", "low", "high"), BOUNDED)
def test_option_bounds_are_inclusive(field: str, low: int, high: int) -> None:
    assert getattr(Options.create(**{field: low}), field) == low
    assert getattr(Options.create(**{field: high}), field) == high


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, low, high in BOUNDED for v in (low - 1, high + 1)]
    + [("alpha_matting_erode_size", 2.5), ("alpha_matting_foreground_threshold", "240"),
       ("alpha_matting_erode_size", True)],
)
def test_an_option_out_of_bounds_is_invalid_and_named(
    field: str, value: object, photo: bytes, settings: Settings
) -> None:
    with pytest.raises(InvalidParameter) as info:
        _remove(photo, settings, alpha_matting=True, **{field: value})
    assert info.value.field == field
    assert info.value.code == f"invalid_{field}"
    assert field in str(info.value)


# --- alpha matting -------------------------------------------------------------------------------


def _assert_soft_cutout(out: Image.Image, size: tuple[int, int]) -> None:
    assert out.mode == "RGBA"
    assert out.size == size
    a = alpha(out)
    assert (a == 0).any() and (a == 255).any()
    assert ((a > 0) & (a < 255)).any()


def test_alpha_matting_with_erode_size_zero_works(photo: bytes, settings: Settings) -> None:
    result = cleancut.process(photo, model=MODEL, settings=settings, alpha_matting=True,
                              alpha_matting_erode_size=0)
    assert result.warnings == []  # matted, not the fallback
    _assert_soft_cutout(open_image(result.data), open_image(photo).size)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_alpha_matting_works_for_every_input_mode(mode: str, settings: Settings,
                                                  model_dir) -> None:
    source = open_image(input_bytes("astronaut.jpg")).convert(mode)
    result = cleancut.process(encode(source), model=MODEL, settings=settings, alpha_matting=True)
    assert result.warnings == []
    _assert_soft_cutout(open_image(result.data), source.size)


def test_alpha_matting_of_a_12_megapixel_photo_completes(settings: Settings, model_dir) -> None:
    big = open_image(input_bytes("chelsea.jpg")).convert("RGB").resize((4000, 3000))
    out = cleancut.remove(big, model=MODEL, settings=settings, alpha_matting=True)
    _assert_soft_cutout(out, (4000, 3000))


# --- what remove() returns -----------------------------------------------------------------------


def test_bytes_in_give_bytes_out(photo: bytes, settings: Settings) -> None:
    out = _remove(photo, settings)
    assert isinstance(out, bytes)
    for kind in (bytearray(photo), memoryview(photo)):
        assert _remove(kind, settings) == out


@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_a_path_in_gives_bytes_out(as_str: bool, photo: bytes, tmp_path: Path,
                                   settings: Settings) -> None:
    path = tmp_path / "in.jpg"
    path.write_bytes(photo)
    out = _remove(str(path) if as_str else path, settings)
    assert isinstance(out, bytes)
    assert out == _remove(photo, settings)


def test_a_pil_image_in_gives_a_pil_image_out(photo: bytes, mask: np.ndarray,
                                              settings: Settings) -> None:
    im = open_image(photo)
    cutout = _remove(im, settings)
    assert isinstance(cutout, Image.Image)
    assert cutout.mode == "RGBA"
    assert cutout.size == im.size
    only_mask = _remove(im, settings, only_mask=True)
    assert isinstance(only_mask, Image.Image)
    assert only_mask.mode == "L"
    assert np.array_equal(np.asarray(only_mask), mask)
    on_white = _remove(im, settings, bgcolor="white")
    assert on_white.mode == "RGB"


def test_a_pil_image_with_exif_orientation_comes_out_upright(settings: Settings,
                                                             model_dir) -> None:
    im = open_image(input_bytes("rocket_exif6.jpg"))
    out = _remove(im, settings)
    assert out.size == (im.height, im.width)


@pytest.mark.parametrize(
    ("shape", "out_shape"),
    [((300, 451, 3), (300, 451, 4)), ((300, 451, 4), (300, 451, 4)), ((300, 451), (300, 451, 4))],
    ids=["HxWx3", "HxWx4", "HxW"],
)
def test_a_numpy_array_in_gives_a_numpy_array_out(
    shape: tuple[int, ...], out_shape: tuple[int, ...], photo: bytes, settings: Settings
) -> None:
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[shape[2] if len(shape) == 3 else 2]
    arr = np.asarray(open_image(photo).convert(mode))
    assert arr.shape == shape
    out = _remove(arr, settings)
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == out_shape


def test_a_numpy_array_gives_the_mask_as_an_array(photo: bytes, mask: np.ndarray,
                                                  settings: Settings) -> None:
    arr = np.asarray(open_image(photo).convert("RGB"))
    out = _remove(arr, settings, only_mask=True)
    assert isinstance(out, np.ndarray)
    assert out.shape == arr.shape[:2]
    assert np.array_equal(out, mask)


@pytest.mark.parametrize(
    "data",
    [np.zeros((10, 10, 3), dtype=np.float32), np.zeros((10, 10, 2), dtype=np.uint8),
     np.zeros((2, 10, 10, 3), dtype=np.uint8), 42, None],
    ids=["float-array", "two-channels", "batch", "int", "none"],
)
def test_an_unsupported_input_is_invalid_data(data: object, settings: Settings) -> None:
    with pytest.raises(InvalidParameter) as info:
        _remove(data, settings)
    assert info.value.code == "invalid_data"
