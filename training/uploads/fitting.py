"""Images fitted to the dataset's input shape: the defaults (size and colour) from what the upload holds, and the
resize, crop or pad of one decoded image into its uint8 slot. Pillow alone; no TensorFlow here."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import ExifTags, Image, ImageOps

from training.uploads.caps import DEFAULT_MAX_SIDE, ColorMode, Fit

# Pillow's bilinear filter widens its support when shrinking, so it is antialiased, and it is the cheapest that is.
RESAMPLE = Image.Resampling.BILINEAR
# Letterbox bars: black, the background of MNIST-like data (and neutral for photos).
PAD_GREY = 0
# Modes whose every pixel is grey: an image in one of them adds nothing to an RGB dataset.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# EXIF orientations that turn the picture a quarter: the stored width is its height once upright.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of `image` once turned upright by its EXIF orientation, from its header alone."""
    width, height = image.size
    if image.format != "JPEG" and "exif" not in image.info:
        # A PNG's EXIF may follow its pixels: asking for it would decode the image. One before them is in `info`.
        return height, width
    try:
        turned = image.getexif().get(ExifTags.Base.Orientation, 1) in _QUARTER_TURNS
    except Exception:
        turned = False  # a broken EXIF block: decoding ignores it too (training.image_decode)
    return (width, height) if turned else (height, width)


def is_grey(image: Image.Image) -> bool:
    """Whether `image`'s mode (from its header) holds only grey pixels."""
    return image.mode in GREY_MODES


def default_size(sizes: Counter[tuple[int, int]], max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """The most common (height, width) (among equals, the smaller area, then the smaller height), shrunk to at
    most `max_side` on its longer side with its aspect kept."""
    (height, width), _ = min(sizes.items(), key=lambda item: (-item[1], item[0][0] * item[0][1], item[0]))
    longer = max(height, width)
    if longer <= max_side:
        return height, width
    scale = max_side / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_image(image: Image.Image, size: tuple[int, int], fit: Fit, color: ColorMode) -> np.ndarray:
    """`image` (plain "L" or "RGB") as uint8 pixels of `size` (height, width), [H, W] grey or [H, W, 3] RGB."""
    image = image.convert("L" if color is ColorMode.GRAYSCALE else "RGB")
    height, width = size
    if image.size != (width, height):
        if fit is Fit.CROP:
            image = ImageOps.fit(image, (width, height), method=RESAMPLE)
        elif fit is Fit.PAD:
            fill: int | tuple[int, int, int] = PAD_GREY if image.mode == "L" else (PAD_GREY,) * 3
            image = ImageOps.pad(image, (width, height), method=RESAMPLE, color=fill)
        else:
            image = image.resize((width, height), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)
