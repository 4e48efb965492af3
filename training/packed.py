"""Reading a prepared dataset in its packed form: the uncompressed tar that `worker/datasets.py` stores, read in place.

The tar holds `manifest.json` and the four `.npy` arrays of the canonical form (training/uploads/canonical.py). Being
uncompressed, each array's bytes lie whole at a known offset of the file, so they are memory-mapped where they are:
opening a packed dataset reads its manifest and four array headers, never its pixels, and no copy is unpacked.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST = "manifest.json"


class PackedDatasetInvalid(ValueError):
    """The file is not a packed dataset this version can read."""


@dataclass(frozen=True)
class PackedDataset:
    """A prepared dataset's arrays (read-only memory maps) and its manifest."""

    manifest: dict[str, Any]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest["class_names"])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The images and labels of split `name` ("train" or "test")."""
        if name not in ("train", "test"):
            raise ValueError(f"a packed dataset has the splits train and test, not {name!r}")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


def open_packed(path: Path) -> PackedDataset:
    """The packed dataset at `path`, its arrays mapped from the file (which must stay in place while they are used:
    on POSIX an unlinked file's mapping stays valid)."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in (MANIFEST, *(f"{a}.npy" for a in ARRAYS)) if n not in members]
            if missing:
                raise PackedDatasetInvalid(f"{path.name} lacks {', '.join(missing)}")
            manifest_file = tar.extractfile(members[MANIFEST])
            assert manifest_file is not None
            manifest = json.loads(manifest_file.read())
    except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackedDatasetInvalid(f"{path.name} is not a packed dataset ({exc})") from exc
    arrays = {name: _mapped(path, members[f"{name}.npy"]) for name in ARRAYS}
    packed = PackedDataset(manifest=manifest, **arrays)
    for split in ("train", "test"):
        x, y = packed.split(split)
        if len(x) != len(y):
            raise PackedDatasetInvalid(f"{path.name}: {len(x)} {split} images but {len(y)} labels")
    return packed


def _mapped(path: Path, member: tarfile.TarInfo) -> np.ndarray:
    """The `.npy` stored as `member` of the tar at `path`, memory-mapped in place."""
    with path.open("rb") as stream:
        stream.seek(member.offset_data)
        try:
            version = np.lib.format.read_magic(stream)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = reader(stream)
        except ValueError as exc:
            raise PackedDatasetInvalid(f"{member.name} is not an .npy array ({exc})") from exc
        header = stream.tell() - member.offset_data
    if dtype.hasobject:
        raise PackedDatasetInvalid(f"{member.name} holds Python objects; a packed dataset holds numbers only")
    if header + int(np.prod(shape)) * dtype.itemsize > member.size:
        raise PackedDatasetInvalid(f"{member.name} is shorter than its header says")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    order: Literal["F", "C"] = "F" if fortran_order else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=member.offset_data + header, shape=shape, order=order)
