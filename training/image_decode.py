"""Image decoding with Pillow alone, shared by prediction and dataset uploads. No TensorFlow here: the API and the
upload checks import it, and the API loads TensorFlow only on a prediction.

Uploads are hostile until proven otherwise: only PNG and JPEG are parsed at all, the pixel count
and the memory the decoded image takes (width x height x bytes per pixel) are read from the header
and checked against `DecodeLimits` before anything is decoded, and a file that cannot be decoded
completely is refused. Any encoding of the same picture must give the same pixels: 16-bit depth
is scaled to 8 bits, transparency is composited over white, CMYK and palettes become RGB, and the
EXIF orientation is applied.

What decoding costs is bounded by the limits, not by the file's size (a 77 KB PNG can declare 40
megapixels of 16-bit grey): a JPEG is decoded at a reduced scale (Pillow's draft mode) when it is
much larger than the target size, and any image still that large is shrunk (box filter, in its
own 8- or 16-bit depth) to a working size before a float copy of it is made. The limits are passed
in by the caller: this module reads no service settings.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from training.errors import ImageTooLarge, InvalidImage
from training.image_limits import DecodeLimits, MiB

ACCEPTED_FORMATS = ("PNG", "JPEG")
# Transparent pixels become paper: a digit drawn in dark ink on a transparent canvas then reads as ink on
# white, which the inversion above turns into MNIST's light-on-black. (Light ink on a transparent canvas
# would vanish; that is the rarer export.)
BACKGROUND = (255, 255, 255)
# Leading bytes of formats people send by mistake, so the refusal can name what was sent without
# handing the file to a parser for a format the service does not accept.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
)
ACCEPTED_MESSAGE = "send a PNG or JPEG image in the multipart field 'file'"
# Bytes per pixel of a decoded image in Pillow's memory, by mode: 8-bit grey and palettes take one, 16-bit grey
# two, every other mode (RGB included, stored as RGBX) four.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_MODE_NAMES = {"1": "1-bit", "L": "8-bit grey", "P": "palette", "I": "32-bit grey", "RGB": "RGB", "RGBA": "RGBA"}
# An image is shrunk before any float copy once it is at least twice this in both directions: far more than the
# network's input (28 or 150 pixels a side), so the final antialiased resize still sees every detail it can keep.
WORKING_SIDE_MIN = 1024
WORKING_SIDE_PER_INPUT = 8


def bytes_per_pixel(mode: str) -> int:
    """Bytes one pixel of a decoded image in `mode` takes in Pillow's memory."""
    return _BYTES_PER_PIXEL.get(mode, 2 if mode.startswith("I;16") else 4)


def decoded_bytes(image: Image.Image) -> int:
    """The memory `image` takes once decoded, from its header: width x height x bytes per pixel."""
    return image.size[0] * image.size[1] * bytes_per_pixel(image.mode)


def working_size(size: tuple[int, ...]) -> tuple[int, int]:
    """The (width, height) an upload is decoded or shrunk to, at least, for a network input of `size` (rows, cols)."""
    rows, cols = int(size[0]), int(size[1])
    return max(WORKING_SIDE_MIN, WORKING_SIDE_PER_INPUT * cols), max(WORKING_SIDE_MIN, WORKING_SIDE_PER_INPUT * rows)


def sniff_format(data: bytes) -> str | None:
    """The name of a known non-PNG/JPEG format from the file's first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIC"
    return next((name for magic, name in SIGNATURES if data.startswith(magic)), None)


def _too_large(what: str, limits: DecodeLimits) -> ImageTooLarge:
    limit = limits.max_pixels
    return ImageTooLarge(
        f"images may have at most {limit:,} pixels ({limit / 1e6:g} megapixels); {what}; send a smaller image "
        "(the network sees it at a few hundred pixels a side anyway)"
    )


def _check_cost(image: Image.Image, limits: DecodeLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _too_large(f"this one is {width} x {height} = {width * height:,}", limits)
    cost = decoded_bytes(image)
    if cost > limits.max_bytes:
        # The same aspect ratio at the size that fits: what to resize to, rather than only what is wrong.
        scale = math.sqrt(limits.max_bytes / cost)
        fits = f"{max(1, math.floor(width * scale))} x {max(1, math.floor(height * scale))}"
        kind = _MODE_NAMES.get(image.mode, "16-bit grey" if image.mode.startswith("I;16") else image.mode)
        raise ImageTooLarge(
            f"this image is {width} x {height} pixels of {kind} ({bytes_per_pixel(image.mode)} bytes each): "
            f"{cost / MiB:.1f} MiB decoded, and an image may take at most {limits.max_bytes / MiB:g} MiB decoded; "
            f"resize it to at most {fits} pixels (the network sees it at a few hundred pixels a side anyway)"
        )


def open_header(data: bytes, limits: DecodeLimits, size: tuple[int, ...] | None = None) -> Image.Image:
    """A PNG or JPEG with its header read and nothing decoded, checked against `limits`; for a network input of
    `size`, a large JPEG is set to decode at a reduced scale first. `InvalidImage` (415) or `ImageTooLarge` (413)."""
    return open_for_decoding(data, limits, size)[0]


def open_for_decoding(
    data: bytes, limits: DecodeLimits, size: tuple[int, ...] | None
) -> tuple[Image.Image, tuple[int, int]]:
    """`open_header`'s image, and its size in the file (before any reduced-scale decoding)."""
    if not data:
        raise InvalidImage(f"the uploaded file is empty; {ACCEPTED_MESSAGE}")
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that: a bomb is an error here, whatever its size.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
        except UnidentifiedImageError as exc:
            sent = sniff_format(data)
            if sent is not None:
                raise InvalidImage(f"images must be PNG or JPEG; this file is {sent}; convert it") from exc
            raise InvalidImage(f"the uploaded file is not a readable PNG or JPEG image; {ACCEPTED_MESSAGE}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(f"this one is too large to decode safely ({exc})", limits) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"the PNG or JPEG image is truncated or corrupt ({exc}); {ACCEPTED_MESSAGE}") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"images must be PNG or JPEG; this file is {image.format}")
    in_file = image.size
    if size is not None and image.format == "JPEG":
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for the cost of that scale: never smaller than the working size.
        image.draft(image.mode, working_size(size))
    # The header alone gives the size and depth: refuse before a single pixel is decompressed.
    _check_cost(image, limits)
    return image, in_file


def decode_cost(data: bytes, limits: DecodeLimits, size: tuple[int, ...] | None = None) -> int:
    """The bytes decoding this upload takes (see `open_header`), read from its header; refused as `open_header`."""
    return decoded_bytes(open_header(data, limits, size))


def load_pixels(image: Image.Image, limits: DecodeLimits) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(f"this one is too large to decode safely ({exc})", limits) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Truncated or corrupt data: Pillow refuses to guess the missing pixels (LOAD_TRUNCATED_IMAGES is off).
            raise InvalidImage(
                f"the uploaded PNG or JPEG image is truncated or corrupt ({exc}); {ACCEPTED_MESSAGE}"
            ) from exc
    return image


def _oriented(image: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation; the same object when it already is."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (1, None):
            return image
        return ImageOps.exif_transpose(image)
    except Exception:
        # A broken EXIF block is metadata damage, not image damage: use the pixels as stored.
        return image


def _to_8_bit(image: Image.Image) -> Image.Image:
    # 16-bit grey ("I;16", or "I" once widened) spans 0..65535: scale it, as convert("L") would clip it to 255.
    # In integers: (v + 128) // 257 is round(v / 257) exactly (no v is a tie), without a float copy of the image.
    pixels = np.clip(np.asarray(image), 0, 65535).astype("uint32")
    return Image.fromarray(((pixels + 128) // 257).astype("uint8"), mode="L")


def _shrunk(image: Image.Image, working: tuple[int, int] | None) -> Image.Image:
    """`image` box-filtered down by a whole factor while it stays at least `working` (width, height); the same
    object when it is not twice that. In the image's own depth (8 or 16 bits): no float copy at full size."""
    if working is None:
        return image
    factor = min(image.size[0] // working[0], image.size[1] // working[1])
    if factor < 2:
        return image
    small = (math.ceil(image.size[0] / factor), math.ceil(image.size[1] / factor))
    return image.resize(small, Image.Resampling.BOX)  # palettes: nearest (Pillow's rule for "P")


def normalized(image: Image.Image, working: tuple[int, int] | None = None) -> Image.Image:
    """The picture as plain 8-bit "L" or "RGB": oriented, 16-bit scaled, transparency over white, CMYK as RGB;
    shrunk first to no less than `working` (width, height) when it is much larger."""
    image = _shrunk(_oriented(image), working)
    if image.mode.startswith("I;16") or image.mode == "I":
        return _to_8_bit(image)
    if image.mode in ("P", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")  # palettes, and tRNS colour keys, as real alpha
    if image.mode in ("LA", "La", "RGBA", "RGBa"):
        paper = Image.new("RGB", image.size, BACKGROUND)
        paper.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return paper
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("RGB")  # CMYK, YCbCr, 1-bit...


def decode_normalized(data: bytes, limits: DecodeLimits, size: tuple[int, ...] | None = None) -> Image.Image:
    """A PNG or JPEG decoded within `limits` as plain 8-bit "L" or "RGB" (see `normalized`); for a target of `size`
    (rows, cols), a much larger image is decoded at a reduced scale or shrunk first. Refused as `open_header`."""
    image, _ = open_for_decoding(data, limits, size)
    return normalized(load_pixels(image, limits), None if size is None else working_size(size))
