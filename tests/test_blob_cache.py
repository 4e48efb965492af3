"""The worker's local cache of blobs, over the database's store: fetched once, checked on the way in, bounded in
bytes (least recently used out first), written so that no half file ever counts, shared by processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

import infra.blob_cache
from config import Settings
from infra.blob_cache import BlobCache
from infra.blob_store import BlobCorrupt, BlobNotFound, Swept
from models.blob_store import DatabaseBlobStore
from models.blobs import Blob, BlobChunk
from models.db import session_scope
from tests.support import ROOT

CHUNK = 64 * 1024
SIZE = 3 * CHUNK + 17  # every blob of these tests: four chunks


class CountedStore:
    """The real store, counting the reads a cache makes of it."""

    def __init__(self, store: DatabaseBlobStore) -> None:
        self.store = store
        self.reads: list[str] = []

    def put(self, chunks: Iterable[bytes]) -> str:
        return self.store.put(chunks)

    def has(self, sha256: str) -> bool:
        return self.store.has(sha256)

    def size(self, sha256: str) -> int:
        return self.store.size(sha256)

    def read(self, sha256: str) -> Iterator[bytes]:
        self.reads.append(sha256)
        return self.store.read(sha256)

    def sweep(self, referenced: Collection[str], grace_s: float) -> Swept:
        return self.store.sweep(referenced, grace_s)


@pytest.fixture
def store(db: str) -> CountedStore:
    return CountedStore(DatabaseBlobStore(chunk_bytes=CHUNK))


def put_blobs(store: CountedStore, count: int) -> dict[str, bytes]:
    contents = [os.urandom(SIZE) for _ in range(count)]
    return {store.put([content]): content for content in contents}


def leftovers(cache: BlobCache) -> list[str]:
    return sorted(path.name for path in (cache.directory / "partial").iterdir())


def test_a_miss_reads_the_store_once_and_every_later_fetch_is_a_hit(store: CountedStore, tmp_path: Path) -> None:
    [(sha, content)] = put_blobs(store, 1).items()
    cache = BlobCache(store, tmp_path, max_bytes=10 * SIZE)
    with cache.fetch(sha) as path:
        assert path.read_bytes() == content
    with cache.fetch(sha) as path:
        assert path.read_bytes() == content
    assert (cache.counts.misses, cache.counts.hits, store.reads) == (1, 1, [sha])
    # Another process's cache on the same folder finds it too.
    other = BlobCache(store, tmp_path, max_bytes=10 * SIZE)
    with other.fetch(sha) as path:
        assert path.read_bytes() == content
    assert (other.counts.misses, other.counts.hits, store.reads) == (0, 1, [sha])
    assert cache.cached() == {sha: SIZE} and leftovers(cache) == []


def test_the_least_recently_used_blobs_go_first_when_bytes_run_out(store: CountedStore, tmp_path: Path) -> None:
    a, b, c, d = put_blobs(store, 4)
    cache = BlobCache(store, tmp_path, max_bytes=3 * SIZE)
    for sha in (a, b, c, a):  # a used again: b is now the least recently used
        with cache.fetch(sha):
            pass
    with cache.fetch(d):
        pass
    assert set(cache.cached()) == {a, c, d}
    assert sum(cache.cached().values()) <= cache.max_bytes
    with cache.fetch(b):  # b again: read from the store again, and c (now the oldest) makes room
        pass
    assert set(cache.cached()) == {a, d, b}
    assert store.reads == [a, b, c, d, b]


def test_a_blob_in_use_is_never_evicted(store: CountedStore, tmp_path: Path) -> None:
    blobs = put_blobs(store, 4)
    a, b, c, d = blobs
    cache = BlobCache(store, tmp_path, max_bytes=2 * SIZE)
    with cache.fetch(a) as path:
        for sha in (b, c):
            with cache.fetch(sha):
                pass
        # a is the oldest, but in use: b went instead, and a's path still holds a's content.
        assert path.read_bytes() == blobs[a]
        assert set(cache.cached()) == {a, c}
    with cache.fetch(d):
        pass
    assert set(cache.cached()) == {c, d}


def test_content_that_does_not_hash_to_its_name_is_refused_and_nothing_kept(
    store: CountedStore, tmp_path: Path
) -> None:
    same_length, shorter = put_blobs(store, 2)
    with session_scope() as session:
        for sha, data in ((same_length, os.urandom(CHUNK)), (shorter, b"x")):
            blob_id = session.scalar(select(Blob.id).where(Blob.sha256 == sha))
            session.execute(update(BlobChunk).where(BlobChunk.blob_id == blob_id, BlobChunk.seq == 1).values(data=data))
    cache = BlobCache(store, tmp_path, max_bytes=10 * SIZE)
    for sha in (same_length, shorter):
        with pytest.raises(BlobCorrupt, match="refused"), cache.fetch(sha):
            pass
    assert cache.cached() == {} and leftovers(cache) == []
    assert not (tmp_path / "blobs" / same_length).exists()


def test_a_read_that_breaks_off_keeps_nothing(store: CountedStore, tmp_path: Path) -> None:
    [sha] = put_blobs(store, 1)

    class SweptWhileRead(CountedStore):
        def read(self, sha256: str) -> Iterator[bytes]:
            chunks = self.store.read(sha256)
            yield next(chunks)
            self.store.sweep(set(), grace_s=0)  # the blob goes while the cache is still reading it
            yield from chunks

    cache = BlobCache(SweptWhileRead(store.store), tmp_path, max_bytes=10 * SIZE)
    with pytest.raises(BlobNotFound, match="swept while being read"), cache.fetch(sha):
        pass
    assert cache.cached() == {} and leftovers(cache) == []
    with pytest.raises(BlobNotFound), cache.fetch(sha):
        pass


KILLED_FETCH = """
import os, signal, sys
from pathlib import Path
from infra.blob_cache import BlobCache
from models.blob_store import DatabaseBlobStore

class DiesWhileReading(DatabaseBlobStore):
    def read(self, sha256):
        for n, chunk in enumerate(super().read(sha256)):
            if n == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            yield chunk

cache = BlobCache(DiesWhileReading(chunk_bytes={chunk}), Path(sys.argv[1]), max_bytes=10**9)
with cache.fetch(sys.argv[2]):
    pass
"""


def test_a_fetch_killed_midway_leaves_no_cached_file_and_its_partial_is_cleared(
    store: CountedStore, tmp_path: Path
) -> None:
    [(sha, content)] = put_blobs(store, 1).items()
    result = subprocess.run(
        [sys.executable, "-c", KILLED_FETCH.format(chunk=CHUNK), str(tmp_path), sha],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    cache = BlobCache(store, tmp_path, max_bytes=10 * SIZE)
    [partial] = leftovers(cache)  # the dead writer's half file, never under the blob's name
    assert partial.startswith(sha) and (tmp_path / "partial" / partial).stat().st_size == 2 * CHUNK
    assert cache.cached() == {}
    with cache.fetch(sha) as path:
        assert path.read_bytes() == content
    assert cache.counts.misses == 1 and leftovers(cache) == []


SHARING_PROCESS = """
import hashlib, json, random, sys
from pathlib import Path
from infra.blob_cache import BlobCache
from models.blob_store import DatabaseBlobStore

folder, bound, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
cache = BlobCache(DatabaseBlobStore(chunk_bytes={chunk}), folder, max_bytes=bound)
random.seed(sys.argv[4])
wrong = []
for sha in random.sample(names * 3, len(names) * 3):
    with cache.fetch(sha) as path:
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            wrong.append(sha)
print(json.dumps({{"wrong": wrong, "misses": cache.counts.misses, "hits": cache.counts.hits}}))
"""


def run_sharing(folder: Path, bound: int, names: list[str], processes: int) -> list[dict[str, object]]:
    script = SHARING_PROCESS.format(chunk=CHUNK)
    running = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(folder), str(bound), ",".join(names), str(seed)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(processes)
    ]
    answers = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        answers.append(json.loads(out))
    return answers


def test_processes_sharing_a_folder_read_each_blob_once_when_it_fits(store: CountedStore, tmp_path: Path) -> None:
    names = list(put_blobs(store, 3))
    answers = run_sharing(tmp_path, 10 * SIZE, names, processes=3)
    assert [answer["wrong"] for answer in answers] == [[], [], []]
    # However the three interleaved, each blob was read from the store by one of them, once.
    assert sum(int(answer["misses"]) for answer in answers) == len(names)  # type: ignore[call-overload]
    cache = BlobCache(store, tmp_path, max_bytes=10 * SIZE)
    assert set(cache.cached()) == set(names) and leftovers(cache) == []


def test_processes_evicting_in_one_folder_always_see_whole_verified_files(store: CountedStore, tmp_path: Path) -> None:
    names = list(put_blobs(store, 6))
    answers = run_sharing(tmp_path, 3 * SIZE, names, processes=3)
    assert [answer["wrong"] for answer in answers] == [[], [], []]
    cache = BlobCache(store, tmp_path, max_bytes=3 * SIZE)
    assert sum(cache.cached().values()) <= 3 * SIZE and leftovers(cache) == []
    for sha, size in cache.cached().items():
        assert size == SIZE and hashlib.sha256((tmp_path / "blobs" / sha).read_bytes()).hexdigest() == sha


def test_names_that_are_no_hash_never_reach_the_disk(store: CountedStore, tmp_path: Path) -> None:
    cache = BlobCache(store, tmp_path / "cache", max_bytes=SIZE)
    for bad in ("../../escaped", "A" * 64, ""):
        with pytest.raises(ValueError, match="64 lowercase hex"), cache.fetch(bad):
            pass
    with pytest.raises(BlobNotFound), cache.fetch(hashlib.sha256(b"never stored").hexdigest()):
        pass
    assert not (tmp_path / "escaped").exists() and cache.cached() == {} and store.reads == []


def test_the_configured_cache_follows_the_settings(
    store: CountedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path / "state", blob_cache_bytes=5 * SIZE)
    monkeypatch.setattr(infra.blob_cache, "get_settings", lambda: settings)
    cache = BlobCache.configured(store)
    assert (cache.directory, cache.max_bytes) == ((tmp_path / "state" / "blob-cache").resolve(), 5 * SIZE)
    elsewhere = Settings(state_dir=tmp_path / "state", blob_cache_dir=tmp_path / "elsewhere")
    monkeypatch.setattr(infra.blob_cache, "get_settings", lambda: elsewhere)
    assert BlobCache.configured(store).directory == tmp_path / "elsewhere"
