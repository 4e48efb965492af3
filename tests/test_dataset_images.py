"""A dataset's images to look at: the samples grid, a split's images paged by class and one image as PNG, each
checked pixel for pixel against the stored arrays; who may see them, and what a version not ready answers."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.reports.sample_grid import BACKGROUND, LABEL_WIDTH, MAX_PER_CLASS, GridLayout, grid_layout
from config import get_settings
from domain import dataset_images
from models.blob_store import DatabaseBlobStore
from tests.test_dataset_rows import row_of, upload, zip_bytes
from tests.upload_archives import class_files
from training.packed import PackedDataset, open_packed
from worker.datasets import prepare

# Names with spaces and beyond ASCII, as folder names carry them. Train and test given, so the counts are known.
TRAIN = {"red fox": 10, "chat noir 猫": 3, "ökö": 5}
TEST = {"red fox": 2, "chat noir 猫": 3, "ökö": 1}
SIZE = (12, 16)


def archive(channels: int = 1, seed: int = 1) -> bytes:
    files = {
        **class_files(TRAIN, size=SIZE, channels=channels, seed=seed, prefix="train/"),
        **class_files(TEST, size=SIZE, channels=channels, seed=seed + 1000, prefix="test/"),
    }
    return zip_bytes(files)


def ready(client: TestClient, name: str, channels: int = 1, seed: int = 1, **params: Any) -> dict[str, Any]:
    """An uploaded and prepared version of `name`: the version as GET /datasets/{name} shows it."""
    created = upload(client, name, archive(channels, seed), **params)
    assert created.status_code == 202, created.text
    version = created.json()["version"]
    assert prepare(row_of(name, version).id) == "ready"
    shown: dict[str, Any] = client.get(f"/datasets/{name}").json()["versions"][version - 1]
    return shown


@pytest.fixture
def stored() -> Iterator[Any]:
    """Opens a version's packed arrays straight from the blob store, as the worker stored them."""
    with tempfile.TemporaryDirectory() as folder:

        def open_blob(sha256: str) -> PackedDataset:
            path = Path(folder) / sha256
            path.write_bytes(b"".join(DatabaseBlobStore().read(sha256)))
            return open_packed(path)

        yield open_blob


def decoded(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def cell(grid: np.ndarray, layout: GridLayout, row: int, column: int) -> np.ndarray:
    left, top = layout.cell(row, column)
    return grid[top : top + layout.image_height, left : left + layout.image_width]


@pytest.mark.parametrize("channels", [1, 3])
def test_the_samples_grid_is_the_first_train_images_of_each_class_as_stored(
    client: TestClient, stored: Any, channels: int
) -> None:
    version = ready(client, "grid", channels)
    names = version["class_names"]
    assert sorted(names) == sorted(TRAIN)
    response = client.get("/datasets/grid/samples.png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    grid = decoded(response.content)
    layout = grid_layout(*SIZE, classes=len(names), per_class=min(MAX_PER_CLASS, max(TRAIN.values())))
    assert (layout.rows, layout.columns) == (3, 8)
    assert grid.shape == ((layout.height, layout.width, 3) if channels == 3 else (layout.height, layout.width))
    assert response.headers["epochal-classes-shown"] == "3 of 3"
    packed = stored(version["blob_sha256"])
    for row, name in enumerate(names):
        label = packed.class_names.index(name)
        assert label == row  # one row per class, in the canonical order
        first = np.flatnonzero(np.asarray(packed.y_train) == label)
        for column in range(layout.columns):
            if column < len(first):
                assert np.array_equal(cell(grid, layout, row, column), packed.x_train[first[column]]), (name, column)
            else:  # a class with fewer images leaves the rest of its row blank
                assert (cell(grid, layout, row, column) == BACKGROUND).all(), (name, column)
        # Its name is written left of the row.
        _, top = layout.cell(row, 0)
        assert (grid[top : top + layout.row_height, :LABEL_WIDTH] != BACKGROUND).any(), name

    # Cached for good: the content's hash and the version are the tag, and asking with it sends nothing again.
    etag = response.headers["etag"]
    assert version["content_sha256"] in etag and "-v1-" in etag
    assert "immutable" in response.headers["cache-control"]
    again = client.get("/datasets/grid/samples.png?version=1", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    # Fewer per class: a narrower grid, another tag.
    two = client.get("/datasets/grid/samples.png?per_class=2")
    assert decoded(two.content).shape[:2] == (layout.height, grid_layout(*SIZE, 3, 2).width)
    assert two.headers["etag"] != etag


def test_the_images_of_each_class_page_through_without_overlap_and_each_png_is_the_stored_image(
    client: TestClient, stored: Any
) -> None:
    version = ready(client, "pages", channels=3)
    packed = stored(version["blob_sha256"])
    for split, counts in (("train", TRAIN), ("test", TEST)):
        assert version["counts"][split] == counts
        every: list[int] = []
        for name, count in counts.items():
            seen: list[dict[str, Any]] = []
            offset: int | None = 0
            while offset is not None:
                page = client.get(
                    "/datasets/pages/images", params={"split": split, "class": name, "offset": offset, "limit": 4}
                )
                assert page.status_code == 200, page.text
                body = page.json()
                assert (body["total"], body["class"], body["split"], body["version"]) == (count, name, split, 1)
                assert len(body["items"]) <= 4
                seen += body["items"]
                offset = body["next_offset"]
            indexes = [item["index"] for item in seen]
            assert len(indexes) == len(set(indexes)) == count  # no page repeats another, none is skipped
            assert {item["class"] for item in seen} == {name}
            assert {item["label"] for item in seen} == {version["class_names"].index(name)}
            every += indexes
            for item in seen[:2]:
                image = client.get(item["url"])
                assert image.status_code == 200, image.text
                x, y = packed.split(split)
                assert np.array_equal(decoded(image.content), x[item["index"]])
                assert int(y[item["index"]]) == item["label"]
                assert unquote(image.headers["epochal-class"]) == name
                assert version["content_sha256"] in image.headers["etag"]
                cached = client.get(item["url"], headers={"If-None-Match": image.headers["etag"]})
                assert cached.status_code == 304
        # Every class's images together are the whole split, once each; without a class, the split in its order.
        assert sorted(every) == list(range(sum(counts.values())))
        whole = client.get("/datasets/pages/images", params={"split": split, "limit": 200}).json()
        assert [item["index"] for item in whole["items"]] == list(range(sum(counts.values())))
        assert whole["total"] == sum(counts.values()) and whole["next_offset"] is None and whole["class"] is None


def test_the_api_reads_a_version_through_its_blob_cache(client: TestClient) -> None:
    # Content of its own: the cache's folder is the test process's, and another test's blob may be in it already.
    version = ready(client, "cached", seed=int.from_bytes(os.urandom(4)))
    cache = dataset_images._cache()
    assert cache.directory == get_settings().blob_cache_folder and cache.max_bytes == get_settings().blob_cache_bytes
    before = (cache.counts.hits, cache.counts.misses)
    for _ in range(3):
        assert client.get("/datasets/cached/images/train/0.png").status_code == 200
    # Fetched from the store once, then read from the local copy.
    assert (cache.counts.hits - before[0], cache.counts.misses - before[1]) == (2, 1)
    assert version["blob_sha256"] in cache.cached()


def test_bad_queries_are_422s_saying_what_to_send(client: TestClient) -> None:
    ready(client, "strict")
    unknown = client.get("/datasets/strict/images", params={"class": "wolf"})
    assert unknown.status_code == 422, unknown.text
    detail = unknown.json()["detail"]
    assert "'wolf'" in detail and all(repr(name) in detail for name in TRAIN)
    for params in (
        {"limit": 201},
        {"limit": 0},
        {"offset": -1},
        {"split": "validation"},
        {"version": 0},
        {"version": "latest"},
    ):
        response = client.get("/datasets/strict/images", params=params)
        assert response.status_code == 422, (params, response.text)
        assert next(iter(params)) in response.json()["message"]
    assert client.get("/datasets/strict/images/validation/0.png").status_code == 422  # no such split
    # A position no image can have is an image that does not exist, as a path id is (api/http/params.id_path).
    negative = client.get("/datasets/strict/images/train/-1.png")
    assert negative.status_code == 404 and "indexes 0 to" in negative.json()["detail"]
    assert client.get("/datasets/strict/samples.png?per_class=9").status_code == 422
    # Past the end, or a version it does not have: a 404 that says what there is.
    past = client.get(f"/datasets/strict/images/test/{sum(TEST.values())}.png")
    assert past.status_code == 404 and "indexes 0 to 5" in past.json()["detail"]
    missing = client.get("/datasets/strict/samples.png?version=7")
    assert missing.status_code == 404 and "no version 7" in missing.json()["detail"]
    # An offset past the end is an empty last page.
    beyond = client.get("/datasets/strict/images", params={"offset": 1000}).json()
    assert (beyond["items"], beyond["total"], beyond["next_offset"]) == ([], sum(TRAIN.values()), None)


ROUTES = ("/datasets/{}/samples.png", "/datasets/{}/images", "/datasets/{}/images/train/0.png")


def test_another_users_private_dataset_is_a_404_with_the_words_of_a_missing_one(
    client: TestClient, other_client: TestClient
) -> None:
    ready(client, "secret")
    for route in ROUTES:
        assert client.get(route.format("secret")).status_code == 200
        hidden = other_client.get(route.format("secret"))
        missing = other_client.get(route.format("nothing"))
        assert (hidden.status_code, missing.status_code) == (404, 404), route
        assert hidden.json()["detail"] == missing.json()["detail"].replace("nothing", "secret")
    # A public one they see.
    ready(client, "open", visibility="public")
    assert all(other_client.get(route.format("open")).status_code == 200 for route in ROUTES)


def test_a_version_not_ready_is_a_409_and_the_default_is_the_latest_ready_one(client: TestClient) -> None:
    assert upload(client, "slow", archive()).status_code == 202
    for route in ROUTES:
        waiting = client.get(route.format("slow"))
        assert waiting.status_code == 409, waiting.text
        assert "no ready version yet" in waiting.json()["detail"] and "processing" in waiting.json()["detail"]
        asked = client.get(route.format("slow") + "?version=1")
        assert asked.status_code == 409 and "not ready: it is processing" in asked.json()["detail"]
    assert prepare(row_of("slow", 1).id) == "ready"
    # Version 2 is broken: version 1 is still what a request without a version shows, and 2 says it failed.
    assert upload(client, "slow", b"PK\x05\x06" + bytes(18)).status_code == 202
    assert prepare(row_of("slow", 2).id) == "failed"
    for route in ROUTES:
        assert client.get(route.format("slow")).status_code == 200, route
        failed = client.get(route.format("slow") + "?version=2")
        assert failed.status_code == 409 and "it is failed" in failed.json()["detail"]
    listed = client.get("/datasets/slow/images").json()
    assert listed["version"] == 1 and all("version=1" in item["url"] for item in listed["items"])


def test_a_duplicate_version_shows_the_arrays_it_shares(client: TestClient) -> None:
    first = ready(client, "twice")
    assert upload(client, "twice", archive()).status_code == 202
    assert prepare(row_of("twice", 2).id) == "duplicate"
    one = client.get("/datasets/twice/images/train/3.png?version=1")
    two = client.get("/datasets/twice/images/train/3.png")  # the latest usable: version 2
    assert two.status_code == 200 and one.content == two.content
    assert first["content_sha256"] in two.headers["etag"] and "-v2-" in two.headers["etag"]


@pytest.mark.parametrize(("name", "rows", "side", "rgb"), [("mnist", 10, 28, False), ("cats_vs_dogs", 2, 150, True)])
def test_a_built_ins_samples_come_from_the_data_folder(
    client: TestClient, name: str, rows: int, side: int, rgb: bool
) -> None:
    response = client.get(f"/datasets/{name}/samples.png")
    assert response.status_code == 200, response.text
    grid = decoded(response.content)
    layout = grid_layout(side, side, rows, MAX_PER_CLASS)
    assert grid.shape == ((layout.height, layout.width, 3) if rgb else (layout.height, layout.width))
    assert (
        client.get(f"/datasets/{name}/samples.png", headers={"If-None-Match": response.headers["etag"]}).status_code
        == 304
    )
    if name == "mnist":  # the 28x28 sets' cells are their arrays exactly
        with np.load(get_settings().data_dir / "mnist.npz") as arrays:
            x, y = arrays["x_train"], arrays["y_train"]
        for digit in range(10):
            first = np.flatnonzero(y == digit)[:MAX_PER_CLASS]
            for column, position in enumerate(first):
                assert np.array_equal(cell(grid, layout, digit, column), x[position])
    # Their images are not stored as a packed version: not paged here.
    paged = client.get(f"/datasets/{name}/images")
    assert paged.status_code == 409 and "samples.png" in paged.json()["detail"]
    assert client.get(f"/datasets/{name}/images/train/0.png").status_code == 409


def test_a_built_in_whose_files_are_not_there_is_a_404_saying_where_to_put_them(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    for name, file in (("fashion_mnist", "fashion_mnist.npz"), ("cats_vs_dogs", "cats_vs_dogs")):
        response = client.get(f"/datasets/{name}/samples.png")
        assert response.status_code == 404, response.text
        assert file in response.json()["detail"] and "EPOCHAL_DATA_DIR" in response.json()["detail"]
