"""Image preprocessing for prediction, shaped and scaled like the training pipeline's inputs, so both see the same
pixels. The decoding itself, and what it may cost, is `training.image_decode`'s (Pillow alone); this module adds the
TensorFlow steps: the training pipeline's own decoder, and the resize to the network's input.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image

from training.image_decode import (
    decode_cost as decode_cost,
)
from training.image_decode import (
    load_pixels,
    normalized,
    open_for_decoding,
    working_size,
)
from training.image_limits import DecodeLimits as DecodeLimits
from training.spec import DatasetInfo
from training.uploads.caps import ColorMode, Fit
from training.uploads.fitting import fit_image

# A light border means a dark digit on paper; MNIST digits are light on black, so such images are inverted.
LIGHT_BACKGROUND_THRESHOLD = 127


def decode_rgb(encoded: tf.Tensor, size: tuple[int, ...]) -> tf.Tensor:
    """Decode a PNG/JPEG byte string to float32 RGB pixels in 0..255, resized to `size`."""
    # uint8 whatever the file's depth: a 16-bit PNG is scaled down to 0..255 like every training image.
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(image, size)
    image.set_shape((*size, 3))
    return image


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


def _is_plain(original: Image.Image, image: Image.Image, in_file: tuple[int, int]) -> bool:
    """Whether TensorFlow's decoder, the one training used, sees the same picture as `image` (and at no more cost:
    an image decoded at a reduced scale or shrunk is not plain)."""
    return image is original and image.mode in ("L", "RGB") and image.size == in_file


def preprocess_image(data: bytes, info: DatasetInfo, limits: DecodeLimits | None = None) -> np.ndarray:
    """One uploaded image as a batch of one, shaped and scaled like the dataset's training inputs."""
    limits = limits or DecodeLimits()
    size = info.input_shape[:2]
    header, in_file = open_for_decoding(data, limits, size)
    original = load_pixels(header, limits)
    image = normalized(original, working_size(size))
    if not info.builtin:
        # An uploaded dataset's images were decoded and fitted just so when it was prepared (training/uploads).
        color = ColorMode.GRAYSCALE if info.is_grayscale else ColorMode.RGB
        pixels = fit_image(image, (size[0], size[1]), Fit(info.fit), color)
        return pixels.astype("float32")[np.newaxis]
    if info.is_grayscale:
        return _grayscale_digit(image, info.input_shape)[np.newaxis]
    if _is_plain(original, image, in_file):
        # The training pipeline's own decoder: the same pixels the network was trained on.
        try:
            return decode_rgb(tf.constant(data), size).numpy()[np.newaxis]
        except tf.errors.InvalidArgumentError:
            pass  # Pillow read it and TensorFlow cannot: Pillow's pixels below are as good
    pixels = np.asarray(image.convert("RGB"), dtype="float32")
    resized = tf.image.resize(pixels, size)
    return np.asarray(resized.numpy(), dtype="float32")[np.newaxis]
