"""Where each dataset's files live in the data folder. No TensorFlow here: the API imports it."""

from __future__ import annotations

from pathlib import Path

from training.spec import Dataset

CATS_VS_DOGS_CLASS_DIRS = ("cats", "dogs")  # alphabetical: cat = 0, dog = 1, as Keras' directory loader does
CATS_VS_DOGS_SPLITS = ("train", "validation")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what the cats vs dogs folders are read for


def local_path(dataset: Dataset, data_dir: Path) -> Path:
    """The file (28x28 sets: `<name>.npz`) or folder (cats vs dogs) the loader reads first."""
    if dataset is Dataset.CATS_VS_DOGS:
        return data_dir / dataset.value
    return data_dir / f"{dataset.value}.npz"


def has_image_folder_layout(root: Path) -> bool:
    """Whether `root` holds train/ and validation/, each with cats/ and dogs/."""
    return all((root / split / cls).is_dir() for split in CATS_VS_DOGS_SPLITS for cls in CATS_VS_DOGS_CLASS_DIRS)


def in_data_dir(dataset: Dataset, data_dir: Path) -> bool:
    """Whether `dataset` can be read from the data folder without a download."""
    path = local_path(dataset, data_dir)
    return has_image_folder_layout(path) if dataset is Dataset.CATS_VS_DOGS else path.is_file()
