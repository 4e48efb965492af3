"""The packed form of a prepared dataset read in place: the arrays the worker packed, memory-mapped from the tar."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.upload_archives import class_files, write_zip
from training.packed import PackedDatasetInvalid, open_packed
from training.uploads import UploadCaps, UploadOptions, ingest
from worker.datasets import pack


def test_the_packed_arrays_are_the_prepared_ones_read_in_place(tmp_path: Path) -> None:
    files = class_files({"ants": 4, "bees": 3}, size=(10, 12))
    prepared = ingest(
        write_zip(tmp_path / "up.zip", files), tmp_path / "prepared", UploadOptions(test_fraction=0.3), UploadCaps()
    )
    packed = open_packed(pack(prepared.path, tmp_path / "packed.tar"))
    for split in ("train", "test"):
        x, y = packed.split(split)
        assert isinstance(x, np.memmap)
        np.testing.assert_array_equal(x, np.load(prepared.path / f"x_{split}.npy"))
        np.testing.assert_array_equal(y, np.load(prepared.path / f"y_{split}.npy"))
    assert packed.class_names == ("ants", "bees") == prepared.class_names
    assert packed.manifest["sha256"] == prepared.sha256
    assert len(packed.y_train) + len(packed.y_test) == 7


def test_a_file_that_is_no_packed_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(PackedDatasetInvalid):
        open_packed(tmp_path / "junk")
    path = tmp_path / "partial.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(PackedDatasetInvalid, match=r"lacks x_train\.npy"):
        open_packed(path)
