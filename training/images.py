"""Image decoding shared by the training pipeline and prediction, so both see the same pixels.

Uploads are hostile until proven otherwise: only PNG and JPEG are parsed at all, the pixel count
is read from the header and checked before anything is decoded, and a file that cannot be decoded
completely is refused. Any encoding of the same picture must give the same pixels: 16-bit depth
is scaled to 8 bits, transparency is composited over white, CMYK and palettes become RGB, and the
EXIF orientation is applied.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import tensorflow as tf
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from config import get_settings
from training.errors import ImageTooLarge, InvalidImage
from training.spec import DatasetInfo

ACCEPTED_FORMATS = ("PNG", "JPEG")
# A light border means a dark digit on paper; MNIST digits are light on black, so such images are inverted.
LIGHT_BACKGROUND_THRESHOLD = 127
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


def decode_rgb(encoded: tf.Tensor, size: tuple[int, ...]) -> tf.Tensor:
    """Decode a PNG/JPEG byte string to float32 RGB pixels in 0..255, resized to `size`."""
    # uint8 whatever the file's depth: a 16-bit PNG is scaled down to 0..255 like every training image.
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(image, size)
    image.set_shape((*size, 3))
    return image


def sniff_format(data: bytes) -> str | None:
    """The name of a known non-PNG/JPEG format from the file's first bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIC"
    return next((name for magic, name in SIGNATURES if data.startswith(magic)), None)


def _too_large(what: str) -> ImageTooLarge:
    limit = get_settings().max_image_pixels
    return ImageTooLarge(
        f"images may have at most {limit:,} pixels ({limit / 1e6:g} megapixels); {what}; send a smaller image "
        "(the network sees it at a few hundred pixels a side anyway)"
    )


def _check_pixels(width: int, height: int) -> None:
    if width * height > get_settings().max_image_pixels:
        raise _too_large(f"this one is {width} x {height} = {width * height:,}")


def open_checked(data: bytes) -> Image.Image:
    """A fully decoded PNG or JPEG; `InvalidImage` (415) or `ImageTooLarge` (413) with a reason otherwise."""
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
            raise _too_large(f"this one is too large to decode safely ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidImage(f"the PNG or JPEG image is truncated or corrupt ({exc}); {ACCEPTED_MESSAGE}") from exc
        # The header alone gives the size: refuse before a single pixel is decompressed.
        _check_pixels(*image.size)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_large(f"this one is too large to decode safely ({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # Truncated or corrupt data: Pillow refuses to guess the missing pixels (LOAD_TRUNCATED_IMAGES is off).
            raise InvalidImage(
                f"the uploaded PNG or JPEG image is truncated or corrupt ({exc}); {ACCEPTED_MESSAGE}"
            ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"images must be PNG or JPEG; this file is {image.format}")
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
    pixels = np.asarray(image).astype("float64")
    return Image.fromarray(np.clip(np.rint(pixels / 257.0), 0, 255).astype("uint8"), mode="L")


def normalized(image: Image.Image) -> Image.Image:
    """The picture as plain 8-bit "L" or "RGB": oriented, 16-bit scaled, transparency over white, CMYK as RGB."""
    image = _oriented(image)
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


def _grayscale_digit(image: Image.Image, size: tuple[int, ...]) -> np.ndarray:
    pixels = np.asarray(image.convert("L"), dtype="float32")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > LIGHT_BACKGROUND_THRESHOLD:
        pixels = 255.0 - pixels
    if pixels.shape == tuple(size):
        # Already the network's size (an MNIST-sized upload): the resize below would return these very pixels
        # (checked exactly), and as an eager TensorFlow op it was the largest cost of a prediction under load.
        return pixels
    resized = tf.image.resize(pixels[..., np.newaxis], size, antialias=True)
    return np.clip(resized.numpy()[..., 0], 0, 255)


def _is_plain(original: Image.Image, image: Image.Image) -> bool:
    """Whether TensorFlow's decoder, the one training used, sees the same picture as `image`."""
    return image is original and image.mode in ("L", "RGB")


def preprocess_image(data: bytes, info: DatasetInfo) -> np.ndarray:
    """One uploaded image as a batch of one, shaped and scaled like the dataset's training inputs."""
    original = open_checked(data)
    image = normalized(original)
    if info.is_grayscale:
        return _grayscale_digit(image, info.input_shape)[np.newaxis]
    size = info.input_shape[:2]
    if _is_plain(original, image):
        # The training pipeline's own decoder: the same pixels the network was trained on.
        try:
            return decode_rgb(tf.constant(data), size).numpy()[np.newaxis]
        except tf.errors.InvalidArgumentError:
            pass  # Pillow read it and TensorFlow cannot: Pillow's pixels below are as good
    pixels = np.asarray(image.convert("RGB"), dtype="float32")
    resized = tf.image.resize(pixels, size)
    return np.asarray(resized.numpy(), dtype="float32")[np.newaxis]
