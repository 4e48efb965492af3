"""What any store of blobs offers: content in, a sha256 out; the content back as a stream of chunks, by its hash.

A blob is immutable bytes named by their sha256. The API and the workers share only the database and the broker, so
a store keeps its content where every process reaches it (`models/blob_store.py`: chunks in the database; an
object store can be a second implementation of the same protocol). A process that needs a blob as a file goes
through the local cache (`infra/blob_cache.py`), which checks the hash itself and so trusts no store.

The contract every implementation keeps:

- `put` reads its chunks one at a time and never holds the whole content; it hashes on the way in.
- A blob is visible (`has`, `size`, `read`) only once all of its content is stored: a put that fails or dies
  midway leaves nothing anyone can read, only garbage that `sweep` removes.
- The same content put twice is stored once.
- `sweep` frees what nothing references. Each put renews its blob, and a blob put within `grace_s` is never
  swept, so a caller has that long to commit the row that references the hash a put returned.

Pure Python with no service import: models/ implements it, the worker's cache consumes it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 2**20  # how much of a blob is read or written at a time


class BlobError(Exception):
    """Something about a blob that its caller can act on; the message says what."""


class BlobNotFound(BlobError):
    """No complete blob has this hash (never stored, swept, or still being written)."""


class BlobCorrupt(BlobError):
    """Content read back does not hash to the name it was asked for (or has another size than recorded)."""


class BlobWriteLost(BlobError):
    """A put's partial content was swept before it finished (it stalled past the grace): put it again."""


@dataclass(frozen=True)
class Swept:
    """What a sweep freed: the complete blobs nothing referenced, the puts that never finished, and their bytes."""

    blobs: list[str] = field(default_factory=list)
    unfinished: int = 0
    bytes: int = 0


def check_sha256(sha256: str) -> str:
    """The hash if it is 64 lowercase hex digits (the only names a blob has); ValueError otherwise.

    Names become file names in the cache, so nothing else may pass: not `../x`, not an upper-case twin.
    """
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise ValueError(f"a blob is named by its sha256 as 64 lowercase hex digits, not {sha256!r:.80}")
    return sha256


def rechunk(pieces: Iterable[bytes | bytearray | memoryview], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The pieces' bytes again, in chunks of exactly `chunk_bytes` (the last one shorter, none empty).

    Holds at most one chunk besides the piece being cut: a piece larger than a chunk is sliced through a
    memoryview, never copied whole.
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be at least 1")
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece).cast("B")
        while view.nbytes:
            take = min(chunk_bytes - len(buffer), view.nbytes)
            buffer += view[:take]
            view = view[take:]
            if len(buffer) == chunk_bytes:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


def file_chunks(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A binary file's content, read `chunk_bytes` at a time, for `put`."""
    while piece := stream.read(chunk_bytes):
        yield piece


class BlobStore(Protocol):
    """Content-addressed, immutable blobs that every process of the service reaches."""

    def put(self, chunks: Iterable[bytes]) -> str:
        """Store the content the chunks make up, reading them one at a time; return its sha256.

        Visible to others only once complete; content stored already is not stored again (the put renews it).
        """
        ...

    def has(self, sha256: str) -> bool:
        """Whether a complete blob has this hash."""
        ...

    def size(self, sha256: str) -> int:
        """The blob's size in bytes; BlobNotFound when there is none."""
        ...

    def read(self, sha256: str) -> Iterator[bytes]:
        """The blob's content in chunks, as stored (the reader checks the hash); BlobNotFound at the call when
        there is none, and from the iterator if it is swept while read."""
        ...

    def sweep(self, referenced: Collection[str], grace_s: float) -> Swept:
        """Free every blob not in `referenced` and not put within `grace_s`, and every unfinished put idle that long."""
        ...
