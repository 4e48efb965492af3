"""What storing blobs in the database costs, against writing the same bytes to a plain file, and what the cache saves.

    python bench/blob_store.py [--mib 64] [--repeats 3] [--database-url postgresql+psycopg://...]

In a scratch database (a SQLite file by default, or the PostgreSQL database named by --database-url, where the blob
tables are created and dropped again), for `--mib` MiB of random bytes in 1 MiB pieces:

- floor: the same pieces written to a plain file with one fsync at the end, and read back; and written with an
  fsync per piece, as durable as the store's commit per chunk;
- put (new content each repeat) and put of content stored already (the dedupe path), then read;
- the worker's cache: a cold fetch (read from the database, hashed, written, synced, renamed) and a warm one (a hit),
  and reading the cached file.

Prints the median of the repeats in MB/s (10^6 bytes per second), and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PIECE = 2**20
# What is compared with the floor: everything that writes the blob somewhere durable.
WRITES = {
    "floor: plain file write + fsync",
    "plain file, fsync per MiB",
    "put (new content)",
    "put (stored already: dedupe)",
    "cache: cold fetch (read, hash, write, fsync)",
}


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="epochal-blob-bench-"))
    os.environ["EPOCHAL_STATE_DIR"] = str(scratch)
    os.environ["EPOCHAL_DATABASE_URL"] = args.database_url or f"sqlite:///{scratch / 'bench.db'}"

    from infra.blob_cache import BlobCache
    from models.blob_store import DatabaseBlobStore
    from models.blobs import Blob, BlobChunk
    from models.db import get_engine

    engine = get_engine()
    tables = [Blob.__table__, BlobChunk.__table__]
    Blob.metadata.create_all(engine, tables=tables)  # type: ignore[arg-type]
    store = DatabaseBlobStore()
    total = args.mib * PIECE
    base = os.urandom(total)

    def pieces(repeat: int) -> Iterator[bytes]:
        # A different first piece per repeat: every put stores new content unless asked not to.
        view = memoryview(base)
        yield repeat.to_bytes(8, "big") + view[8:PIECE].tobytes()
        for start in range(PIECE, total, PIECE):
            yield view[start : start + PIECE].tobytes()

    def floor_write(repeat: int, sync_each: bool = False) -> None:
        with (scratch / "floor.bin").open("wb") as out:
            for piece in pieces(repeat):
                out.write(piece)
                if sync_each:  # as durable as the store, which commits each chunk
                    out.flush()
                    os.fsync(out.fileno())
            out.flush()
            os.fsync(out.fileno())

    def floor_read() -> None:
        with (scratch / "floor.bin").open("rb") as stream:
            while stream.read(PIECE):
                pass

    def read_all(sha: str) -> None:
        for _chunk in store.read(sha):
            pass

    def fetch(cache: BlobCache, sha: str, read: bool = False) -> None:
        with cache.fetch(sha) as path:
            if read:
                with path.open("rb") as stream:
                    while stream.read(PIECE):
                        pass

    figures: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        figures.setdefault(name, []).append(seconds)

    try:
        for repeat in range(args.repeats):
            record("floor: plain file write + fsync", timed(partial(floor_write, repeat)))
            record("floor: plain file read", timed(floor_read))
            record("plain file, fsync per MiB", timed(partial(floor_write, repeat, True)))
            started = time.perf_counter()
            sha = store.put(pieces(repeat))
            record("put (new content)", time.perf_counter() - started)
            record("put (stored already: dedupe)", timed(partial(store.put, pieces(repeat))))
            record("read (all chunks)", timed(partial(read_all, sha)))
            cache = BlobCache(store, scratch / f"cache-{repeat}", max_bytes=4 * total)
            record("cache: cold fetch (read, hash, write, fsync)", timed(partial(fetch, cache, sha)))
            record("cache: warm fetch (a hit)", timed(partial(fetch, cache, sha)))
            record("cache: warm fetch + read the file", timed(partial(fetch, cache, sha, True)))
            assert cache.counts.misses == 1
            record("sweep (free it)", timed(partial(store.sweep, set(), 0)))
            with cache.fetch(sha) as path:  # still cached after the sweep: the cache keeps what it checked
                assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    finally:
        if args.database_url:
            Blob.metadata.drop_all(engine, tables=tables)  # type: ignore[arg-type]
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)

    floor = statistics.median(figures["floor: plain file write + fsync"])
    print(f"database: {engine.dialect.name}; {args.mib} MiB in 1 MiB chunks; median of {args.repeats}")
    print(f"{'what':<46} {'seconds':>9} {'MB/s':>9} {'x floor':>8}")
    for name, runs in figures.items():
        seconds = statistics.median(runs)
        # A hit reads nothing: its time is the figure, not a rate.
        rate = "" if "a hit" in name else f"{total / seconds / 1e6:9.0f}"
        ratio = f"{seconds / floor:8.1f}" if name in WRITES else ""
        print(f"{name:<46} {seconds:9.4f} {rate:>9} {ratio:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
