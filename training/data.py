"""Dataset loaders: the data folder first, the public Keras download otherwise.

Every loader returns a `Splits`: `tf.data` pipelines for train, validation and test, plus the test
split's integer labels in pipeline order (for the confusion matrix). Cats vs dogs streams JPEGs from
disk; the 28x28 sets are small enough to sit in memory as uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.builtin_content import arrays_sha256, cached_sha256, file_key, files_key, image_files_sha256
from training.datafiles import CATS_VS_DOGS_CLASS_DIRS, IMAGE_SUFFIXES, has_image_folder_layout, local_path
from training.errors import DatasetUnavailable
from training.holdout import held_out_positions
from training.images import decode_rgb
from training.labels import encode_labels, target_encoding
from training.packed import open_packed
from training.spec import Dataset, DatasetInfo, ExperimentSpec

CATS_VS_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"


@dataclass(frozen=True)
class Splits:
    train: TrainingData
    validation: tf.data.Dataset
    test: tf.data.Dataset
    test_labels: np.ndarray
    train_count: int
    validation_count: int
    content_sha256: str | None = None  # a built-in's, of the data as read here (training/builtin_content.py)


@dataclass(frozen=True)
class LabelledData:
    """One split before batching: in-memory arrays (28x28 sets) or file paths (cats vs dogs)."""

    inputs: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> LabelledData:
        return LabelledData(self.inputs[index], self.labels[index])


def load_arrays(dataset: Dataset, data_dir: Path) -> tuple[LabelledData, LabelledData]:
    """Train and test arrays of a 28x28 dataset, from `<data_dir>/<dataset>.npz` or a Keras download."""
    local = local_path(dataset, data_dir)
    if local.is_file():
        with np.load(local) as f:
            return LabelledData(f["x_train"], f["y_train"]), LabelledData(f["x_test"], f["y_test"])
    loader = tf.keras.datasets.mnist if dataset is Dataset.MNIST else tf.keras.datasets.fashion_mnist
    try:
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:
        raise DatasetUnavailable(
            f"{dataset} is not at {local} and could not be downloaded ({type(exc).__name__}: {exc}). "
            f"Put {local.name} (keys x_train, y_train, x_test, y_test, as keras.datasets writes them) "
            "in the data folder, or set EPOCHAL_DATA_DIR to the folder that holds it."
        ) from exc
    return LabelledData(x_train, y_train), LabelledData(x_test, y_test)


def _image_folder_split(root: Path) -> LabelledData:
    paths: list[str] = []
    labels: list[int] = []
    for label, class_dir in enumerate(CATS_VS_DOGS_CLASS_DIRS):
        files = sorted(p for p in (root / class_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths.extend(str(p) for p in files)
        labels.extend([label] * len(files))
    return LabelledData(np.array(paths), np.array(labels, dtype="int64"))


def _download_cats_vs_dogs() -> Path:
    extracted = Path(tf.keras.utils.get_file("cats_and_dogs_filtered.zip", origin=CATS_VS_DOGS_URL, extract=True))
    for candidate in [extracted, *extracted.rglob("*")]:
        if candidate.is_dir() and has_image_folder_layout(candidate):
            return candidate
    raise FileNotFoundError(f"no train/validation folders under {extracted}")


def load_image_folders(data_dir: Path) -> tuple[LabelledData, LabelledData]:
    """Train and validation file lists of cats vs dogs, from `<data_dir>/cats_vs_dogs` or a Keras download."""
    root = local_path(Dataset.CATS_VS_DOGS, data_dir)
    if not has_image_folder_layout(root):
        try:
            root = _download_cats_vs_dogs()
        except Exception as exc:
            raise DatasetUnavailable(
                f"cats_vs_dogs is not at {root} and could not be downloaded ({type(exc).__name__}: {exc}). "
                "Put the cats_and_dogs_filtered images there as train/{cats,dogs}/*.jpg and "
                "validation/{cats,dogs}/*.jpg, or set EPOCHAL_DATA_DIR to the folder that holds cats_vs_dogs/."
            ) from exc
    return _image_folder_split(root / "train"), _image_folder_split(root / "validation")


def load_raw(dataset: Dataset, data_dir: Path) -> tuple[LabelledData, LabelledData]:
    """Unbatched train and test data of `dataset`."""
    if dataset is Dataset.CATS_VS_DOGS:
        return load_image_folders(data_dir)
    return load_arrays(dataset, data_dir)


def builtin_content_sha256(info: DatasetInfo, data_dir: Path, train: LabelledData, test: LabelledData) -> str:
    """The content hash of a built-in's data as `load_raw` read it (training/builtin_content.py), kept per process
    for the file or folder it came from."""
    if info.name == Dataset.CATS_VS_DOGS:
        files = [Path(str(p)) for p in (*train.inputs, *test.inputs)]
        # <root>/<split>/<class>/<file>, as _image_folder_split lists them
        root = files[0].parents[2] if files else local_path(Dataset.CATS_VS_DOGS, data_dir)
        return cached_sha256(files_key(root, files), lambda: image_files_sha256(root, files, info.class_names))
    local = local_path(Dataset(info.name), data_dir)
    # What load_arrays read: the data file when there is one, else the download (the same all process long).
    key = ("file", *file_key(local)) if local.is_file() else ("download", info.name)
    return cached_sha256(
        key,
        lambda: arrays_sha256(
            info.class_names, info.input_shape, (train.inputs, train.labels), (test.inputs, test.labels)
        ),
    )


def split_training(train: LabelledData, spec: ExperimentSpec) -> tuple[LabelledData, LabelledData | None]:
    """Shuffle with the spec's seed, cap at train_size, and hold out a stratified validation_split if asked."""
    order = np.random.default_rng(spec.seed).permutation(len(train))
    if spec.train_size is not None:
        order = order[: spec.train_size]
    if spec.validation_split is None:
        return train.take(order), None
    held = held_out_positions(np.asarray(train.labels)[order], spec.validation_split)
    if len(held) >= len(order):
        raise ValueError(f"validation_split {spec.validation_split} leaves no training data out of {len(order)}")
    keep = np.ones(len(order), dtype=bool)
    keep[held] = False
    return train.take(order[keep]), train.take(order[held])


def _targets(data: LabelledData, spec: ExperimentSpec) -> np.ndarray:
    return encode_labels(data.labels, target_encoding(spec), spec.info.num_classes)


def _decode_files(ds: tf.data.Dataset, spec: ExperimentSpec) -> tf.data.Dataset:
    size = spec.info.input_shape[:2]
    return ds.map(lambda path, y: (decode_rgb(tf.io.read_file(path), size), y), num_parallel_calls=tf.data.AUTOTUNE)


def _evaluation_pipeline(data: LabelledData, spec: ExperimentSpec, *, image_files: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((data.inputs, _targets(data, spec)))
    if image_files:
        # Validation runs every epoch: decode its images once and keep them (about 270 MB for 1,000 at 150x150).
        return _decode_files(ds, spec).batch(spec.batch_size).cache().prefetch(tf.data.AUTOTUNE)
    return ds.batch(spec.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class TrainingData:
    """The training split, whose batches for each epoch are a function of (seed, epoch) alone.

    A resumed run therefore sees exactly the batches an uninterrupted one would have, which Keras'
    own reshuffling (a function of how many epochs this process has iterated) cannot give.
    """

    data: LabelledData
    spec: ExperimentSpec
    image_files: bool

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.spec.batch_size)

    def epochs(self, first: int, end: int) -> tf.data.Dataset:
        """Batches of epochs `first` to `end - 1` (0-based) in one stream; pass `steps_per_epoch` to fit."""
        inputs, targets = tf.constant(self.data.inputs), tf.constant(_targets(self.data, self.spec))
        count, seed, batch_size = len(self.data), self.spec.seed, self.spec.batch_size

        def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
            )
            # Whole batches are gathered at once: far cheaper than a per-example pipeline for in-memory arrays.
            batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
            if self.image_files:
                pairs = batches.map(lambda i: (tf.gather(inputs, i), tf.gather(targets, i))).unbatch()
                return _decode_files(pairs, self.spec).batch(batch_size)
            return batches.map(lambda i: (tf.cast(tf.gather(inputs, i), tf.float32), tf.gather(targets, i)))

        return tf.data.Dataset.range(first, end).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


# Training images whose decoded pixels fit in this many bytes are decoded once and kept in memory, instead
# of being read and decoded again in every epoch (cats vs dogs: 2,000 images, 540 MB as float32).
DECODED_CACHE_BYTES = 2 * 2**30


def decode_images(data: LabelledData, spec: ExperimentSpec) -> LabelledData | None:
    """The image files of `data` decoded once into float32 arrays, or None when they exceed the cache budget.

    The pixels are those the per-epoch decoding would give (the same `decode_rgb`), so training on
    them is the same computation, without the JPEG work in every epoch.
    """
    height, width, channels = spec.info.input_shape
    if len(data) * height * width * channels * 4 > DECODED_CACHE_BYTES:
        return None
    paths = tf.data.Dataset.from_tensor_slices(data.inputs)
    decoded = paths.map(
        lambda path: decode_rgb(tf.io.read_file(path), (height, width)), num_parallel_calls=tf.data.AUTOTUNE
    )
    batches = [batch.numpy() for batch in decoded.batch(256)]
    pixels = np.concatenate(batches) if batches else np.zeros((0, height, width, channels), "float32")
    return LabelledData(pixels, data.labels)


def load_packed(info: DatasetInfo, packed: Path | None) -> tuple[LabelledData, LabelledData]:
    """Train and test arrays of an uploaded dataset version, memory-mapped from its packed file."""
    if packed is None:
        raise DatasetUnavailable(f"{info.reference} is an uploaded dataset: its packed arrays were not fetched")
    arrays = open_packed(packed)
    shape = tuple(arrays.x_train.shape[1:])
    if arrays.class_names != info.class_names or shape != info.input_shape:
        raise DatasetUnavailable(
            f"the packed arrays of {info.reference} hold {shape} images of {len(arrays.class_names)} classes, not the "
            f"{info.input_shape} images of {info.num_classes} classes its row records; upload it again"
        )
    return LabelledData(arrays.x_train, arrays.y_train), LabelledData(arrays.x_test, arrays.y_test)


def load_splits(spec: ExperimentSpec, data_dir: Path, packed: Path | None = None) -> Splits:
    """Train, validation and test pipelines for `spec`; validation is the test split unless held out. A built-in's
    data comes from `data_dir` (or its download), with its content hash; an uploaded dataset's from `packed`."""
    content_sha256 = None
    if spec.info.builtin:
        train_raw, test_raw = load_raw(Dataset(spec.dataset), data_dir)
        content_sha256 = builtin_content_sha256(spec.info, data_dir, train_raw, test_raw)
    else:
        train_raw, test_raw = load_packed(spec.info, packed)
    train, held_out = split_training(train_raw, spec)
    files = spec.dataset == Dataset.CATS_VS_DOGS
    test = _evaluation_pipeline(test_raw, spec, image_files=files)
    validation = test if held_out is None else _evaluation_pipeline(held_out, spec, image_files=files)
    decoded = decode_images(train, spec) if files else None
    return Splits(
        train=TrainingData(train, spec, image_files=files) if decoded is None else TrainingData(decoded, spec, False),
        validation=validation,
        test=test,
        test_labels=np.asarray(test_raw.labels, dtype="int64"),
        train_count=len(train),
        validation_count=len(test_raw) if held_out is None else len(held_out),
        content_sha256=content_sha256,
    )
