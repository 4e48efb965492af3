"""Upload preprocessing: the same pixels as training, digits inverted when drawn dark on light paper."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.image_corpus import bomb_png, deep_png, hostile_files, png_declaring, reference_png, valid_encodings
from training.errors import ImageTooLarge, InvalidImage
from training.images import DecodeLimits, decode_cost, preprocess_image
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


def test_pillows_own_bomb_checks_answer_too_large_not_a_crash() -> None:
    # With the service's caps raised out of the way, Pillow's limits are the guard: its warning range
    # (over MAX_IMAGE_PIXELS) is an error here too, and its error range is refused the same way.
    unlimited = DecodeLimits(max_pixels=10**12, max_bytes=10**12)
    between = png_declaring(10_000, 10_000, zlib.compress(b"\x00" * 1000))  # 100 M: Pillow only warns
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    for data in (between, bomb_png()):
        with pytest.raises(ImageTooLarge, match="too large to decode safely"):
            preprocess_image(data, MNIST, unlimited)


def test_the_pixel_cap_is_a_parameter() -> None:
    limits = DecodeLimits(max_pixels=100 * 100)
    preprocess_image(encode(Image.new("L", (100, 100)), "PNG"), MNIST, limits)
    with pytest.raises(ImageTooLarge, match=r"at most 10,000 pixels .*this one is 101 x 100"):
        preprocess_image(encode(Image.new("L", (101, 100)), "PNG"), MNIST, limits)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.arange(0, 65536, 257, dtype="uint16"), (28, 1))[:, :28]  # 0, 257, ... -> 0, 1, ...
    batch = preprocess_image(encode(Image.fromarray(ramp), "PNG"), MNIST)
    np.testing.assert_allclose(batch[0], np.tile(np.arange(28, dtype="float32"), (28, 1)), atol=0.5)


# --- what decoding costs: bounded by the limits, not by the file's size -----------------------------


def test_a_deep_png_is_refused_from_its_header_saying_what_to_resize_it_to() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        preprocess_image(deep_png(), MNIST)  # 80 KB of file, 75.5 MiB of pixels: under the pixel cap
    message = str(caught.value)
    assert "6000 x 6600 pixels of 16-bit grey" in message and "at most 64 MiB decoded" in message
    fits = message.split("resize it to at most ")[1].split(" pixels")[0]
    width, height = (int(side) for side in fits.split(" x "))
    assert width * height * 2 <= 64 * 2**20 < (width + 1) * (height + 1) * 2, "the size offered is the one that fits"
    # Within limits that allow it, the same file decodes, and to the right picture: dark left half, white right.
    picture = preprocess_image(deep_png(), CATS, DecodeLimits(max_bytes=2**30))[0]
    assert picture[:, :74].max() < 1 and picture[:, 76:].min() > 254


def test_a_large_jpeg_is_decoded_at_a_reduced_scale() -> None:
    photo = Image.new("RGB", (4800, 3200), (200, 100, 50))
    data = encode(photo, "JPEG")
    # 4800 x 3200 RGB takes 58.6 MiB decoded; at half scale, which keeps both sides over the 1200-pixel working
    # size of a 150-pixel input, 14.6 MiB: within a cap of 16 MiB that the full image is far over.
    assert decode_cost(data, DecodeLimits(), CATS.input_shape[:2]) == 2400 * 1600 * 4
    batch = preprocess_image(data, CATS, DecodeLimits(max_bytes=16 * 2**20))
    np.testing.assert_allclose(batch[0].mean(axis=(0, 1)), [200, 100, 50], atol=3)


# Decodes a flood of 6000 x 6600 16-bit PNGs, as the service's defaults refuse them and with limits that allow them,
# and prints how far the process's peak memory (ru_maxrss: kilobytes on Linux) rose over what was resident before.
FLOOD_SCRIPT = """
import resource, sys
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from training.errors import ImageTooLarge
from training.images import preprocess_image
from training.spec import DATASETS, Dataset

deep = Path(sys.argv[1]).read_bytes()
infos = [DATASETS[Dataset.MNIST], DATASETS[Dataset.CATS_VS_DOGS]]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
warm = Path(sys.argv[1]).with_name("warm.png")
Image.fromarray(np.zeros((1320, 1200), dtype="uint8")).save(warm)
for info in infos:  # TensorFlow's first resize allocates its pools: part of the baseline, not of the flood
    preprocess_image(warm.read_bytes(), info)
try:  # Linux: the peak starts again from what is resident now (importing TensorFlow peaks higher than it stays)
    Path("/proc/self/clear_refs").write_text("5")
    baseline = peak()
except OSError:  # otherwise from what is resident now: an earlier, higher peak only adds to the growth
    baseline = psutil.Process().memory_info().rss
refused = 0
for i in range(int(sys.argv[2])):
    try:
        preprocess_image(deep, infos[i % 2])
    except ImageTooLarge:
        refused += 1
print(refused, peak() - baseline)
from training.images import DecodeLimits

for i in range(int(sys.argv[3])):
    preprocess_image(deep, infos[i % 2], DecodeLimits(max_bytes=2**30))
print(peak() - baseline)
"""
# Decoded as before, one such image took about 0.9 GB in float64 copies; decoded now, its 16-bit pixels (75.5 MiB)
# and a working copy a few megabytes big.
FLOOD_GROWTH_BOUND = 300 * 2**20


def test_a_flood_of_deep_pngs_keeps_the_decoding_process_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    path.write_bytes(deep_png())
    flood, decoded = 20, 3
    done = subprocess.run(
        [sys.executable, "-c", FLOOD_SCRIPT, str(path), str(flood), str(decoded)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    refused_line, decoded_line = done.stdout.split("\n")[:2]
    refused, refused_growth = (int(word) for word in refused_line.split())
    decoded_growth = int(decoded_line)
    print(
        f"\npeak memory growth: {refused_growth / 2**20:.0f} MiB over {flood} refused, "
        f"{decoded_growth / 2**20:.0f} MiB over {decoded} decoded 6000 x 6600 16-bit PNGs"
    )
    assert refused == flood, "the service's defaults refuse them"
    assert refused_growth < FLOOD_GROWTH_BOUND
    assert decoded_growth < FLOOD_GROWTH_BOUND
