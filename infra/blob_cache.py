"""A process's local copy of the blobs it uses (a worker's, or the API's), fetched once from the store and bounded
in bytes.

    cache = BlobCache.configured(DatabaseBlobStore())
    with cache.fetch(sha256) as path:  # a verified file, kept while the block runs
        ...

Folder layout (`EPOCHAL_BLOB_CACHE_DIR`):

- `blobs/<sha256>`: complete files, each checked against its name before it got that name. Nothing else there
  counts as cached, so a process killed midway never leaves a half file that a later fetch would trust.
- `partial/<sha256>.<size>.<random>.part`: downloads under way, each locked (flock) by its writer for as long as it
  runs. One nobody holds is a dead writer's and is removed at the next eviction.
- `locks/<xx>.lock`: one fetch at a time per first two hex digits of the hash, across every process of the host,
  so a blob missed by two processes at once is read from the store once.
- `evict.lock`: one eviction at a time, so the byte count it works from stays true.

Processes sharing the folder need no index: a file's mtime is its last use (set at each fetch) and eviction removes
the oldest first until the folder fits the bound. A file in use holds a shared flock, and eviction only removes a
file it can lock exclusively, so a path handed out stays valid until its `with` block ends. Files in use (and a
blob bigger than the whole bound) may take the folder past the bound for as long as they are used.

POSIX only (flock, atomic rename), as the workers are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config import get_settings
from infra.blob_store import SHA256, BlobCorrupt, BlobStore, check_sha256

_clock = threading.Lock()
_last_stamp = 0


def _stamp() -> int:
    """A use's time in ns, later than any stamp this process gave before (file times alone tie within a tick)."""
    global _last_stamp
    with _clock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        return _last_stamp


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not removed, nor replaced, since it was opened)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0  # fetches that read the store


class BlobCache:
    """Blobs of a `BlobStore` as local files, at most `max_bytes` of them besides those in use."""

    def __init__(self, store: BlobStore, directory: Path, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be at least 0")
        self.store = store
        self.directory = directory
        self.max_bytes = max_bytes
        self.counts = CacheCounts()
        self._blobs = directory / "blobs"
        self._partial = directory / "partial"
        self._locks = directory / "locks"
        for folder in (self._blobs, self._partial, self._locks):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def configured(cls, store: BlobStore) -> BlobCache:
        """The cache of this deployment's settings (EPOCHAL_BLOB_CACHE_DIR, EPOCHAL_BLOB_CACHE_BYTES)."""
        settings = get_settings()
        return cls(store, settings.blob_cache_folder, settings.blob_cache_bytes)

    @contextlib.contextmanager
    def fetch(self, sha256: str) -> Iterator[Path]:
        """The blob as a verified local file, read from the store unless cached; kept while the block runs.

        Raises the store's BlobNotFound, or BlobCorrupt when what the store sends does not hash to `sha256` (then
        nothing is kept).
        """
        path = self._blobs / check_sha256(sha256)
        fd = self._open_shared(path)
        if fd is not None:
            self.counts.hits += 1
        while fd is None:
            with self._locked(self._locks / f"{sha256[:2]}.lock"):
                # Another process may have fetched it while this one waited for the lock.
                fd = self._open_shared(path)
                if fd is not None:
                    self.counts.hits += 1
                else:
                    fd = self._download(sha256, path)
                    self.counts.misses += 1
                    if not _same_file(fd, path):  # evicted in the moment its lock went from exclusive to shared
                        os.close(fd)
                        fd = None
        try:
            used = _stamp()
            os.utime(fd, ns=(used, used))
            yield path
        finally:
            os.close(fd)

    def cached(self) -> dict[str, int]:
        """The blobs in the folder now, with their sizes."""
        return {name: size for name, size, _ in self._entries()}

    def _open_shared(self, path: Path) -> int | None:
        """The complete file open under a shared lock, or None when there is none."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        if _same_file(fd, path):
            return fd
        os.close(fd)  # evicted between the open and the lock
        return None

    def _download(self, sha256: str, path: Path) -> int:
        """Read the blob from the store into a partial file, check it, and give it its name; returns it open, locked."""
        size = self.store.size(sha256)
        self._make_room(size)
        fd, partial = self._new_partial(sha256, size)
        try:
            digest = hashlib.sha256()
            written = 0
            for chunk in self.store.read(sha256):
                written += len(chunk)
                if written > size:
                    raise BlobCorrupt(f"blob {sha256} sent more than its {size} bytes")
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if written != size or digest.hexdigest() != sha256:
                raise BlobCorrupt(
                    f"blob {sha256} read back as {written} bytes hashing to {digest.hexdigest()}: refused, not kept"
                )
            os.fsync(fd)  # the content is on disk before the name says it is complete
            os.replace(partial, path)
            self._sync_folder(self._blobs)
            fcntl.flock(fd, fcntl.LOCK_SH)
            return fd
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            os.close(fd)
            raise

    def _new_partial(self, sha256: str, size: int) -> tuple[int, Path]:
        while True:
            partial = self._partial / f"{sha256}.{size}.{secrets.token_hex(8)}.part"
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, partial):
                return fd, partial
            os.close(fd)  # taken for a dead writer's by an eviction between the create and the lock

    def _make_room(self, incoming: int) -> None:
        """Remove the least recently used files until `incoming` more bytes fit the bound (those in use stay)."""
        with self._locked(self.directory / "evict.lock"):
            total = self._clear_dead_partials() + sum(size for _, size, _ in self._entries())
            for name, size, _ in sorted(self._entries(), key=lambda entry: entry[2]):
                if total + incoming <= self.max_bytes:
                    break
                if self._remove_unused(self._blobs / name):
                    total -= size

    def _entries(self) -> Iterator[tuple[str, int, int]]:
        """(sha256, size, last use in ns) of each complete file."""
        with os.scandir(self._blobs) as entries:
            for entry in entries:
                if SHA256.match(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        stat = entry.stat()
                        yield entry.name, stat.st_size, stat.st_mtime_ns

    def _clear_dead_partials(self) -> int:
        """Remove the partial files of writers that died; the bytes the live ones will take when complete."""
        live = 0
        with os.scandir(self._partial) as entries:
            for entry in entries:
                if not self._remove_unused(Path(entry.path)):
                    parts = entry.name.split(".")
                    live += int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else 0
        return live

    @staticmethod
    def _remove_unused(path: Path) -> bool:
        """Remove the file unless someone holds a lock on it; whether it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if _same_file(fd, path):
                path.unlink()
            return True
        finally:
            os.close(fd)

    @staticmethod
    @contextlib.contextmanager
    def _locked(path: Path) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _sync_folder(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
