"""An upload's format from its first bytes (never its name), and its entries one at a time: a zip through its
central directory, a tar (plain, gzip, bzip2 or xz) as a stream. Nothing is extracted to disk; each entry is checked
(type, name) before its bytes are read, and its bytes are counted against the caps as they are decompressed."""

from __future__ import annotations

import bz2
import gzip
import lzma
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, cast

from training.uploads.caps import UploadCaps
from training.uploads.errors import WHOLE_UPLOAD, UploadRefused
from training.uploads.measure import Budget, BudgetedStream, CountingFile, Readable, read_entry
from training.uploads.names import NameRegister, clean_path

ACCEPTED = "send a zip or a tar (.tar, .tar.gz) of class folders, or an .npz with x_train and y_train"
# An archive's own leading bytes: a member that starts so is an archive inside the archive.
ARCHIVE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".npz")
# A central-directory record is 46 bytes plus its name; allowing this many bytes per permitted entry bounds what
# zipfile holds in memory before the entry count can be checked.
CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 512


class Format(StrEnum):
    ZIP = "zip"
    TAR = "tar"
    TAR_GZ = "tar.gz"
    TAR_BZ2 = "tar.bz2"
    TAR_XZ = "tar.xz"
    NPZ = "npz"


def archive_kind(head: bytes) -> str | None:
    """The kind of archive `head` (a file's first bytes) starts, or None."""
    if head[257:262] == b"ustar":
        return "tar"
    return next((kind for magic, kind in ARCHIVE_MAGIC if head.startswith(magic)), None)


def sniff(path: Path) -> Format:
    """The upload's format from its first bytes; an .npz is a zip whose entries are all top-level `.npy` files."""
    with path.open("rb") as f:
        head = f.read(512)
    kind = archive_kind(head)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = [info.filename for info in z.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UploadRefused(WHOLE_UPLOAD, f"the zip is damaged ({exc}); {ACCEPTED}") from exc
        if names and all(name.endswith(".npy") and "/" not in name for name in names):
            return Format.NPZ
        return Format.ZIP
    formats = {"tar": Format.TAR, "gzip": Format.TAR_GZ, "bzip2": Format.TAR_BZ2, "xz": Format.TAR_XZ}
    if kind in formats:
        return formats[kind]
    if head.startswith(b"\x93NUMPY"):
        raise UploadRefused(WHOLE_UPLOAD, "this is one .npy array; save x_train and y_train together with numpy.savez")
    if not head:
        raise UploadRefused(WHOLE_UPLOAD, f"the upload is empty; {ACCEPTED}")
    what = f"a {kind} archive" if kind else f"no archive this service reads (it starts {head[:8]!r})"
    raise UploadRefused(WHOLE_UPLOAD, f"this is {what}; {ACCEPTED}")


@dataclass
class Entry:
    """One member of an archive: its name as stored, its cleaned path, whether it is a folder, its bytes (`read()`,
    counted against the caps; for a tar, only while the iteration stands on it), and how many entries the archive
    has when that is known before reading them (a zip's central directory; None for a tar, a stream)."""

    name: str
    path: str
    is_folder: bool
    read: Callable[[], bytes]
    entries: int | None = None


def _too_many(caps: UploadCaps, name: str) -> UploadRefused:
    return UploadRefused(
        name, f"the archive holds more than {caps.max_entries:,} entries (the cap); split it into smaller datasets"
    )


def _central_directory_size(path: Path) -> int | None:
    """The size the end-of-central-directory record gives the central directory (None when it is not found; the
    zip64 record's when there is one): zipfile reads that many bytes into memory before anything else."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65_557))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    cd_size = struct.unpack("<I", tail[at + 12 : at + 16])[0]
    locator = tail.rfind(b"PK\x06\x07", 0, at)
    if cd_size == 0xFFFFFFFF and locator >= 0:
        with path.open("rb") as f:
            f.seek(struct.unpack("<Q", tail[locator + 8 : locator + 16])[0])
            record = f.read(56)
        if record[:4] == b"PK\x06\x06":
            return int(struct.unpack("<Q", record[40:48])[0])
    return int(cd_size)


def _zip_entries(path: Path, caps: UploadCaps, names: NameRegister) -> Iterator[Entry]:
    cd_size = _central_directory_size(path)
    if cd_size is not None and cd_size > caps.max_entries * CENTRAL_DIRECTORY_BYTES_PER_ENTRY:
        raise _too_many(caps, WHOLE_UPLOAD)
    archive_size = path.stat().st_size
    # A zip's compressed side is the whole file, whatever its headers say about each entry.
    budget = Budget(caps, lambda: archive_size)
    with path.open("rb") as raw_file:
        try:
            z = zipfile.ZipFile(raw_file)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UploadRefused(WHOLE_UPLOAD, f"the zip is damaged ({exc}); {ACCEPTED}") from exc
        with z:
            infos = z.infolist()
            if len(infos) > caps.max_entries:
                raise _too_many(caps, infos[caps.max_entries].filename)
            for info in infos:
                path_ = clean_path(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise UploadRefused(info.filename, "symbolic links are refused; archive the file itself")
                if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise UploadRefused(info.filename, "device files, pipes and sockets are refused; remove it")
                if info.flag_bits & 0x1:
                    raise UploadRefused(info.filename, "the entry is encrypted; archive it without a password")
                names.add(path_, folder=info.is_dir())

                def read(info: zipfile.ZipInfo = info) -> bytes:
                    try:
                        with z.open(info) as member:
                            return read_entry(
                                member,
                                info.filename,
                                caps,
                                budget=budget,
                                compressed=min(info.compress_size, archive_size),
                            )
                    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
                        raise UploadRefused(info.filename, f"the entry is damaged ({exc}); archive it again") from exc

                yield Entry(info.filename, path_, info.is_dir(), read, len(infos))


def _decompressed(raw: CountingFile, fmt: Format) -> Readable:
    # The decompressors read the counting file as they would the file itself.
    as_file = cast(BinaryIO, raw)
    if fmt is Format.TAR_GZ:
        return gzip.GzipFile(fileobj=as_file)
    if fmt is Format.TAR_BZ2:
        return bz2.BZ2File(as_file)
    if fmt is Format.TAR_XZ:
        return lzma.LZMAFile(as_file)
    return raw


def _tar_kind_refused(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return "symbolic links are refused; archive the file itself"
    if member.islnk():
        return "hard links are refused; archive the file itself"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device files and pipes are refused; remove it"
    if member.issparse():
        return "sparse files are refused; archive it as a plain file"
    if not (member.isreg() or member.isdir()):
        return "only plain files and folders are accepted; remove it"
    return None


def _tar_entries(path: Path, fmt: Format, caps: UploadCaps, names: NameRegister) -> Iterator[Entry]:
    with path.open("rb") as raw_file:
        raw = CountingFile(raw_file)
        budget = Budget(caps, lambda: raw.count)
        stream = BudgetedStream(_decompressed(raw, fmt), budget)
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
            raise UploadRefused(WHOLE_UPLOAD, f"the {fmt} is damaged or not a tar ({exc}); {ACCEPTED}") from exc
        count = 0
        with tar:
            members = iter(tar)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    break
                except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
                    raise UploadRefused(stream.current, f"the archive is damaged after this entry ({exc})") from exc
                count += 1
                if count > caps.max_entries:
                    raise _too_many(caps, member.name)
                path_ = clean_path(member.name)
                refused = _tar_kind_refused(member)
                if refused:
                    raise UploadRefused(member.name, refused)
                names.add(path_, folder=member.isdir())
                stream.current = member.name

                def read(member: tarfile.TarInfo = member) -> bytes:
                    data = tar.extractfile(member)
                    if data is None:
                        return b""
                    try:
                        # The budget already counts the stream; the entry's own cap and ratio are checked here.
                        return read_entry(data, member.name, caps, budget=None, compressed_so_far=raw)
                    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
                        raise UploadRefused(member.name, f"the entry is truncated or damaged ({exc})") from exc

                yield Entry(member.name, path_, member.isdir(), read)


def entries(path: Path, fmt: Format, caps: UploadCaps) -> Iterator[Entry]:
    """The entries of the archive at `path`, one at a time, each checked before it is yielded: its name (see
    `names.clean_path`, and no two alike in any letter case), its kind (files and folders only) and the count."""
    names = NameRegister()
    if fmt in (Format.ZIP, Format.NPZ):
        yield from _zip_entries(path, caps, names)
    else:
        yield from _tar_entries(path, fmt, caps, names)
