"""Images made in code for the upload tests: one picture in many valid encodings, and hostile files.

The picture is a digit drawn dark on white paper, built from flat 8x8 blocks aligned with JPEG's
blocks, so that even a JPEG of it (at quality 100) decodes to nearly the same pixels: every valid
encoding below must give the same prediction.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BLOCK = 8  # one digit pixel = one 8x8 JPEG block
ORIENTATION = 0x0112  # the EXIF tag


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def digit_on_paper() -> np.ndarray:
    """A 224x224 8-bit picture: a grey-and-black "7" on white, in flat 8x8 blocks."""
    small = np.full((28, 28), 255, dtype="uint8")
    small[5:8, 6:22] = 0  # the bar
    for row in range(8, 23):  # the stem, leaning left
        column = 20 - (row - 8) // 2
        small[row, column - 2 : column + 1] = 0
    small[14:16, 10:18] = 128  # a grey crossbar, so grey levels are compared too
    return np.kron(small, np.ones((BLOCK, BLOCK), dtype="uint8"))


def reference_png() -> bytes:
    return encode(Image.fromarray(digit_on_paper(), mode="L"), "PNG")


def valid_encodings() -> dict[str, bytes]:
    """The same picture, encoded every way an upload may reasonably come."""
    pixels = digit_on_paper()
    gray = Image.fromarray(pixels, mode="L")
    rgb = gray.convert("RGB")

    # 16-bit grey: v * 257 spans 0..65535 exactly as v spans 0..255.
    deep = Image.fromarray(pixels.astype("uint16") * 257)

    # Transparent where the paper is, with a garish colour under the transparency: over white it is paper again.
    rgba = np.dstack([np.asarray(rgb), np.full(pixels.shape, 255, dtype="uint8")])
    paper = pixels == 255
    rgba[paper] = (200, 30, 90, 0)

    # Stored turned a quarter left, with orientation 6 ("rotate 90 clockwise to show"): upright once applied.
    turned = rgb.transpose(Image.Transpose.ROTATE_90)
    exif = turned.getexif()
    exif[ORIENTATION] = 6

    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return {
        "8-bit grey PNG": reference_png(),
        "RGB PNG": encode(rgb, "PNG"),
        "RGB JPEG": encode(rgb, "JPEG", quality=100, subsampling=0),
        "grey JPEG": encode(gray, "JPEG", quality=100),
        "16-bit grey PNG": encode(deep, "PNG"),
        "RGBA PNG with transparent paper": encode(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        "CMYK JPEG": encode(rgb.convert("CMYK"), "JPEG", quality=100),
        "palette PNG": encode(palette, "PNG"),
        "palette PNG with a transparent colour": encode(palette, "PNG", transparency=_paper_index(palette)),
        "EXIF-rotated JPEG": encode(turned, "JPEG", quality=100, subsampling=0, exif=exif),
    }


def _paper_index(palette: Image.Image) -> int:
    colours = palette.getpalette() or []
    triples = [tuple(colours[i : i + 3]) for i in range(0, len(colours), 3)]
    return triples.index((255, 255, 255))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose IHDR (with a correct CRC) says `width` x `height`, 8-bit grey, followed by `idat`."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@lru_cache
def bomb_png(side: int = 30_000) -> bytes:
    """A real `side` x `side` one-colour PNG: 900 megapixels at the default, under a megabyte compressed."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte 0, then a black row
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    return png_declaring(side, side, b"".join(parts))


@lru_cache
def deep_png(width: int = 6000, height: int = 6600, depth: int = 16) -> bytes:
    """A real grey PNG (16-bit, or 8-bit), dark on the left and white on the right: 75.5 MiB of 16-bit pixels at the
    default size, in about 100 KB (every row is the same). Under the pixel cap; what it costs decoded is what it must
    be refused for."""
    white = b"\xff" * (depth // 8)
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(len(white)) * (width // 2) + white * (width - width // 2)  # filter 0, then the pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def hostile_files() -> dict[str, tuple[bytes, int, str]]:
    """name -> (file, expected HTTP status, words the refusal must contain)."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype="uint8"))
    png, jpeg = encode(noise, "PNG"), encode(noise, "JPEG", quality=90)
    small = Image.new("RGB", (16, 16), (10, 20, 30))
    return {
        "zero bytes": (b"", 415, "empty"),
        "text": (b"hello, this is not an image\n" * 10, 415, "not a readable PNG or JPEG"),
        "truncated PNG": (png[: len(png) // 2], 415, "truncated or corrupt"),
        "truncated JPEG": (jpeg[: len(jpeg) // 2], 415, "truncated or corrupt"),
        "GIF": (encode(small, "GIF"), 415, "this file is GIF"),
        "TIFF": (encode(small, "TIFF"), 415, "this file is TIFF"),
        "WebP": (encode(small, "WEBP"), 415, "this file is WEBP"),
        "BMP": (encode(small, "BMP"), 415, "this file is BMP"),
        "30000 x 30000 decompression bomb": (bomb_png(), 413, "40 megapixels"),
        "PNG header claiming 8000 x 8000": (
            png_declaring(8000, 8000, zlib.compress(b"\x00" * 1000)),
            413,
            "this one is 8000 x 8000 = 64,000,000",
        ),
        "16-bit grey PNG of 6000 x 6600 in 80 KB": (
            deep_png(),
            413,
            "this image is 6000 x 6600 pixels of 16-bit grey (2 bytes each): 75.5 MiB decoded",
        ),
        "PNG header claiming 100000 x 100000": (
            png_declaring(100_000, 100_000, zlib.compress(b"\x00" * 1000)),
            413,
            "40 megapixels",
        ),
    }
