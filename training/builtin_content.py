"""The content sha256 of a built-in dataset as a worker read it, so that the registry can say what it is.

The built-ins are read from the data folder or the public download, not from the blob store, so their hash is
computed where they are read, from what was read:

- mnist, fashion_mnist: the upload hash (training/uploads/canonical.py `content_hash`) of the uint8 arrays as
  loaded, shape (28, 28, 1), with the built-in's class names: the same bytes an upload of the same arrays hashes.
- cats_vs_dogs, stored as JPEG files and decoded afresh for every run, is the files themselves: the sha256 of

      b"epochal-image-folders/1\\n"
      the header: JSON of {"class_names": [...], "files": N}, keys sorted, separators "," and ":", then b"\\n"
      then for each file the loader reads (train/ and validation/, cats/ and dogs/, .jpg .jpeg .png), sorted by
      its path below the dataset folder (POSIX, e.g. "train/cats/cat.1.jpg"): that path in UTF-8, b"\\0", the
      file's size as 8 little-endian bytes, its bytes

  Path and size before each file make the concatenation unambiguous; the path says the split and the class.

A hash is kept per process for its source: a data file by its path, size and modification time; an image folder
by every file's path, size and modification time (a file added, removed or rewritten is another key); a download,
which the loader caches and never changes, once per process. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import numpy as np

from training.uploads.canonical import content_hash
from training.uploads.layout import TEST, TRAIN

IMAGE_FOLDERS_PREFIX = b"epochal-image-folders/1\n"
_READ_CHUNK = 2**20

_cache: dict[Hashable, str] = {}
_cache_lock = threading.Lock()


def arrays_sha256(
    class_names: Sequence[str],
    input_shape: tuple[int, ...],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
) -> str:
    """The canonical content hash of (images, labels) splits, as an upload of the same arrays would get it."""
    shape = (*input_shape, 1) if len(input_shape) == 2 else input_shape
    assert len(shape) == 3
    height, width, channels = shape
    return content_hash(
        tuple(class_names),
        (height, width, channels),
        {TRAIN: train[0], TEST: test[0]},
        {TRAIN: train[1], TEST: test[1]},
    )


def image_files_sha256(root: Path, files: Sequence[Path], class_names: Sequence[str]) -> str:
    """The content hash of image files below `root`, as the module's docstring defines it."""
    relative = sorted((_below(root, path), path) for path in files)
    header = {"class_names": list(class_names), "files": len(relative)}
    digest = hashlib.sha256(IMAGE_FOLDERS_PREFIX)
    digest.update(json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
    for name, path in relative:
        digest.update(name.encode() + b"\0" + path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as stream:
            while chunk := stream.read(_READ_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def file_key(path: Path) -> tuple[str, int, int]:
    """What identifies a data file's content for the cache: its path, size and modification time."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def files_key(root: Path, files: Sequence[Path]) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """An image folder's key: every file's path below `root`, size and modification time."""
    entries = []
    for path in files:
        stat = os.stat(path)
        entries.append((_below(root, path), stat.st_size, stat.st_mtime_ns))
    return str(root.resolve()), tuple(sorted(entries))


def _below(root: Path, path: Path) -> str:
    # What Path.relative_to(root).as_posix() answers, at a fraction of its cost for thousands of files.
    prefix, name = os.path.join(root, ""), os.fspath(path)
    if not name.startswith(prefix):
        raise ValueError(f"{name} is not below {root}")
    return name[len(prefix) :].replace(os.sep, "/")


def cached_sha256(key: Hashable, compute: Callable[[], str]) -> str:
    """The hash kept for `key` in this process, computed once (by `compute`) when there is none."""
    with _cache_lock:
        known = _cache.get(key)
    if known is not None:
        return known
    sha256 = compute()  # outside the lock: two threads may both compute it, and agree
    with _cache_lock:
        _cache[key] = sha256
    return sha256


def forget_cached() -> None:
    """Empty this process' cache (a test that rewrites a file within one modification-time tick needs it)."""
    with _cache_lock:
        _cache.clear()
