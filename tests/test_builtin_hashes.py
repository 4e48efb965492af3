"""A built-in dataset's content hash: computed where its data is read, recorded on its row by the first reader."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.datagen import write_cats_vs_dogs, write_mnist
from tests.support import Service, running_service, wait_until_finished
from training.builtin_content import arrays_sha256, forget_cached, image_files_sha256
from training.data import builtin_content_sha256, load_raw
from training.spec import DATASETS, Dataset
from training.uploads.canonical import content_hash

QUEUE = "e2e-builtin-hashes"
ELSEWHERE = "e2e-builtin-hashes-elsewhere"  # a worker whose data folder holds another mnist.npz
CLASSES = ("a", "b", "c")
TINY = {"dataset": "mnist", "epochs": 1, "batch_size": 50, "train_size": 100}


def _splits(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.arange(6, dtype=np.uint8) % 3
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.arange(3, dtype=np.uint8)
    return train, test


def test_a_28x28_builtins_hash_is_the_upload_hash_of_its_arrays() -> None:
    train, test = _splits()
    canonical = content_hash(
        CLASSES,
        (28, 28, 1),
        {"train": train[0], "test": test[0]},
        {"train": train[1].astype("int64"), "test": test[1].astype("int64")},
    )
    assert arrays_sha256(CLASSES, (28, 28), train, test) == canonical
    changed = train[0].copy()
    changed[5, 27, 27] ^= 1  # one pixel, one bit
    assert arrays_sha256(CLASSES, (28, 28), (changed, train[1]), test) != canonical
    relabelled = test[1].copy()
    relabelled[0] = 2
    assert arrays_sha256(CLASSES, (28, 28), train, (test[0], relabelled)) != canonical


def _image_files(root: Path) -> list[Path]:
    return list(root.rglob("*.jpg"))


def test_an_image_folders_hash_is_of_its_files_below_the_folder(tmp_path: Path) -> None:
    write_cats_vs_dogs(tmp_path / "one" / "cats_vs_dogs", train_per_class=2, validation_per_class=1)
    root = tmp_path / "one" / "cats_vs_dogs"
    files = _image_files(root)
    first = image_files_sha256(root, files, ("cat", "dog"))
    assert image_files_sha256(root, list(reversed(files)), ("cat", "dog")) == first  # sorted by path, not listing
    copy = tmp_path / "elsewhere" / "cats_vs_dogs"
    shutil.copytree(root, copy)
    assert image_files_sha256(copy, _image_files(copy), ("cat", "dog")) == first  # the folder's place is not content

    one = copy / "train" / "cats" / "cat.0.jpg"
    content = bytearray(one.read_bytes())
    content[-3] ^= 1
    one.write_bytes(bytes(content))
    assert image_files_sha256(copy, _image_files(copy), ("cat", "dog")) != first
    shutil.copytree(root, copy, dirs_exist_ok=True)  # back as it was
    one.rename(copy / "train" / "dogs" / "cat.0.jpg")  # the same bytes, another class
    assert image_files_sha256(copy, _image_files(copy), ("cat", "dog")) != first


def test_the_loaded_hash_is_kept_per_data_file_by_size_and_modification_time(tmp_path: Path) -> None:
    forget_cached()
    info, path = DATASETS[Dataset.MNIST], tmp_path / "mnist.npz"
    train, test = _splits(seed=1)
    np.savez(path, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1])
    first = builtin_content_sha256(info, tmp_path, *load_raw(Dataset.MNIST, tmp_path))
    assert first == arrays_sha256(info.class_names, info.input_shape, train, test)

    # Other pixels of the same size, with the old modification time put back: the file's key is unchanged, so the
    # kept hash is answered without reading the arrays again.
    stat = path.stat()
    other, other_test = _splits(seed=2)
    np.savez(path, x_train=other[0], y_train=other[1], x_test=other_test[0], y_test=other_test[1])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert builtin_content_sha256(info, tmp_path, *load_raw(Dataset.MNIST, tmp_path)) == first

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: another key
    again = builtin_content_sha256(info, tmp_path, *load_raw(Dataset.MNIST, tmp_path))
    assert again == arrays_sha256(info.class_names, info.input_shape, other, other_test) != first


def test_the_first_recorded_hash_stays(db: str) -> None:
    from models.datasets import record_builtin_hash
    from models.db import session_scope

    with session_scope() as session:
        assert record_builtin_hash(session, "fashion_mnist", "a" * 64) == "a" * 64
    with session_scope() as session:
        assert record_builtin_hash(session, "fashion_mnist", "b" * 64) == "a" * 64  # another host's: not written
        assert record_builtin_hash(session, "mnist", "c" * 64) == "c" * 64  # each built-in has its own
        assert record_builtin_hash(session, "flowers", "d" * 64) is None  # not a built-in: no row, nothing written


def test_of_two_readers_at_once_the_first_to_commit_wins_and_both_agree(db: str) -> None:
    from models.datasets import record_builtin_hash
    from models.db import session_scope

    answers: dict[str, str | None] = {}
    with ThreadPoolExecutor(1) as pool, session_scope() as first:
        answers["first"] = record_builtin_hash(first, "mnist", "a" * 64)  # written, not yet committed

        def second() -> None:
            with session_scope() as session:  # before the commit, its UPDATE waits for the row lock
                answers["second"] = record_builtin_hash(session, "mnist", "b" * 64)

        waiting = pool.submit(second)
        first.commit()
        waiting.result(timeout=60)
    assert answers == {"first": "a" * 64, "second": "a" * 64}
    with session_scope() as session:
        assert record_builtin_hash(session, "mnist", "c" * 64) == "a" * 64


@pytest.fixture(scope="module")
def other_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with another mnist.npz than the test data folder's."""
    other = tmp_path_factory.mktemp("other-data")
    write_mnist(other / "mnist.npz", train=200, test=50, seed=7)
    return other


@pytest.fixture(scope="module")
def service(
    migrated_database: str, broker_url: str, other_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    from tests.support import empty_all_tables

    empty_all_tables()
    other = other_data
    with running_service(tmp_path_factory.mktemp("service"), QUEUE, ["worker1"], queues=[ELSEWHERE]) as running:
        running.start_worker("elsewhere", queue=ELSEWHERE, env={"EPOCHAL_DATA_DIR": str(other)})
        running.wait_for_workers(2)
        yield running


def _hash_of_npz(path: Path) -> str:
    info = DATASETS[Dataset.MNIST]
    with np.load(path) as f:
        return arrays_sha256(
            info.class_names, info.input_shape, (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
        )


def _trained(http: httpx.Client, service: Service, body: dict[str, object]) -> dict[str, object]:
    response = http.post("/experiments", json=body)
    assert response.status_code == 202, response.text
    finished = wait_until_finished(http, [int(response.json()["id"])], timeout_s=300, service=service)[0]
    assert finished["status"] == "succeeded", finished
    return finished


def _recorded(http: httpx.Client) -> str | None:
    versions = http.get("/datasets/mnist").json()["versions"]
    listed = next(d for d in http.get("/datasets").json() if d["name"] == "mnist")
    assert listed["content_sha256"] == versions[0]["content_sha256"]  # the list and the detail read one row
    return versions[0]["content_sha256"]


@pytest.mark.e2e
def test_a_worker_records_the_builtins_hash_once_and_warns_of_other_data(
    service: Service, data_dir: Path, other_data: Path
) -> None:
    expected, other = _hash_of_npz(data_dir / "mnist.npz"), _hash_of_npz(other_data / "mnist.npz")
    assert other != expected
    with service.http() as http:
        assert _recorded(http) is None  # the migration read no data file

        first = _trained(http, service, TINY)
        assert _recorded(http) == expected
        card = http.get(f"/experiments/{first['id']}/card").json()
        assert card["dataset"]["content_sha256"] == expected
        assert next(d for d in http.get("/datasets").json() if d["name"] == "fashion_mnist")["content_sha256"] is None

        second = _trained(http, service, TINY)
        assert _recorded(http) == expected and second["warnings"] == first["warnings"]
        assert not any("content sha256" in w for w in second["warnings"])  # type: ignore[attr-defined]

        elsewhere = _trained(http, service, {**TINY, "queue": ELSEWHERE})
        assert _recorded(http) == expected  # the first reader's stays
        warnings = [w for w in elsewhere["warnings"] if "content sha256" in w]  # type: ignore[attr-defined]
        assert len(warnings) == 1, elsewhere["warnings"]
        assert expected in warnings[0] and other in warnings[0] and "elsewhere@" in warnings[0]
        assert not any("content sha256" in w for w in first["warnings"])  # type: ignore[attr-defined]
