"""Upload preprocessing: the same pixels as training, digits inverted when drawn dark on light paper."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from training.errors import InvalidImage
from training.images import preprocess_image
from training.spec import DATASETS, Dataset

MNIST = DATASETS[Dataset.MNIST]
CATS = DATASETS[Dataset.CATS_VS_DOGS]


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def digit_pixels() -> np.ndarray:
    pixels = np.zeros((28, 28), dtype="uint8")
    pixels[6:22, 12:16] = 255  # a light "1" on black, as MNIST stores digits
    return pixels


def test_a_mnist_style_digit_passes_through_unchanged() -> None:
    batch = preprocess_image(encode(Image.fromarray(digit_pixels()), "PNG"), MNIST)
    assert batch.shape == (1, 28, 28)
    np.testing.assert_allclose(batch[0], digit_pixels(), atol=1e-3)


def test_a_dark_digit_on_white_paper_is_inverted_and_resized() -> None:
    paper = Image.fromarray(255 - digit_pixels()).resize((280, 280), Image.Resampling.NEAREST).convert("RGB")
    batch = preprocess_image(encode(paper, "JPEG"), MNIST)
    assert batch.shape == (1, 28, 28)
    assert batch[0, 0, 0] < 30, "the white background becomes black"
    assert batch[0, 14, 14] > 200, "the dark stroke becomes light"


def test_rgb_uploads_are_resized_to_the_network_input_in_0_255() -> None:
    photo = Image.new("RGB", (300, 200), (200, 100, 50))
    for fmt in ("JPEG", "PNG"):
        batch = preprocess_image(encode(photo, fmt), CATS)
        assert batch.shape == (1, 150, 150, 3)
        np.testing.assert_allclose(batch[0].mean(axis=(0, 1)), [200, 100, 50], atol=3)


def test_a_16_bit_png_is_scaled_like_an_8_bit_one() -> None:
    deep = Image.fromarray(np.full((40, 40), 65535, dtype="uint16"))
    batch = preprocess_image(encode(deep, "PNG"), CATS)
    assert batch.max() == pytest.approx(255, abs=1)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "this file is PDF"),
        (b"plain text, not an image", "not a readable PNG or JPEG"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "this file is GIF"),
        (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "truncated or corrupt"),
    ],
)
def test_what_is_not_a_png_or_jpeg_is_refused_with_a_reason(data: bytes, words: str) -> None:
    with pytest.raises(InvalidImage, match=words):
        preprocess_image(data, CATS)
