"""Hostile uploads: each is refused with the entry at fault and a reason, and nothing is left on disk."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.upload_archives import class_files, encode, noise, tar_member, write_tar, write_zip
from training.image_limits import DecodeLimits
from training.uploads import UploadCaps, UploadRefused, ingest
from training.uploads.errors import WHOLE_UPLOAD
from training.uploads.names import clean_path

GOOD = class_files({"cat": 3, "dog": 3})


def refused(tmp_path: Path, source: Path, caps: UploadCaps | None = None) -> UploadRefused:
    out = tmp_path / "out"
    with pytest.raises(UploadRefused) as caught:
        ingest(source, out / "dataset", caps=caps)
    assert not (out / "dataset").exists()
    assert not out.exists() or list(out.iterdir()) == []  # no half-made folder either
    return caught.value


def test_a_zip_bomb_entry_is_refused_by_its_measured_ratio(tmp_path: Path) -> None:
    source = write_zip(tmp_path / "up.zip", {**GOOD, "cat/bomb.png": b"\0" * 8 * 2**20})
    error = refused(tmp_path, source)
    assert error.entry == "cat/bomb.png"
    assert "times its compressed size" in error.reason


def test_a_tar_gz_bomb_is_refused_by_its_measured_ratio(tmp_path: Path) -> None:
    source = write_tar(tmp_path / "up.tgz", {**GOOD, "dog/bomb.png": b"\0" * 8 * 2**20}, "gz")
    error = refused(tmp_path, source)
    assert error.entry == "dog/bomb.png"
    assert "times its compressed size" in error.reason


def test_the_total_uncompressed_size_is_capped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = {f"{c}/{i}.png": encode(noise(rng, 200, 200)) for c in ("cat", "dog") for i in range(4)}
    error = refused(tmp_path, write_zip(tmp_path / "up.zip", files), UploadCaps(max_total_bytes=200_000))
    assert "decompresses to more than" in error.reason
    assert error.entry in files


def test_one_entry_over_the_file_cap_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    files = {**GOOD, "dog/big.png": encode(noise(rng, 300, 300))}
    error = refused(tmp_path, write_tar(tmp_path / "up.tar", files), UploadCaps(max_entry_bytes=50_000))
    assert (error.entry, "cap for one file" in error.reason) == ("dog/big.png", True)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.png", "'..'"),
        ("cat/../../evil.png", "'..'"),
        ("/etc/evil.png", "absolute"),
        ("C:/evil.png", "drive letter"),
        ("cat\\evil.png", "backslash"),
    ],
)
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_paths_that_leave_the_dataset_are_refused(tmp_path: Path, name: str, reason: str, kind: str) -> None:
    files = {**GOOD, name: GOOD["cat/000.png"]}
    source = write_zip(tmp_path / "up.zip", files) if kind == "zip" else write_tar(tmp_path / "up.tar", files)
    error = refused(tmp_path, source)
    assert error.entry == name
    assert reason in error.reason


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (tar_member("cat/link.png", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic links"),
        (tar_member("cat/hard.png", kind=tarfile.LNKTYPE, linkname="cat/000.png"), "hard links"),
        (tar_member("cat/tty.png", kind=tarfile.CHRTYPE), "device"),
        (tar_member("cat/disk.png", kind=tarfile.BLKTYPE), "device"),
        (tar_member("cat/pipe.png", kind=tarfile.FIFOTYPE), "pipes"),
    ],
)
def test_links_devices_and_pipes_in_a_tar_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes], reason: str
) -> None:
    error = refused(tmp_path, write_tar(tmp_path / "up.tar.gz", GOOD, "gz", [member]))
    assert error.entry == member[0].name
    assert reason in error.reason


def test_a_symlink_in_a_zip_is_refused(tmp_path: Path) -> None:
    source = write_zip(tmp_path / "up.zip", GOOD)
    with zipfile.ZipFile(source, "a") as z:
        info = zipfile.ZipInfo("dog/link.png")
        info.external_attr = (0o120777 << 16) | 0
        z.writestr(info, "/etc/passwd")
    error = refused(tmp_path, source)
    assert (error.entry, "symbolic links" in error.reason) == ("dog/link.png", True)


def test_nested_archives_are_refused_by_name_and_by_content(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.png", GOOD["cat/000.png"])
    by_name = refused(tmp_path, write_zip(tmp_path / "a.zip", {**GOOD, "cat/more.zip": inner.getvalue()}))
    assert (by_name.entry, "archives inside" in by_name.reason) == ("cat/more.zip", True)
    by_content = refused(tmp_path, write_zip(tmp_path / "b.zip", {**GOOD, "cat/more.png": inner.getvalue()}))
    assert (by_content.entry, "archive inside the archive" in by_content.reason) == ("cat/more.png", True)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_more_entries_than_the_cap_are_refused(tmp_path: Path, kind: str) -> None:
    source = write_zip(tmp_path / "up.zip", GOOD) if kind == "zip" else write_tar(tmp_path / "up.tar", GOOD)
    error = refused(tmp_path, source, UploadCaps(max_entries=5))
    assert "more than 5 entries" in error.reason


def test_a_nul_in_a_name_is_refused(tmp_path: Path) -> None:
    # zipfile and ustar cut names at a NUL; a PAX header carries it whole.
    info, data = tar_member("cat/a\x00.png", GOOD["cat/000.png"])
    info.pax_headers = {"path": "cat/a\x00.png"}
    source = write_tar(tmp_path / "up.tar", GOOD, "", [(info, data)])
    try:
        error = refused(tmp_path, source)
    except AssertionError:
        pytest.skip("tarfile dropped the NUL")
    assert "NUL" in error.reason
    with pytest.raises(UploadRefused, match="NUL"):
        clean_path("cat/a\x00.png")


def test_names_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    files = {**GOOD, "Cat/001.png": GOOD["cat/001.png"]}
    error = refused(tmp_path, write_tar(tmp_path / "up.tar", files))
    assert error.entry == "Cat/001.png"
    assert "letter case" in error.reason
    twice = refused(tmp_path, write_tar(tmp_path / "twice.tar", GOOD, "", [tar_member("dog/000.png", b"x")]))
    assert (twice.entry, "twice" in twice.reason) == ("dog/000.png", True)


def test_a_file_that_is_not_an_image_is_refused_by_name(tmp_path: Path) -> None:
    error = refused(tmp_path, write_zip(tmp_path / "up.zip", {**GOOD, "dog/notes.txt": b"hello"}))
    assert (error.entry, "not a PNG or JPEG" in error.reason) == ("dog/notes.txt", True)


def test_corrupt_and_truncated_images_are_refused(tmp_path: Path) -> None:
    corrupt = refused(tmp_path, write_zip(tmp_path / "a.zip", {**GOOD, "dog/bad.png": b"\x89PNG\r\n\x1a\nrubbish"}))
    assert corrupt.entry == "dog/bad.png"
    assert "PNG or JPEG" in corrupt.reason
    whole = encode(noise(np.random.default_rng(3), 64, 64))
    truncated = refused(tmp_path, write_zip(tmp_path / "b.zip", {**GOOD, "dog/cut.png": whole[: len(whole) // 2]}))
    assert truncated.entry == "dog/cut.png"
    assert "truncated or corrupt" in truncated.reason


def test_an_image_over_the_pixel_cap_is_refused(tmp_path: Path) -> None:
    files = {**GOOD, "cat/huge.png": encode(noise(np.random.default_rng(4), 40, 40))}
    error = refused(tmp_path, write_zip(tmp_path / "up.zip", files), UploadCaps(decode=DecodeLimits(max_pixels=1000)))
    assert error.entry == "cat/huge.png"
    assert "pixels" in error.reason


def test_a_single_class_and_an_empty_class_are_refused(tmp_path: Path) -> None:
    single = refused(tmp_path, write_zip(tmp_path / "a.zip", class_files({"cat": 4})))
    assert (single.entry, "only class" in single.reason) == ("cat/", True)
    empty = refused(tmp_path, write_zip(tmp_path / "b.zip", GOOD, folders=("bird/",)))
    assert (empty.entry, "empty class" in empty.reason) == ("bird/", True)


def test_an_upload_that_is_no_archive_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "up.bin"
    source.write_bytes(GOOD["cat/000.png"])
    error = refused(tmp_path, source)
    assert error.entry == WHOLE_UPLOAD
    assert "zip or a tar" in error.reason


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "up.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


X = np.zeros((6, 4, 4), np.uint8)
Y = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize(
    ("arrays", "entry", "reason"),
    [
        ({"x_train": np.array([{"a": 1}] * 6, dtype=object), "y_train": Y}, "x_train.npy", "object arrays"),
        ({"x_train": X.astype("float32"), "y_train": Y}, "x_train.npy", "uint8"),
        ({"x_train": X, "y_train": Y[:5]}, "y_train.npy", "labels for"),
        ({"x_train": X, "y_train": Y, "class_names": np.array(["a"])}, "y_train.npy", "not a class"),
        ({"x_train": X, "y_train": Y * 7}, "y_train.npy", "empty class"),
        ({"x_train": X, "y_train": np.zeros(6, int)}, "y_train.npy", "only one class"),
        ({"x_train": X, "y_train": Y.astype("float32")}, "y_train.npy", "integers"),
        ({"x_train": X, "y_train": Y, "x_test": X}, WHOLE_UPLOAD, "together"),
        ({"x_train": X, "y_train": Y, "extra": Y}, "extra.npy", "unknown array"),
    ],
)
def test_bad_npz_arrays_are_refused(tmp_path: Path, arrays: dict[str, np.ndarray], entry: str, reason: str) -> None:
    error = refused(tmp_path, _npz(tmp_path, **arrays))
    assert error.entry == entry
    assert reason in error.reason
