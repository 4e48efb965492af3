"""Small generated datasets in the same layout as the real ones, for machines without the real data.

The digits are drawn with Pillow's bundled font and the "cats" and "dogs" differ in colour and shape,
so a tiny network can learn them and prediction tests can check labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _digit(digit: int, rng: np.random.Generator) -> np.ndarray:
    image = Image.new("L", (28, 28), 0)
    font = ImageFont.load_default(size=int(rng.integers(18, 24)))
    x, y = int(rng.integers(5, 10)), int(rng.integers(0, 5))
    ImageDraw.Draw(image).text((x, y), str(digit), fill=int(rng.integers(200, 256)), font=font)
    return np.asarray(image, dtype="uint8")


def write_mnist(path: Path, train: int = 1200, test: int = 300, seed: int = 0) -> None:
    """An `mnist.npz` with keys x_train, y_train, x_test, y_test, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", train), ("test", test)):
        labels = np.arange(count, dtype="uint8") % 10
        rng.shuffle(labels)
        arrays[f"x_{split}"] = np.stack([_digit(int(d), rng) for d in labels])
        arrays[f"y_{split}"] = labels
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]  # numpy's stubs read ** as its allow_pickle flag


def _animal(is_dog: bool, rng: np.random.Generator) -> Image.Image:
    width, height = int(rng.integers(120, 260)), int(rng.integers(100, 220))
    background = (40, 60, 160) if is_dog else (200, 120, 40)
    image = Image.new("RGB", (width, height), tuple(int(c + rng.integers(-20, 20)) for c in background))
    draw = ImageDraw.Draw(image)
    box = (width * 0.2, height * 0.2, width * 0.8, height * 0.8)
    if is_dog:
        draw.rectangle(box, fill=(230, 230, 230))
    else:
        draw.ellipse(box, fill=(20, 20, 20))
    return image


def write_cats_vs_dogs(root: Path, train_per_class: int = 40, validation_per_class: int = 20, seed: int = 0) -> None:
    """`train/{cats,dogs}` and `validation/{cats,dogs}` JPEG folders, named like the Kaggle files."""
    rng = np.random.default_rng(seed)
    for split, count, first_id in (("train", train_per_class, 0), ("validation", validation_per_class, 2000)):
        for folder, stem, is_dog in (("cats", "cat", False), ("dogs", "dog", True)):
            target = root / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                _animal(is_dog, rng).save(target / f"{stem}.{first_id + i}.jpg", quality=90)


def write_all(data_dir: Path) -> Path:
    """Generate both datasets under `data_dir` and return it."""
    write_mnist(data_dir / "mnist.npz")
    write_cats_vs_dogs(data_dir / "cats_vs_dogs")
    return data_dir
