"""A few images of each class, and a class's images a page at a time: what a person looks at to check a dataset.

Array work on labels only (the pixels asked for are read where they lie: a packed dataset's memory maps, or the
first rows of a built-in's `.npz` member streamed until every class has its share), so nothing here holds a
dataset in memory. No TensorFlow: the API imports it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from training.datafiles import CATS_VS_DOGS_CLASS_DIRS, IMAGE_SUFFIXES, has_image_folder_layout, local_path
from training.errors import DatasetUnavailable
from training.spec import DATASETS, Dataset

ROWS_AT_A_TIME = 256  # how many rows of a built-in's compressed images are decompressed at once


def first_per_class(labels: np.ndarray, classes: int, per_class: int) -> list[np.ndarray]:
    """For each class (0..classes-1), the positions of its first `per_class` images in `labels` order."""
    found: list[np.ndarray] = []
    for label in range(classes):
        found.append(np.flatnonzero(np.asarray(labels) == label)[:per_class])
    return found


def class_positions(labels: np.ndarray, label: int | None) -> np.ndarray:
    """The positions of the images of class `label` in `labels` order; every position when `label` is None."""
    if label is None:
        return np.arange(len(labels))
    return np.flatnonzero(np.asarray(labels) == label)


def builtin_files(dataset: Dataset, data_dir: Path) -> Path:
    """The built-in's file (or folder) in the data folder; DatasetUnavailable saying what to put there if absent."""
    path = local_path(dataset, data_dir)
    if dataset is Dataset.CATS_VS_DOGS and not has_image_folder_layout(path):
        raise DatasetUnavailable(
            f"cats_vs_dogs is not in the data folder: put the cats_and_dogs_filtered images at {path.name}/ as "
            "train/{cats,dogs}/*.jpg and validation/{cats,dogs}/*.jpg, or set EPOCHAL_DATA_DIR to the folder "
            "that holds cats_vs_dogs/"
        )
    if dataset is not Dataset.CATS_VS_DOGS and not path.is_file():
        raise DatasetUnavailable(
            f"{dataset} is not in the data folder: put {path.name} (keys x_train, y_train, x_test, y_test, as "
            "keras.datasets writes them) there, or set EPOCHAL_DATA_DIR to the folder that holds it"
        )
    return path


def builtin_stamp(dataset: Dataset, data_dir: Path) -> int:
    """When the built-in's files last changed (ns): its `.npz`, or cats vs dogs' train folders (a file added or
    removed there changes its folder's time, not the dataset folder's)."""
    path = builtin_files(dataset, data_dir)
    if dataset is Dataset.CATS_VS_DOGS:
        folders = (path, *(path / "train" / class_dir for class_dir in CATS_VS_DOGS_CLASS_DIRS))
        return max(folder.stat().st_mtime_ns for folder in folders)
    return path.stat().st_mtime_ns


def builtin_samples(dataset: Dataset, data_dir: Path, classes: int, per_class: int) -> list[list[np.ndarray]]:
    """The first `per_class` train images of each class of a built-in, read from the data folder.

    DatasetUnavailable (saying where to put the files) when they are not there: this reads no download.
    """
    if dataset is Dataset.CATS_VS_DOGS:
        return _image_folder_samples(builtin_files(dataset, data_dir), per_class)
    path = builtin_files(dataset, data_dir)
    with np.load(path) as arrays:
        labels = np.asarray(arrays["y_train"])
    wanted = first_per_class(labels, classes, per_class)
    rows = _npz_rows(path, "x_train", {int(i) for positions in wanted for i in positions})
    return [[rows[int(i)] for i in positions] for positions in wanted]


def _npz_rows(path: Path, key: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """The rows `wanted` of the `.npz` member `key`, streamed from its start (compressed or not) and read no further
    than the last one, holding `ROWS_AT_A_TIME` rows at most besides those kept."""
    kept: dict[int, np.ndarray] = {}
    if not wanted:
        return kept
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = reader(stream)
        if fortran_order or dtype.hasobject or len(shape) < 1:
            raise DatasetUnavailable(f"{path.name}: {key} is not a C-ordered array of numbers")
        row_shape = tuple(shape[1:])
        row_bytes = int(np.prod(row_shape)) * dtype.itemsize
        last = max(wanted)
        for start in range(0, min(last + 1, shape[0]), ROWS_AT_A_TIME):
            count = min(ROWS_AT_A_TIME, shape[0] - start)
            block = np.frombuffer(stream.read(count * row_bytes), dtype=dtype).reshape((-1, *row_shape))
            for position in range(start, start + len(block)):
                if position in wanted:
                    kept[position] = block[position - start].copy()
            if start + count > last:
                break
    return kept


def _image_folder_samples(root: Path, per_class: int) -> list[list[np.ndarray]]:
    """The first `per_class` files of each class folder of cats vs dogs' train split, read as training reads them:
    RGB, resized to the input shape (with Pillow here: close to, not bit for bit, TensorFlow's bilinear resize)."""
    height, width = DATASETS[Dataset.CATS_VS_DOGS].input_shape[:2]
    samples = []
    for class_dir in CATS_VS_DOGS_CLASS_DIRS:
        files = sorted(p for p in (root / "train" / class_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images = []
        for file in files[:per_class]:
            with Image.open(file) as image:
                resized = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            images.append(np.asarray(resized, dtype=np.uint8))
        samples.append(images)
    return samples
