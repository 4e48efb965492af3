"""The canonical packed form of a dataset, written to a temporary folder and moved into place whole, and its hash.

A prepared dataset is a folder of uncompressed `.npy` files, each loadable with `numpy.load(mmap_mode="r")`:

    x_train.npy  uint8 [N, H, W] (grayscale) or [N, H, W, 3] (rgb)     y_train.npy  int64 [N], 0 <= y < classes
    x_test.npy   uint8 [M, H, W] or [M, H, W, 3]                       y_test.npy   int64 [M]
    manifest.json  what `PreparedDataset.manifest()` says (classes, counts, shape, fit, sha256, ...)

Within each split the images are in canonical order: by label, then by file name below the class folder (for an
.npz, in its own order), so the archive's own order, format and root folder do not change the content.

The sha256 is of the content alone, so that the same images uploaded as a zip or a tar, or under other file names,
give the same hash. It is the sha256 of these bytes, in this order:

    b"epochal-dataset/1\\n"
    the header: JSON of {"class_names": [...], "input_shape": [H, W, C], "test": M, "train": N}, keys sorted,
        separators "," and ":", non-ASCII as UTF-8 (not escaped), then b"\\n"
    x_train's bytes (C order), y_train as little-endian int64, x_test's bytes, y_test as little-endian int64

The counts in the header make the concatenation unambiguous. How the images were fitted, the seed and the
test fraction are not hashed: they are how the content was made, not what it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.uploads.caps import ColorMode, Fit
from training.uploads.layout import TEST, TRAIN

HASH_PREFIX = b"epochal-dataset/1\n"
SPLITS = (TRAIN, TEST)
MANIFEST = "manifest.json"
LABEL_DTYPE = np.dtype("<i8")
_HASH_CHUNK = 16 * 2**20


@dataclass(frozen=True)
class PreparedDataset:
    """What an upload became, with every option as used (the defaults filled in), for the answer and the registry."""

    path: Path
    source_format: str  # zip, tar, tar.gz, ... or npz
    layout: str  # "class folders", "train/test folders" or "npz"
    class_names: tuple[str, ...]
    counts: Mapping[str, Mapping[str, int]]  # split -> class name -> images
    input_shape: tuple[int, int, int]  # height, width, channels
    image_size: tuple[int, int]
    fit: Fit
    color_mode: ColorMode
    held_out: bool  # whether the test split is a stratified, seeded hold-out of the upload
    test_fraction: float | None  # the share held out; None when the upload had its own test split
    seed: int
    defaults: tuple[str, ...]  # the options the uploader left out, whose defaults were chosen here
    images: int
    size_bytes: int  # of the canonical arrays
    sha256: str
    skipped: tuple[str, ...]  # file-manager junk that was not read (.DS_Store, __MACOSX/, ...)

    def manifest(self) -> dict[str, object]:
        """The JSON-ready description written next to the arrays."""
        return {
            "format": 1,
            "sha256": self.sha256,
            "class_names": list(self.class_names),
            "counts": {split: dict(per_class) for split, per_class in self.counts.items()},
            "input_shape": list(self.input_shape),
            "image_size": list(self.image_size),
            "fit": str(self.fit),
            "color_mode": str(self.color_mode),
            "held_out": self.held_out,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "defaults": list(self.defaults),
            "images": self.images,
            "size_bytes": self.size_bytes,
            "source_format": self.source_format,
            "layout": self.layout,
            "skipped": list(self.skipped),
        }


class CanonicalArrays:
    """The arrays of a dataset being written, preallocated on disk (memory-mapped) once the counts are known."""

    def __init__(self, folder: Path, counts: Mapping[str, int], shape: tuple[int, int, int]) -> None:
        height, width, channels = shape
        image = (height, width) if channels == 1 else (height, width, channels)
        self.shape = shape
        self.x = {
            split: np.lib.format.open_memmap(folder / f"x_{split}.npy", mode="w+", dtype=np.uint8, shape=(n, *image))
            for split, n in counts.items()
        }
        self.y = {split: np.zeros(n, dtype=LABEL_DTYPE) for split, n in counts.items()}
        self.folder = folder

    def put(self, split: str, position: int, pixels: np.ndarray, label: int) -> None:
        self.x[split][position] = pixels
        self.y[split][position] = label

    def finish(self, class_names: tuple[str, ...]) -> tuple[str, int]:
        """Flush everything to disk; the content's sha256 (see the module's docstring) and its size in bytes."""
        for split in SPLITS:
            self.x[split].flush()
            np.save(self.folder / f"y_{split}.npy", self.y[split])
        return content_hash(class_names, self.shape, self.x, self.y), sum(
            int(self.x[s].nbytes + self.y[s].nbytes) for s in SPLITS
        )


def content_hash(
    class_names: tuple[str, ...],
    shape: tuple[int, int, int],
    x: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
) -> str:
    """The sha256 of a dataset's content, as the module's docstring defines it."""
    header = {"class_names": list(class_names), "input_shape": list(shape)}
    header |= {split: len(y[split]) for split in SPLITS}
    digest = hashlib.sha256(HASH_PREFIX)
    digest.update(json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    for split in SPLITS:
        flat = np.ascontiguousarray(x[split]).reshape(-1)
        for start in range(0, flat.size, _HASH_CHUNK):
            digest.update(flat[start : start + _HASH_CHUNK].tobytes())
        digest.update(np.asarray(y[split], dtype=LABEL_DTYPE).tobytes())
    return digest.hexdigest()


def write_manifest(folder: Path, prepared: PreparedDataset) -> None:
    (folder / MANIFEST).write_text(json.dumps(prepared.manifest(), indent=2, ensure_ascii=False) + "\n")


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A temporary folder beside `dest` to write into, renamed to `dest` when the block succeeds and removed with
    everything in it when it does not: a failed upload leaves nothing behind."""
    if dest.exists():
        raise FileExistsError(f"{dest} exists already; prepare into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield folder
        os.replace(folder, dest)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
