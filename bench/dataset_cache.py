"""A worker's first epoch on an uploaded dataset with its blob cache cold, then warm.

    python bench/dataset_cache.py [--images 20000] [--side 32] [--repeats 3] [--database-url postgresql+psycopg://...]

It prepares a synthetic RGB dataset of `--images` images (`--side` pixels square, 10 classes) as POST /datasets does
(`training.uploads.ingest` on an .npz, packed by `worker.datasets.pack`), stores the packed tar in the blob store of a
scratch database (a SQLite file by default, or the PostgreSQL database named by --database-url: its tables are
created and dropped), then runs what a training job runs for it, `worker.tasks.packed_dataset` and one epoch of
`training.runner.run_experiment` (the MLP), `--repeats` times with an empty cache folder (cold: the blob is read from
the database, checked against its hash and written to the cache) and as many with the cache kept (warm). Prints the
fetch, the epoch and the whole job's data-to-first-epoch time for each, and their medians; the warm fetch is the
cache hit alone (a lookup and a lock), the epoch is the same work either way because the arrays are memory-mapped
from the cached file in both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASSES = 10


def make_packed(workdir: Path, images: int, side: int) -> Path:
    """A packed dataset of `images` noisy RGB images, a bright square at a class's place on each."""
    from training.uploads import UploadOptions, ingest
    from worker.datasets import pack

    rng = np.random.default_rng(0)
    x = rng.integers(0, 80, (images, side, side, 3), dtype=np.uint8)
    y = np.arange(images) % CLASSES
    cell = max(1, side // 4)
    for label in range(CLASSES):
        row, col = divmod(label, 4)
        x[y == label, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = 220
    source = workdir / "upload.npz"
    np.savez(source, x_train=x, y_train=y)
    prepared = ingest(source, workdir / "prepared", UploadOptions(test_fraction=0.1))
    return pack(prepared.path, workdir / "packed.tar")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="epochal-dataset-cache-"))
    os.environ["EPOCHAL_STATE_DIR"] = str(scratch)
    os.environ["EPOCHAL_DATABASE_URL"] = args.database_url or f"sqlite:///{scratch / 'bench.db'}"
    os.environ["EPOCHAL_BLOB_CACHE_DIR"] = str(scratch / "cache")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from infra.blob_store import file_chunks
    from models import Base
    from models.blob_store import DatabaseBlobStore
    from models.db import get_engine
    from training.packed import open_packed
    from training.runner import run_experiment
    from training.spec import DatasetInfo, ExperimentSpec, Network
    from worker.tasks import packed_dataset

    engine = get_engine()
    Base.metadata.create_all(engine)
    try:
        packed = make_packed(scratch, args.images, args.side)
        with packed.open("rb") as stream:
            sha = DatabaseBlobStore().put(file_chunks(stream))
        arrays = open_packed(packed)
        shape = tuple(int(s) for s in arrays.x_train.shape[1:])
        info = DatasetInfo(
            "bench", arrays.class_names, shape, Network.MLP, "test", "", len(arrays.y_train), 1, sha, "resize"
        )
        spec = ExperimentSpec.with_datasets({"dataset": "bench", "epochs": 1, "batch_size": 64}, lambda *_: info)
        size_mb = packed.stat().st_size / 2**20
        print(
            f"{engine.dialect.name}; {args.images:,} images of {args.side}x{args.side}x3 ({size_mb:.0f} MB packed); "
            f"the MLP, 1 epoch, batch 64; {args.repeats} runs each"
        )
        print(f"{'cache':<6} {'fetch s':>8} {'epoch s':>8} {'job s':>8}")
        figures: dict[str, list[tuple[float, float, float]]] = {"cold": [], "warm": []}
        for state in ("cold", "warm"):
            for _ in range(args.repeats):
                if state == "cold":
                    shutil.rmtree(scratch / "cache", ignore_errors=True)
                started = time.perf_counter()
                with packed_dataset(info) as path:
                    fetched = time.perf_counter() - started
                    result = run_experiment(spec, scratch, scratch / "work", packed=path)
                job = time.perf_counter() - started
                epoch = result.epochs[0].seconds
                figures[state].append((fetched, epoch, job))
                print(f"{state:<6} {fetched:>8.3f} {epoch:>8.2f} {job:>8.2f}")
        for state, rows in figures.items():
            fetch, epoch, job = (statistics.median(column) for column in zip(*rows, strict=True))
            print(f"median {state}: fetch {fetch:.3f} s, epoch {epoch:.2f} s, job {job:.2f} s")
        cold, warm = (statistics.median(r[0] for r in figures[s]) for s in ("cold", "warm"))
        print(f"a cold fetch costs {cold - warm:.2f} s more than a warm one ({size_mb / max(cold, 1e-9):.0f} MB/s)")
    finally:
        Base.metadata.drop_all(engine)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
