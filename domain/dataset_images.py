"""A dataset version's images, as the API shows them: which version a request means, and its packed arrays read in
place.

Who may see a dataset is `domain/datasets.visible_versions` (another user's private one is a 404 with the words of
a missing one); a version that is not ready (processing, failed) is a Conflict. A duplicate version shows the
packed arrays it shares with the version it repeats.

The API never holds a dataset in memory: a version's packed blob is fetched once from the blob store into the
process's local cache (infra/blob_cache.py: EPOCHAL_BLOB_CACHE_DIR, bounded by EPOCHAL_BLOB_CACHE_BYTES, shared
with the other processes of the host) and its arrays memory-mapped there (training/packed.py), so a request reads
the labels and the pixels it shows, nothing more.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from domain.datasets import ready_version
from domain.errors import Conflict, Invalid, NotFound, Unavailable
from infra.blob_cache import BlobCache
from infra.blob_store import BlobError
from models import DatasetVersion
from models.blob_store import DatabaseBlobStore
from models.users import User
from training.packed import PackedDataset, PackedDatasetInvalid, open_packed
from training.samples import class_positions, first_per_class

SPLITS = ("train", "test")


def showable_version(session: Session, user: User, name: str, version: int | None) -> DatasetVersion:
    """Version `version` of `name` (None: the latest ready one) if the user may see it and it is ready; NotFound
    for a dataset they cannot see or a version it does not have, Conflict for one not ready yet, or failed."""
    return ready_version(session, user, name, version)


def check_stored(row: DatasetVersion) -> str:
    """The version's packed blob; a Conflict for a built-in, whose files are read from the data folder instead."""
    if row.blob_sha256 is None:
        raise Conflict(
            f"{row.name!r} is a built-in dataset: its images are read from the data folder as training needs them "
            f"and are not paged here; GET /datasets/{row.name}/samples.png shows some of each class"
        )
    return row.blob_sha256


@functools.cache
def _cache() -> BlobCache:
    """The process's blob cache, made at its first use from the settings (as a worker's is)."""
    return BlobCache.configured(DatabaseBlobStore())


@contextlib.contextmanager
def packed_arrays(row: DatasetVersion) -> Iterator[PackedDataset]:
    """The version's packed arrays, memory-mapped from the local cache; the file stays cached while the block runs.

    Unavailable when the store cannot hand it over whole (it is fetched again on the next request).
    """
    sha256 = check_stored(row)
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(_cache().fetch(sha256))
            packed = open_packed(path)
        except (BlobError, PackedDatasetInvalid, OSError) as exc:
            raise Unavailable(
                f"the stored images of dataset {row.name!r} version {row.version} could not be read right now "
                f"({type(exc).__name__}); try again in a moment"
            ) from exc
        yield packed


def class_label(row: DatasetVersion, class_name: str | None) -> int | None:
    """The label of `class_name` in the version (None for None); Invalid naming the classes when it has no such one."""
    if class_name is None:
        return None
    names = list(row.class_names or [])
    if class_name not in names:
        listed = ", ".join(repr(n) for n in names[:50]) + (f" and {len(names) - 50} more" if len(names) > 50 else "")
        raise Invalid(
            f"dataset {row.name!r} version {row.version} has no class {class_name!r:.80}; its classes: {listed}"
        )
    return names.index(class_name)


@dataclass(frozen=True)
class ImagePage:
    """One page of a split's images (of one class, or all): their positions in the split, and how many there are."""

    positions: np.ndarray
    total: int


def image_page(packed: PackedDataset, split: str, label: int | None, offset: int, limit: int) -> ImagePage:
    """Images `offset` to `offset + limit` of `split` (of class `label`, or all), in the split's order."""
    _, labels = packed.split(split)
    positions = class_positions(labels, label)
    return ImagePage(positions=positions[offset : offset + limit], total=len(positions))


def stored_image(packed: PackedDataset, row: DatasetVersion, split: str, index: int) -> tuple[np.ndarray, int]:
    """Image `index` of `split` and its label; NotFound past the split's end."""
    images, labels = packed.split(split)
    if not 0 <= index < len(images):
        last = f"0 to {len(images) - 1}" if len(images) else "none"
        raise NotFound(
            f"dataset {row.name!r} version {row.version} has {len(images)} {split} images (indexes {last}), "
            f"not {index}; GET /datasets/{row.name}/images lists them"
        )
    return np.asarray(images[index]), int(labels[index])


def train_samples(packed: PackedDataset, classes: int, per_class: int) -> list[list[np.ndarray]]:
    """The first `per_class` train images of each of the first `classes` classes, in the split's (canonical) order."""
    images, labels = packed.split("train")
    return [
        [np.asarray(images[int(i)]) for i in positions] for positions in first_per_class(labels, classes, per_class)
    ]
