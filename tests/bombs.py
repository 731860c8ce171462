"""A hostile image corpus, built in code at test time (nothing binary is committed).

Every entry is small on the wire (at most a few MB, most a few KB) and would cost gigabytes, or
minutes, if a decoder believed it. Each carries the typed error cleancut must answer with:

- ``ResolutionTooHigh`` (413): the header claims too many pixels, too long a side or too many
  frames; refused before any pixel is decoded;
- ``InvalidFileType`` (415): not one of the allowed formats, whatever the file name says;
- ``FailedToReadImage`` (422): within the limits but broken on purpose (a compressed text or ICC
  chunk that inflates past Pillow's cap).

The PNG bombs carry *real* compressed pixel data of the full claimed size (a deflate stream of
zeros, assembled from one repeated block rather than compressed at test time), so they are what
the reference tool was fed: a 20000×20000 RGB PNG of about 1.2 MB that inflates to 1.2 GB.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

from PIL import Image

from cleancut.errors import (
    CleancutError,
    FailedToReadImage,
    InvalidFileType,
    ResolutionTooHigh,
)

__all__ = ["Bomb", "corpus", "zeros_zlib", "png", "jpeg_with_size", "gif", "tiff", "bmp"]


@dataclass(frozen=True)
class Bomb:
    name: str
    data: bytes
    error: type[CleancutError]  # what decode must raise
    filename: str = "image.png"  # what an attacker would call it in a multipart upload

    @property
    def status(self) -> int:
        return self.error.status


# --- zlib/deflate of zeros, at the maximum ratio, without compressing gigabytes -------------------

_BLOCK = 1 << 20


@cache
def _deflate_block() -> bytes:
    # After Z_FULL_FLUSH the compressor forgets its history, so every 1 MiB block of zeros
    # compresses to the same bytes (1037 of them): the stream is that block repeated.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)


def zeros_zlib(n: int) -> bytes:
    """A valid zlib stream that inflates to ``n`` zero bytes (about n / 1000 bytes long)."""
    blocks, rest = divmod(n, _BLOCK)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflate = _deflate_block() * blocks + tail.compress(bytes(rest)) + tail.flush()
    # Adler-32 of n zeros: A stays 1, B adds A once per byte.
    adler = ((n % 65521) << 16) | 1
    return b"\x78\xda" + deflate + struct.pack(">I", adler)


# --- PNG -----------------------------------------------------------------------------------------

_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of each interlace pass


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw_size(width: int, height: int, bit_depth: int, color_type: int, interlace: int) -> int:
    """Bytes of filtered scanlines (filter byte included) the IDAT stream inflates to."""
    bits = _CHANNELS[color_type] * bit_depth

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if not interlace:
        return rows(width, height)
    return sum(rows((width - x0 + dx - 1) // dx if width > x0 else 0,
                    (height - y0 + dy - 1) // dy if height > y0 else 0)
               for x0, y0, dx, dy in _ADAM7)


def png(width: int, height: int, *, bit_depth: int = 8, color_type: int = 2, interlace: int = 0,
        truncate_idat: int | None = None, before_idat: bytes = b"", after_idat: bytes = b"",
        end: bool = True) -> bytes:
    """A PNG whose IDAT is a full stream of zeros for the claimed size (or its first bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    idat = zeros_zlib(png_raw_size(width, height, bit_depth, color_type, interlace))
    if truncate_idat is not None:
        idat = idat[:truncate_idat]
    plte = chunk(b"PLTE", bytes(range(256)) * 3) if color_type == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + before_idat
            + chunk(b"IDAT", idat) + after_idat + (chunk(b"IEND", b"") if end else b""))


def apng_claiming_frames(frames: int) -> bytes:
    """A 1×1 PNG whose acTL chunk announces ``frames`` animation frames."""
    actl = chunk(b"acTL", struct.pack(">II", frames, 0))
    fctl = chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, 1, 1, 0, 0, 1, 10, 0, 0))
    return png(1, 1, before_idat=actl + fctl)


def ztxt(size: int) -> bytes:
    return chunk(b"zTXt", b"Comment\x00\x00" + zeros_zlib(size))


def iccp(size: int) -> bytes:
    return chunk(b"iCCP", b"icc\x00\x00" + zeros_zlib(size))


# --- JPEG ----------------------------------------------------------------------------------------


def _small_jpeg(progressive: bool) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG", quality=80,
                                                   progressive=progressive)
    return buf.getvalue()


def jpeg_with_size(width: int, height: int, *, progressive: bool = False) -> bytes:
    """A real small JPEG whose SOF0/SOF2 segment is patched to claim ``width``×``height``."""
    data = bytearray(_small_jpeg(progressive))
    sof = b"\xff\xc2" if progressive else b"\xff\xc0"
    at = data.find(sof)
    assert at > 0, "Pillow wrote no frame header of the expected kind"
    # marker(2) length(2) precision(1) height(2) width(2)
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# --- WebP ----------------------------------------------------------------------------------------


def _riff(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    out, at = [], 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        out.append((kind, data[at + 8:at + 8 + size]))
        at += 8 + size + (size & 1)
    return out


def _pack_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(k + struct.pack("<I", len(b)) + b + (b"\x00" if len(b) & 1 else b"")
                    for k, b in chunks)


def _animated_webp(frames: int = 2) -> bytes:
    ims = [Image.new("RGBA", (4, 4), (i * 60 % 256, 0, 0, 255)) for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, "WEBP", save_all=True, append_images=ims[1:], lossless=True, duration=10)
    return buf.getvalue()


def webp_canvas(width: int, height: int) -> bytes:
    """An animated WebP (VP8X) whose canvas is patched to ``width``×``height``."""
    chunks = _webp_chunks(_animated_webp())
    kind, vp8x = chunks[0]
    assert kind == b"VP8X"
    patched = vp8x[:4] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff(_pack_chunks([(kind, patched), *chunks[1:]]))


def webp_vp8l_size(width: int, height: int) -> bytes:
    """A still lossless WebP whose VP8L header is patched to ``width``×``height`` (≤ 16384)."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 90, 0)).save(buf, "WEBP", lossless=True)
    chunks = _webp_chunks(buf.getvalue())
    out = []
    for kind, body in chunks:
        if kind == b"VP8L":
            bits = int.from_bytes(body[1:5], "little")
            bits = (bits & ~0xFFFFFFF) | (width - 1) | ((height - 1) << 14)
            body = body[:1] + bits.to_bytes(4, "little") + body[5:]
        out.append((kind, body))
    return _riff(_pack_chunks(out))


def webp_frames(frames: int) -> bytes:
    """An animated WebP with ``frames`` frames: one real frame's ANMF chunk repeated."""
    chunks = _webp_chunks(_animated_webp())
    anmf = [c for c in chunks if c[0] == b"ANMF"]
    head = [c for c in chunks if c[0] != b"ANMF"]
    return _riff(_pack_chunks(head + [anmf[0]] * frames))


# --- GIF -----------------------------------------------------------------------------------------

_GIF_PIXEL = b"\x02\x02\x44\x01\x00"  # LZW, min code size 2: clear, index 0, end


def gif(screen: tuple[int, int], frames: int = 1, frame_size: tuple[int, int] = (1, 1)) -> bytes:
    """A GIF with a logical screen of ``screen`` and ``frames`` frames of ``frame_size``.

    The frames carry one pixel of data each, however large they claim to be.
    """
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    gce = b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # 10 ms, no disposal
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, *frame_size, 0) + _GIF_PIXEL
    return head + (gce + image) * frames + b";"


# --- TIFF ----------------------------------------------------------------------------------------


def tiff(width: int, height: int, pages: int = 1) -> bytes:
    """A little-endian greyscale TIFF; every page is ``width``×``height`` over one data byte."""
    entries = 9
    ifd_size = 2 + 12 * entries + 4
    data_at = 8
    first_ifd = data_at + 2  # one byte of pixels, padded to a word boundary
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + b"\x00\x00")
    for page in range(pages):
        at = first_ifd + page * ifd_size
        nxt = at + ifd_size if page + 1 < pages else 0
        tags = [
            (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, data_at), (277, 3, 1), (278, 4, height), (279, 4, 1),
        ]
        out += struct.pack("<H", entries)
        for tag, kind, value in tags:
            out += struct.pack("<HHI", tag, kind, 1)
            out += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<I", nxt)
    return bytes(out)


# --- BMP -----------------------------------------------------------------------------------------


def bmp(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming ``width``×``height`` (negative height: top-down) and 16 bytes
    of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = info + bytes(16)
    return b"BM" + struct.pack("<IHHI", 14 + len(body), 0, 0, 54) + body


# --- not images at all, whatever they are called ------------------------------------------------

_SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100000" '
        b'height="100000"><image href="file:///etc/passwd"/><script>alert(1)</script></svg>')
_PDF = (b"%PDF-1.7\n1 0 obj<</Type/Catalog/Pages 2 0 R/OpenAction<</S/JavaScript/JS(app.alert(1))"
        b">>>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
_HTML = b"<!DOCTYPE html><html><body><script>fetch('/api/models')</script></body></html>"
_EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(/etc/passwd) (r) file\nshowpage\n"


def _ico() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, "ICO")
    return buf.getvalue()


def _pcx() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PCX")
    return buf.getvalue()


# --- the corpus ----------------------------------------------------------------------------------

MB = 1_000_000


@cache
def corpus() -> tuple[Bomb, ...]:
    """Every bomb, built once per process (about 6 MB in all)."""
    too_big, unreadable, not_image = ResolutionTooHigh, FailedToReadImage, InvalidFileType
    return (
        # PNG: the reference tool's two cases, and the header variants that reach the same place
        Bomb("png_20000x20000_rgb", png(20_000, 20_000), too_big),
        Bomb("png_13000x13000_rgb", png(13_000, 13_000), too_big),
        Bomb("png_20000x20000_truncated", png(20_000, 20_000, truncate_idat=4096, end=False),
             too_big),
        Bomb("png_20000x20000_interlaced", png(20_000, 20_000, interlace=1), too_big),
        Bomb("png_12000x12000_rgba16", png(12_000, 12_000, bit_depth=16, color_type=6), too_big),
        Bomb("png_20000x20000_palette", png(20_000, 20_000, color_type=3), too_big),
        Bomb("png_65535x65535_1bit", png(65_535, 65_535, bit_depth=1, color_type=0), too_big),
        Bomb("png_30000x1000_side", png(30_000, 1_000), too_big),
        Bomb("apng_1000000_frames", apng_claiming_frames(1_000_000), too_big),
        # PNG ancillary chunks that inflate: Pillow caps them (MAX_TEXT_CHUNK) and says so
        Bomb("png_ztxt_1gb", png(8, 8, before_idat=ztxt(1_000 * MB)), unreadable),
        Bomb("png_ztxt_1gb_after_idat", png(8, 8, after_idat=ztxt(1_000 * MB)), unreadable),
        Bomb("png_iccp_1gb", png(8, 8, before_idat=iccp(1_000 * MB)), unreadable),
        # JPEG: progressive and baseline frame headers, patched
        Bomb("jpeg_progressive_60000x60000", jpeg_with_size(60_000, 60_000, progressive=True),
             too_big, "photo.jpg"),
        Bomb("jpeg_baseline_65500x65500", jpeg_with_size(65_500, 65_500), too_big, "photo.jpg"),
        Bomb("jpeg_progressive_20000x1000_side",
             jpeg_with_size(20_000, 1_000, progressive=True), too_big, "photo.jpg"),
        # WebP: canvas and bitstream headers, and frame count
        Bomb("webp_vp8x_canvas_16777216", webp_canvas(1 << 24, 1 << 24), too_big, "a.webp"),
        Bomb("webp_vp8l_16384x16384", webp_vp8l_size(16_384, 16_384), too_big, "a.webp"),
        Bomb("webp_5000_frames", webp_frames(5_000), too_big, "a.webp"),
        # GIF: logical screen, one huge frame, frame count
        Bomb("gif_65535x65535_screen", gif((65_535, 65_535)), too_big, "a.gif"),
        Bomb("gif_frame_65535x65535", gif((1, 1), frame_size=(65_535, 65_535)), too_big, "a.gif"),
        Bomb("gif_5000_frames", gif((64, 64), frames=5_000), too_big, "a.gif"),
        Bomb("gif_6000x6000_5000_frames", gif((6_000, 6_000), frames=5_000), too_big, "a.gif"),
        # TIFF: dimensions and pages
        Bomb("tiff_100000x100000", tiff(100_000, 100_000), too_big, "scan.tif"),
        Bomb("tiff_2000_pages", tiff(1, 1, pages=2_000), too_big, "scan.tif"),
        # BMP: bottom-up and top-down
        Bomb("bmp_60000x60000", bmp(60_000, 60_000), too_big, "a.bmp"),
        Bomb("bmp_60000x-60000_topdown", bmp(60_000, -60_000), too_big, "a.bmp"),
        # not an allowed image, whatever its name
        Bomb("svg_as_png", _SVG, not_image),
        Bomb("pdf_as_png", _PDF, not_image),
        Bomb("html_as_png", _HTML, not_image),
        Bomb("eps_as_png", _EPS, not_image),
        Bomb("ico_as_png", _ico(), not_image),
        Bomb("pcx_as_png", _pcx(), not_image),
        Bomb("empty_png", b"", not_image),
    )
