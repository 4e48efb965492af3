"""Image decoding shared by the training pipeline and prediction, so both see the same pixels."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from training.errors import InvalidImage
from training.spec import DatasetInfo

ACCEPTED_FORMATS = ("PNG", "JPEG")
# A light border means a dark digit on paper; MNIST digits are light on black, so such images are inverted.
LIGHT_BACKGROUND_THRESHOLD = 127


def decode_rgb(encoded: tf.Tensor, size: tuple[int, ...]) -> tf.Tensor:
    """Decode a PNG/JPEG byte string to float32 RGB pixels in 0..255, resized to `size`."""
    # uint8 whatever the file's depth: a 16-bit PNG is scaled down to 0..255 like every training image.
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(image, size)
    image.set_shape((*size, 3))
    return image


def _open_checked(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("the uploaded file is empty; send a PNG or JPEG image in the multipart field 'file'")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(
            "the uploaded file is not a readable PNG or JPEG image; send the image file itself in the multipart "
            "field 'file'"
        ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidImage(f"images must be PNG or JPEG; this file is {image.format}")
    return image


def _grayscale_digit(image: Image.Image, size: tuple[int, ...]) -> np.ndarray:
    pixels = np.asarray(image.convert("L"), dtype="float32")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > LIGHT_BACKGROUND_THRESHOLD:
        pixels = 255.0 - pixels
    resized = tf.image.resize(pixels[..., np.newaxis], size, antialias=True)
    return np.clip(resized.numpy()[..., 0], 0, 255)


def preprocess_image(data: bytes, info: DatasetInfo) -> np.ndarray:
    """One uploaded image as a batch of one, shaped and scaled like the dataset's training inputs."""
    image = _open_checked(data)
    if info.is_grayscale:
        return _grayscale_digit(image, info.input_shape)[np.newaxis]
    try:
        return decode_rgb(tf.constant(data), info.input_shape[:2]).numpy()[np.newaxis]
    except tf.errors.InvalidArgumentError as exc:
        # Pillow read it, TensorFlow cannot (e.g. a CMYK JPEG): still the upload's fault, not the server's.
        raise InvalidImage(
            f"this image cannot be decoded as RGB ({exc.message}); save it as an RGB PNG or JPEG"
        ) from exc
