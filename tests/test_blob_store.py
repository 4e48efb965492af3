"""The database's blob store on the suite's real database: content in chunks, named by its hash, visible only once
complete, stored once, freed once nothing references it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from infra.blob_store import BlobNotFound, BlobStore, BlobWriteLost, check_sha256, file_chunks, rechunk
from models.base import utcnow
from models.blob_store import DatabaseBlobStore
from models.blobs import Blob, BlobChunk
from models.db import session_scope
from tests.support import ROOT

CHUNK = 64 * 1024  # small chunks: many of them in little content


@pytest.fixture
def store(db: str) -> DatabaseBlobStore:
    return DatabaseBlobStore(chunk_bytes=CHUNK)


def rows() -> tuple[list[tuple[str | None, int, int]], int]:
    """(sha256, size, chunks) of every blob row, and how many chunk rows there are."""
    with session_scope() as session:
        blobs = [tuple(r) for r in session.execute(select(Blob.sha256, Blob.size, Blob.chunks).order_by(Blob.id))]
        chunks = session.scalar(select(func.count()).select_from(BlobChunk)) or 0
    return blobs, chunks  # type: ignore[return-value]


def pieces(content: bytes, sizes: list[int]) -> Iterator[bytes]:
    start = 0
    for size in [*sizes, len(content)]:
        if start < len(content):
            yield content[start : start + size]
            start += size


def test_the_database_store_is_a_blob_store(store: DatabaseBlobStore) -> None:
    typed: BlobStore = store  # mypy holds the implementation to the protocol here
    assert typed.has("0" * 64) is False


def test_multi_chunk_content_comes_back_whole_in_chunks_of_the_stores_size(store: DatabaseBlobStore) -> None:
    content = os.urandom(3 * CHUNK + 123)
    # Pieces that fit no chunk boundary: one byte, most of a chunk, a few, then the rest at once.
    sha = store.put(pieces(content, [1, CHUNK - 5, 7, 2 * CHUNK]))
    assert sha == hashlib.sha256(content).hexdigest()
    assert store.has(sha) and store.size(sha) == len(content)
    read = list(store.read(sha))
    assert [len(chunk) for chunk in read] == [CHUNK, CHUNK, CHUNK, 123]
    assert b"".join(read) == content
    assert rows() == ([(sha, len(content), 4)], 4)


def test_empty_content_is_a_blob_too(store: DatabaseBlobStore) -> None:
    sha = store.put([])
    assert sha == hashlib.sha256(b"").hexdigest()
    assert store.size(sha) == 0 and list(store.read(sha)) == []


def test_a_file_streams_in(store: DatabaseBlobStore, tmp_path: Path) -> None:
    content = os.urandom(2 * CHUNK + 1)
    path = tmp_path / "content.bin"
    path.write_bytes(content)
    with path.open("rb") as stream:
        sha = store.put(file_chunks(stream, 1000))
    assert b"".join(store.read(sha)) == content


def test_the_same_content_put_twice_is_stored_once_and_renewed(store: DatabaseBlobStore) -> None:
    content = os.urandom(2 * CHUNK + 10)
    sha = store.put([content])
    with session_scope() as session:
        session.execute(update(Blob).values(touched_at=utcnow() - timedelta(days=1)))
    again = store.put(pieces(content, [100, 3 * CHUNK]))
    assert again == sha
    assert rows() == ([(sha, len(content), 3)], 3)
    with session_scope() as session:
        touched = session.scalar(select(Blob.touched_at))
    assert touched is not None and utcnow() - touched.replace(tzinfo=utcnow().tzinfo) < timedelta(hours=1)


def test_concurrent_puts_of_the_same_content_store_it_once(store: DatabaseBlobStore) -> None:
    content = os.urandom(4 * CHUNK)
    results: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(store.put(pieces(content, [CHUNK // 3] * 20)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert set(results) == {hashlib.sha256(content).hexdigest()} and len(results) == 4
    assert rows() == ([(results[0], len(content), 4)], 4)


def test_put_writes_each_chunk_as_it_reads_and_never_holds_the_whole(store: DatabaseBlobStore) -> None:
    count = 64  # 64 chunks, 4 MiB
    committed_when_yielding: list[int] = []
    expected = hashlib.sha256()

    def source() -> Iterator[bytes]:
        for _ in range(count):
            _, chunks = rows()
            committed_when_yielding.append(chunks)
            piece = os.urandom(CHUNK)
            expected.update(piece)
            yield piece

    store.put([b"warm"])  # statements compiled and cached before memory is traced
    tracemalloc.start()
    try:
        sha = store.put(source())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sha == expected.hexdigest()
    # Each piece was asked for only once the ones before it were stored: nothing piles up waiting to be written.
    assert committed_when_yielding == [1 + k for k in range(count)]  # the warm-up blob's one chunk, then ours
    # A few chunks' worth (the piece, the chunk being cut, the driver's copy, the statements' own), not the 64.
    assert peak < 16 * CHUNK, f"put of {count} chunks peaked at {peak} bytes traced"


def test_a_put_that_fails_midway_leaves_nothing(store: DatabaseBlobStore) -> None:
    def source() -> Iterator[bytes]:
        yield os.urandom(3 * CHUNK)
        raise RuntimeError("the upload broke off")

    with pytest.raises(RuntimeError, match="broke off"):
        store.put(source())
    assert rows() == ([], 0)


KILLED_PUT = """
import os, signal
from models.blob_store import DatabaseBlobStore

def source():
    for _ in range(3):
        yield os.urandom({chunk})
    os.kill(os.getpid(), signal.SIGKILL)
    yield b""

DatabaseBlobStore(chunk_bytes={chunk}).put(source())
"""


def test_a_put_killed_midway_is_invisible_and_swept_once_idle(store: DatabaseBlobStore) -> None:
    result = subprocess.run(
        [sys.executable, "-c", KILLED_PUT.format(chunk=CHUNK)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    blobs, chunks = rows()
    assert blobs == [(None, 3 * CHUNK, 3)] and chunks == 3  # what it wrote, unnamed: nobody can ask for it
    assert store.sweep(set(), grace_s=3600).unfinished == 0  # a put idle for less than the grace may still go on
    swept = store.sweep(set(), grace_s=0)
    assert (swept.blobs, swept.unfinished, swept.bytes) == ([], 1, 3 * CHUNK)
    assert rows() == ([], 0)


def test_sweep_frees_what_nothing_references_and_keeps_the_rest(store: DatabaseBlobStore) -> None:
    kept, dropped, young = (os.urandom(2 * CHUNK + n) for n in (1, 2, 3))
    kept_sha, dropped_sha = store.put([kept]), store.put([dropped])
    with session_scope() as session:
        session.execute(update(Blob).values(touched_at=utcnow() - timedelta(hours=2)))
    young_sha = store.put([young])
    swept = store.sweep({kept_sha}, grace_s=3600)
    # Only the old unreferenced one: the young one was just put, and its caller may not have committed its reference.
    assert (swept.blobs, swept.unfinished, swept.bytes) == ([dropped_sha], 0, len(dropped))
    assert not store.has(dropped_sha) and store.has(kept_sha) and store.has(young_sha)
    with pytest.raises(BlobNotFound):
        store.read(dropped_sha)
    assert rows() == ([(kept_sha, len(kept), 3), (young_sha, len(young), 3)], 6)
    assert store.sweep({kept_sha}, grace_s=0).blobs == [young_sha]
    assert rows() == ([(kept_sha, len(kept), 3)], 3)


def test_a_put_swept_while_it_stalled_fails_and_leaves_nothing(store: DatabaseBlobStore) -> None:
    def source() -> Iterator[bytes]:
        yield os.urandom(CHUNK)
        store.sweep(set(), grace_s=0)  # the put's row counts as idle now
        yield os.urandom(CHUNK)

    with pytest.raises(BlobWriteLost, match="partial content was freed"):
        store.put(source())
    assert rows() == ([], 0)


def test_a_blob_swept_while_read_ends_the_read(store: DatabaseBlobStore) -> None:
    sha = store.put([os.urandom(3 * CHUNK)])
    reading = store.read(sha)
    assert len(next(reading)) == CHUNK
    store.sweep(set(), grace_s=0)
    with pytest.raises(BlobNotFound, match="swept while being read"):
        next(reading)


def test_unknown_and_malformed_names(store: DatabaseBlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(missing)
    with pytest.raises(BlobNotFound):
        store.size(missing)
    with pytest.raises(BlobNotFound):
        store.read(missing)
    for bad in ("../../etc/passwd", missing.upper(), missing[:-1], ""):
        with pytest.raises(ValueError, match="64 lowercase hex"):
            check_sha256(bad)
        with pytest.raises(ValueError):
            store.has(bad)


def test_rechunk_cuts_exact_chunks_without_joining_the_whole() -> None:
    big = os.urandom(10 * 1000 + 7)
    out = list(rechunk([b"ab", big, memoryview(b"cd")], 1000))
    assert [len(c) for c in out] == [1000] * 10 + [11]
    assert b"".join(out) == b"ab" + big + b"cd"
    assert list(rechunk([b"", b""], 4)) == []
