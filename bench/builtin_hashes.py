"""What a built-in's content hash costs a worker: the first read of its data, and every later job's cache hit.

    python bench/builtin_hashes.py [--data-dir DIR] [--repeats 5]

Hashes the mnist arrays (60,000 + 10,000 at 28x28 uint8: 55 MB, the real sizes) and a cats vs dogs folder of
3,000 files of 22 KB (about the real one's 68 MB), generated in a temporary folder unless `--data-dir` holds the
real ones; then asks again with nothing changed (the kept hash: a stat of the data file, or of every image file).
Prints seconds per hash and MB/s. The loaders themselves are not timed: a job reads the data anyway.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.spec import Dataset


def _best(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def _mnist(folder: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (60_000, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 60_000, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10_000, dtype=np.uint8),
    }
    np.savez(folder / "mnist.npz", **arrays)  # type: ignore[arg-type]  # numpy's stubs read ** as allow_pickle


def _cats_vs_dogs(folder: Path) -> None:
    import os

    for split, count in (("train", 1000), ("validation", 500)):
        for cls in ("cats", "dogs"):
            target = folder / "cats_vs_dogs" / split / cls
            target.mkdir(parents=True)
            for i in range(count):
                (target / f"{cls[:-1]}.{i}.jpg").write_bytes(os.urandom(22_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, help="a folder with mnist.npz and cats_vs_dogs/ (else generated)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from training.datafiles import in_data_dir

    with tempfile.TemporaryDirectory(prefix="builtin-hashes-") as scratch:
        folder = args.data_dir or Path(scratch)
        if not in_data_dir(Dataset.MNIST, folder):
            _mnist(folder)
        if not in_data_dir(Dataset.CATS_VS_DOGS, folder):
            _cats_vs_dogs(folder)
        for dataset in (Dataset.MNIST, Dataset.CATS_VS_DOGS):
            print(_measure(dataset, folder, args.repeats))


def _measure(dataset: Dataset, folder: Path, repeats: int) -> str:
    from training.builtin_content import forget_cached
    from training.data import builtin_content_sha256, load_raw
    from training.spec import DATASETS

    info = DATASETS[dataset]
    train, test = load_raw(dataset, folder)
    if dataset is Dataset.CATS_VS_DOGS:
        size = sum(Path(str(p)).stat().st_size for p in (*train.inputs, *test.inputs))
    else:
        size = sum(a.nbytes for a in (train.inputs, train.labels, test.inputs, test.labels))

    def fresh() -> None:
        forget_cached()
        builtin_content_sha256(info, folder, train, test)

    first = _best(repeats, fresh)
    kept = _best(repeats, lambda: builtin_content_sha256(info, folder, train, test))
    return (
        f"{dataset}: {size / 1e6:.0f} MB hashed in {first * 1000:.0f} ms ({size / 1e6 / first:.0f} MB/s); "
        f"kept hash in {kept * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
