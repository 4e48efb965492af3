"""Upload preprocessing: the same pixels as training, digits inverted when drawn dark on light paper."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from config import get_settings
from tests.image_corpus import bomb_png, hostile_files, png_declaring, reference_png, valid_encodings
from training.errors import ImageTooLarge, InvalidImage
from training.images import preprocess_image
from training.spec import DATASETS, Dataset, DatasetInfo

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


# --- one picture in every reasonable encoding, and a corpus of hostile files --------------------------


@pytest.mark.parametrize("info", [MNIST, CATS], ids=["mnist", "cats_vs_dogs"])
@pytest.mark.parametrize("name", sorted(valid_encodings()))
def test_every_valid_encoding_of_a_picture_gives_the_same_pixels(name: str, info: DatasetInfo) -> None:
    expected = preprocess_image(reference_png(), info)
    np.testing.assert_allclose(preprocess_image(valid_encodings()[name], info), expected, atol=0.5)


@pytest.mark.parametrize("name", sorted(hostile_files()))
def test_hostile_files_are_refused_with_a_reason(name: str) -> None:
    data, status, words = hostile_files()[name]
    error = ImageTooLarge if status == 413 else InvalidImage
    with pytest.raises(error) as caught:
        preprocess_image(data, MNIST)
    assert words in str(caught.value)


def test_the_bomb_generator_makes_real_pngs() -> None:
    # The same code at a decodable size: a bomb refused above is a real PNG, not a broken file.
    small = Image.open(io.BytesIO(bomb_png(64)))
    small.load()
    assert small.size == (64, 64)
    assert np.asarray(small).max() == 0


def test_pillows_own_bomb_checks_answer_too_large_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the service's cap raised out of the way, Pillow's limits are the guard: its warning range
    # (over MAX_IMAGE_PIXELS) is an error here too, and its error range is refused the same way.
    monkeypatch.setattr(get_settings(), "max_image_pixels", 10**12)
    between = png_declaring(10_000, 10_000, zlib.compress(b"\x00" * 1000))  # 100 M: Pillow only warns
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    for data in (between, bomb_png()):
        with pytest.raises(ImageTooLarge, match="too large to decode safely"):
            preprocess_image(data, MNIST)


def test_the_pixel_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_image_pixels", 100 * 100)
    preprocess_image(encode(Image.new("L", (100, 100)), "PNG"), MNIST)
    with pytest.raises(ImageTooLarge, match=r"at most 10,000 pixels .*this one is 101 x 100"):
        preprocess_image(encode(Image.new("L", (101, 100)), "PNG"), MNIST)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.arange(0, 65536, 257, dtype="uint16"), (28, 1))[:, :28]  # 0, 257, ... -> 0, 1, ...
    batch = preprocess_image(encode(Image.fromarray(ramp), "PNG"), MNIST)
    np.testing.assert_allclose(batch[0], np.tile(np.arange(28, dtype="float32"), (28, 1)), atol=0.5)
