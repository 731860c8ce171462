"""Decoding: every format and mode the issue lists, EXIF orientation, ICC, and typed errors.

Inputs are built here with Pillow from the golden photos, so every case is a real encoded file.
The model does not matter for decoding, so these tests use u2netp.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import cleancut
from cleancut import FailedToReadImage, FileTooLarge, InvalidFileType, ResolutionTooHigh
from cleancut.config import Settings
from cleancut.errors import CleancutError

from .imagetools import alpha, encode, input_bytes, iou, mad, open_image

MODEL = "u2netp"
SAME_MAD = 0.5  # the golden tolerances: the same pixels must give the same mask
SAME_IOU = 0.995


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return open_image(input_bytes("astronaut.jpg")).convert("RGB")


@pytest.fixture(scope="module")
def rocket() -> Image.Image:
    return open_image(input_bytes("rocket.jpg")).convert("RGB")


# Inference costs the same whatever the image, so identical inputs are run once per module:
# several tests compare against the same reference rendering.
_MASKS: dict[tuple[object, ...], np.ndarray] = {}


def mask_of(data: bytes | Image.Image, settings: Settings) -> np.ndarray:
    """The only_mask result of ``data`` (encoded bytes or a PIL image) as an array."""
    if isinstance(data, Image.Image):
        key: tuple[object, ...] = ("pil", data.mode, data.size, data.info.get("transparency"),
                                   hashlib.sha256(data.tobytes()).digest(), id(settings))
    else:
        key = ("bytes", hashlib.sha256(data).digest(), id(settings))
    if key not in _MASKS:
        out = cleancut.remove(data, model=MODEL, settings=settings, only_mask=True)
        if isinstance(data, Image.Image):
            assert isinstance(out, Image.Image)
            _MASKS[key] = alpha(out)
        else:
            _MASKS[key] = alpha(open_image(out))
    return _MASKS[key]


@pytest.fixture(scope="module")
def astronaut_mask(astronaut: Image.Image, settings: Settings, model_dir) -> np.ndarray:
    return mask_of(encode(astronaut), settings)


def assert_same_mask(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert mad(got, want) <= SAME_MAD
    assert iou(got, want) >= SAME_IOU


# --- formats, recognised by content --------------------------------------------------------------

# (format, save parameters, IoU against the lossless RGB result: lossy encodings move edges a bit)
FORMATS = [
    pytest.param("PNG", {}, SAME_IOU, id="png"),
    pytest.param("JPEG", {"quality": 92}, 0.99, id="jpeg"),
    pytest.param("WEBP", {"lossless": True}, SAME_IOU, id="webp-lossless"),
    pytest.param("WEBP", {"quality": 80}, 0.99, id="webp-lossy"),
    pytest.param("BMP", {}, SAME_IOU, id="bmp"),
    pytest.param("TIFF", {}, SAME_IOU, id="tiff"),
    pytest.param("GIF", {}, 0.98, id="gif"),  # a 256-colour palette
]


@pytest.mark.parametrize(("fmt", "params", "min_iou"), FORMATS)
def test_every_input_format_is_decoded(
    fmt: str, params: dict, min_iou: float, astronaut, astronaut_mask, settings: Settings
) -> None:
    data = encode(astronaut, fmt, **params)
    result = cleancut.process(data, model=MODEL, settings=settings, only_mask=True)
    assert result.source_format == fmt
    got = alpha(open_image(result.data))
    assert got.shape == astronaut_mask.shape
    assert iou(got, astronaut_mask) >= min_iou


def test_animated_gif_uses_its_first_frame(astronaut, settings: Settings, model_dir) -> None:
    second = open_image(input_bytes("chelsea.jpg")).convert("RGB").resize(astronaut.size)
    buf = io.BytesIO()
    astronaut.save(buf, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    data = buf.getvalue()
    frames = Image.open(io.BytesIO(data))
    assert frames.n_frames == 2
    first_frame = frames.convert("RGB")
    frames.seek(1)
    second_frame = frames.convert("RGB")

    got = mask_of(data, settings)
    assert_same_mask(got, mask_of(first_frame, settings))
    assert iou(got, mask_of(second_frame, settings)) < 0.5


def test_a_png_named_jpg_is_read_by_its_content(
    astronaut, astronaut_mask, tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(astronaut, "PNG"))
    out = cleancut.remove(path, model=MODEL, settings=settings, only_mask=True)
    assert_same_mask(alpha(open_image(out)), astronaut_mask)


# --- every Pillow mode ---------------------------------------------------------------------------


def _with_transparent_left_half(im: Image.Image) -> Image.Image:
    a = Image.new("L", im.size, 255)
    a.paste(0, (0, 0, im.width // 2, im.height))
    out = im.copy()
    out.putalpha(a)
    return out


def _palette_with_transparency(rgb: Image.Image) -> Image.Image:
    p = rgb.quantize(256)
    p.info["transparency"] = int(np.asarray(p)[0, 0])  # the top-left pixel's palette entry
    return p


# modes that Pillow itself renders as RGB faithfully: the result must be that of the RGB rendering
NATIVE_MODES = {
    "1": (lambda rgb: rgb.convert("L").convert("1"), "PNG"),
    "L": (lambda rgb: rgb.convert("L"), "PNG"),
    "LA": (lambda rgb: _with_transparent_left_half(rgb.convert("L")), "PNG"),
    "P": (lambda rgb: rgb.quantize(256), "PNG"),
    "P+transparency": (_palette_with_transparency, "PNG"),
    "RGB": (lambda rgb: rgb, "PNG"),
    "RGBA": (lambda rgb: _with_transparent_left_half(rgb), "PNG"),
    "CMYK": (lambda rgb: rgb.convert("CMYK"), "TIFF"),
}


@pytest.mark.parametrize("case", list(NATIVE_MODES))
def test_every_mode_gives_the_mask_of_its_pixels(
    case: str, astronaut, settings: Settings, model_dir
) -> None:
    make, fmt = NATIVE_MODES[case]
    data = encode(make(astronaut), fmt)
    decoded = open_image(data)
    assert decoded.mode == case.split("+")[0]  # the file really is of that mode
    got = mask_of(data, settings)
    assert_same_mask(got, mask_of(encode(decoded.convert("RGB")), settings))


@pytest.mark.parametrize("case", [m for m in NATIVE_MODES if m != "1"])
def test_every_mode_gives_a_sensible_mask_of_the_photo(
    case: str, astronaut, astronaut_mask, settings: Settings
) -> None:
    make, fmt = NATIVE_MODES[case]
    got = mask_of(encode(make(astronaut), fmt), settings)
    assert iou(got, astronaut_mask) >= 0.9


@pytest.mark.parametrize("case", list(NATIVE_MODES))
def test_pil_images_of_every_mode_are_accepted(
    case: str, astronaut, settings: Settings, model_dir
) -> None:
    make, _fmt = NATIVE_MODES[case]
    im = make(astronaut)
    got = mask_of(im, settings)
    assert_same_mask(got, mask_of(encode(im.convert("RGB")), settings))


def _wide(kind: str, grey: np.ndarray) -> Image.Image:
    if kind in ("I;16", "I;16 tiff"):
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if kind == "I":
        return Image.fromarray(grey.astype(np.int32) * 257)
    if kind == "F 0-1":
        return Image.fromarray(grey.astype(np.float32) / 255.0)
    if kind == "F 0-255":
        return Image.fromarray(grey.astype(np.float32))
    raise AssertionError(kind)


WIDE = [
    ("I;16", "PNG"), ("I;16 tiff", "TIFF"), ("I", "TIFF"), ("F 0-1", "TIFF"), ("F 0-255", "TIFF"),
]


@pytest.mark.parametrize(("kind", "fmt"), [pytest.param(k, f, id=k) for k, f in WIDE])
def test_16_bit_and_float_images_keep_their_tones(
    kind: str, fmt: str, astronaut, settings: Settings, model_dir
) -> None:
    grey = astronaut.convert("L")
    data = encode(_wide(kind, np.asarray(grey)), fmt)
    assert open_image(data).mode == kind.split(" ")[0]
    # scaled into 0-255 like the 8-bit image it was made from, not clipped to white
    assert_same_mask(mask_of(data, settings), mask_of(encode(grey), settings))


@pytest.mark.parametrize("kind", ["I;16", "I", "F 0-1", "F 0-255"])
def test_16_bit_and_float_pil_images_keep_their_tones(
    kind: str, astronaut, settings: Settings, model_dir
) -> None:
    grey = astronaut.convert("L")
    got = mask_of(_wide(kind, np.asarray(grey)), settings)
    assert_same_mask(got, mask_of(encode(grey), settings))


@pytest.mark.parametrize("case", ["LA", "RGBA", "P+transparency"])
def test_transparent_input_pixels_stay_transparent_in_the_cutout(
    case: str, astronaut, settings: Settings, model_dir
) -> None:
    make, fmt = NATIVE_MODES[case]
    source = open_image(encode(make(astronaut), fmt))
    transparent = np.asarray(source.convert("RGBA").getchannel("A")) == 0
    assert transparent.any()
    out = open_image(cleancut.remove(encode(source, fmt), model=MODEL, settings=settings))
    assert out.mode == "RGBA"
    assert not alpha(out)[transparent].any()


# --- EXIF orientation ----------------------------------------------------------------------------

T = Image.Transpose
# how to store the upright pixels so that orientation n turns them upright again
STORE_FOR_ORIENTATION = {
    1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE, 6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270,
}


def _oriented(upright: Image.Image, orientation: int, fmt: str, **params: object) -> bytes:
    op = STORE_FOR_ORIENTATION[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **params)


@pytest.fixture(scope="module")
def rocket_mask(rocket: Image.Image, settings: Settings, model_dir) -> np.ndarray:
    return mask_of(encode(rocket), settings)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(
    orientation: int, rocket, rocket_mask, settings: Settings
) -> None:
    data = _oriented(rocket, orientation, "PNG")  # lossless: the upright pixels are rocket's
    # the photo's own colours (no edge clean-up), to compare every visible pixel exactly
    out = open_image(cleancut.remove(data, model=MODEL, settings=settings, decontaminate=False))
    assert out.size == rocket.size
    assert out.getexif().get(0x0112, 1) == 1  # upright pixels: viewers must not turn it again
    assert_same_mask(alpha(out), rocket_mask)
    assert np.array_equal(np.asarray(out)[..., :3][alpha(out) > 0],
                          np.asarray(rocket)[alpha(out) > 0])


@pytest.mark.parametrize("orientation", [3, 6, 8])  # a flip and both turns; PNG covers all 8
def test_exif_orientation_of_jpeg_photos_is_applied(
    orientation: int, rocket, rocket_mask, settings: Settings
) -> None:
    data = _oriented(rocket, orientation, "JPEG", quality=100, subsampling=0)
    got = mask_of(data, settings)
    assert got.shape == rocket_mask.shape  # upright size
    # re-encoding moves a few edge pixels of the thin rocket; the mask stays the same
    assert mad(got, rocket_mask) <= SAME_MAD
    assert iou(got, rocket_mask) >= 0.9


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(
    "exif",
    [b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 30,
     b"Exif\x00\x00" + b"junk" * 5],
    ids=["bad-ifd", "not-tiff"],
)
def test_a_photo_with_damaged_exif_is_still_decoded(
    exif: bytes, rocket, rocket_mask, settings: Settings
) -> None:
    # cameras and editors write broken EXIF; viewers show the pixels anyway, and so do we
    got = mask_of(encode(rocket, "JPEG", quality=100, subsampling=0, exif=exif), settings)
    assert got.shape == rocket_mask.shape
    assert mad(got, rocket_mask) <= SAME_MAD


# --- ICC profile ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_icc_profile_is_kept_in_the_output(
    fmt: str, astronaut, srgb_icc: bytes, settings: Settings, model_dir
) -> None:
    data = encode(astronaut, "JPEG", quality=92, icc_profile=srgb_icc)
    # JPEG output needs an opaque result
    extra = {"bgcolor": "white"} if fmt == "jpeg" else {}
    out = open_image(cleancut.remove(data, model=MODEL, settings=settings, format=fmt, **extra))
    assert out.info.get("icc_profile") == srgb_icc


def test_an_input_without_profile_gives_an_output_without_profile(
    astronaut, settings: Settings, model_dir
) -> None:
    out = open_image(cleancut.remove(encode(astronaut, "JPEG"), model=MODEL, settings=settings))
    assert not out.info.get("icc_profile")


# --- files that are not images, or broken ones ---------------------------------------------------


def _corrupt_middle(data: bytes, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    mid = len(out) // 2
    out[mid:mid + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    return bytes(out)


def _corrupt_jpeg_huffman_tables(data: bytes, seed: int = 0) -> bytes:
    # libjpeg, like every viewer, recovers from damage in the entropy-coded data; damage in the
    # Huffman tables cannot be recovered from
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    dht = data.find(b"\xff\xc4")
    assert dht > 0
    out[dht + 5:dht + 21] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    return bytes(out)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    return buf.getvalue()


NOT_IMAGES = {
    "empty": b"",
    "text": b"just some text, not an image\n" * 10,
    "pdf": b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer\n%%EOF\n",
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
            b'height="10"><rect width="10" height="10" fill="red"/></svg>\n'),
    "zip": _zip_bytes(),
    "random": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
}


@pytest.mark.parametrize("name", list(NOT_IMAGES))
def test_a_file_that_is_not_an_image_is_an_invalid_file_type(
    name: str, settings: Settings, model_dir
) -> None:
    with pytest.raises(InvalidFileType) as info:
        cleancut.remove(NOT_IMAGES[name], model=MODEL, settings=settings)
    assert info.value.code == "invalid_file_type"
    assert info.value.status == 415


@pytest.mark.parametrize("fmt", ["ICO", "TGA", "PPM"])
def test_an_image_format_outside_the_allow_list_is_an_invalid_file_type(
    fmt: str, settings: Settings, model_dir
) -> None:
    data = encode(Image.new("RGB", (32, 32), "red"), fmt)
    with pytest.raises(InvalidFileType):
        cleancut.remove(data, model=MODEL, settings=settings)


def _photo(fmt: str, astronaut: Image.Image) -> bytes:
    return encode(astronaut, fmt, **({"quality": 92} if fmt == "JPEG" else {}))


@pytest.mark.parametrize(
    ("fmt", "damage"),
    [
        pytest.param("PNG", _corrupt_middle, id="png-random-bytes-in-the-middle"),
        pytest.param("JPEG", _corrupt_jpeg_huffman_tables, id="jpeg-corrupt-huffman-tables"),
        pytest.param("PNG", lambda d: d[: len(d) // 2], id="png-truncated"),
        pytest.param("JPEG", lambda d: d[: len(d) // 2], id="jpeg-truncated"),
        pytest.param("WEBP", lambda d: d[: len(d) // 2], id="webp-truncated"),
        pytest.param("GIF", lambda d: d[: len(d) // 2], id="gif-truncated"),
        pytest.param("TIFF", lambda d: d[: len(d) // 2], id="tiff-truncated"),
        pytest.param("BMP", lambda d: d[: len(d) // 2], id="bmp-truncated"),
        pytest.param("PNG", lambda d: d[:40], id="png-header-only"),
    ],
)
def test_a_damaged_image_fails_to_read(
    fmt: str, damage, astronaut, settings: Settings, model_dir
) -> None:
    data = damage(_photo(fmt, astronaut))
    with pytest.raises(CleancutError) as info:
        cleancut.remove(data, model=MODEL, settings=settings)
    # a typed error with its stable code, never a raw Pillow or OS error
    assert type(info.value) in (FailedToReadImage, InvalidFileType)
    assert info.value.code in ("failed_to_read_image", "invalid_file_type")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_failed_to_read_image(
    fmt: str, astronaut, settings: Settings, model_dir
) -> None:
    data = _photo(fmt, astronaut)
    with pytest.raises(FailedToReadImage) as info:
        cleancut.remove(data[: len(data) // 2], model=MODEL, settings=settings)
    assert info.value.code == "failed_to_read_image"
    assert info.value.status == 422


def test_damaged_files_fail_the_same_way_through_a_path(
    astronaut, tmp_path: Path, settings: Settings, model_dir
) -> None:
    path = tmp_path / "broken.png"
    data = _photo("PNG", astronaut)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FailedToReadImage):
        cleancut.remove(path, model=MODEL, settings=settings)


def test_a_missing_path_is_file_not_found(tmp_path: Path, settings: Settings) -> None:
    with pytest.raises(cleancut.FileNotFound) as info:
        cleancut.remove(tmp_path / "nope.png", model=MODEL, settings=settings)
    assert info.value.code == "file_not_found"


# --- limits: each set just below a fixture -------------------------------------------------------


def _limited(settings: Settings, **limits: int) -> Settings:
    return Settings(model_dir=settings.model_dir, **limits)


def test_a_file_over_the_byte_limit_is_file_too_large(
    astronaut, settings: Settings, model_dir
) -> None:
    data = encode(astronaut)
    with pytest.raises(FileTooLarge) as info:
        limited = _limited(settings, max_upload_bytes=len(data) - 1)
        cleancut.remove(data, model=MODEL, settings=limited)
    assert info.value.code == "file_too_large"
    assert info.value.status == 413
    assert "CLEANCUT_MAX_UPLOAD_BYTES" in str(info.value)
    # exactly at the limit is accepted
    cleancut.remove(data, model=MODEL, settings=_limited(settings, max_upload_bytes=len(data)))


def test_a_path_over_the_byte_limit_is_file_too_large(
    astronaut, tmp_path: Path, settings: Settings, model_dir
) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encode(astronaut))
    limited = _limited(settings, max_upload_bytes=path.stat().st_size - 1)
    with pytest.raises(FileTooLarge):
        cleancut.remove(path, model=MODEL, settings=limited)


def test_an_image_over_the_pixel_limit_is_resolution_too_high(
    astronaut, settings: Settings, model_dir
) -> None:
    w, h = astronaut.size
    data = encode(astronaut)
    with pytest.raises(ResolutionTooHigh) as info:
        cleancut.remove(data, model=MODEL, settings=_limited(settings, max_pixels=w * h - 1))
    assert info.value.code == "resolution_too_high"
    assert info.value.status == 413
    assert "CLEANCUT_MAX_PIXELS" in str(info.value)
    cleancut.remove(data, model=MODEL, settings=_limited(settings, max_pixels=w * h))


def test_an_image_over_the_side_limit_is_resolution_too_high(
    rocket, settings: Settings, model_dir
) -> None:
    data = encode(rocket)
    with pytest.raises(ResolutionTooHigh) as info:
        limited = _limited(settings, max_side_px=rocket.width - 1)
        cleancut.remove(data, model=MODEL, settings=limited)
    assert "CLEANCUT_MAX_SIDE_PX" in str(info.value)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width × height but carries one tiny compressed row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def test_the_pixel_limit_is_checked_from_the_header_before_decoding(
    settings: Settings, model_dir
) -> None:
    # 8000×8000 = 64 MP declared (over the default 40 MP) in a file of a few hundred bytes
    data = _png_header_only(8000, 8000)
    assert len(data) < 1000
    with pytest.raises(ResolutionTooHigh) as info:
        cleancut.remove(data, model=MODEL, settings=settings)
    assert "64.0 MP" in str(info.value)


def test_an_animation_over_the_frame_limit_is_resolution_too_high(
    astronaut, settings: Settings, model_dir
) -> None:
    frames = [astronaut.resize((64, 64)).rotate(angle) for angle in range(0, 40, 10)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50)
    data = buf.getvalue()
    with pytest.raises(ResolutionTooHigh) as info:
        cleancut.remove(data, model=MODEL, settings=_limited(settings, max_frames=3))
    assert "CLEANCUT_MAX_FRAMES" in str(info.value)
    cleancut.remove(data, model=MODEL, settings=_limited(settings, max_frames=4))
