"""Datasets as rows: uploads streamed into the blob store under their cap, prepared by a real worker, listed, read
and deleted by who may; another user's private dataset a 404 everywhere."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from api.http import specs
from config import get_settings
from domain import submission
from models import Blob, BlobChunk, DatasetStatus, DatasetVersion, Experiment
from models.base import utcnow
from models.blob_store import DatabaseBlobStore
from models.datasets import referenced_blobs
from models.db import session_scope
from tests.support import Service, running_service
from tests.upload_archives import class_files, write_zip
from worker.datasets import prepare

CLASSES = {"cat": 4, "dog": 5, "fox": 6}


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


THREE_CLASSES = zip_bytes(class_files(CLASSES, size=(12, 16)))
HOSTILE = zip_bytes({**class_files({"cat": 2, "dog": 2}), "../evil.png": class_files({"x": 1})["x/000.png"]})


def upload(client: TestClient | httpx.Client, name: str, body: bytes, **params: Any) -> Any:
    return client.post(
        "/datasets", params={"name": name, **params}, content=body, headers={"Content-Type": "application/zip"}
    )


def blob_counts() -> tuple[int, int]:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Blob)) or 0, session.scalar(
            select(func.count()).select_from(BlobChunk)
        ) or 0


def row_of(name: str, version: int) -> DatasetVersion:
    with session_scope() as session:
        row = session.scalars(
            select(DatasetVersion).where(DatasetVersion.name == name, DatasetVersion.version == version)
        ).one()
        session.expunge(row)
        return row


def test_an_upload_is_a_processing_version_of_its_name_and_the_next_one_is_version_2(client: TestClient) -> None:
    first = upload(client, "flowers", THREE_CLASSES, image_size="8x10", fit="crop", test_fraction=0.25)
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["name"], body["version"], body["status"], body["visibility"]) == (
        "flowers",
        1,
        "processing",
        "private",
    )
    assert body["options"] == {"image_size": [8, 10], "fit": "crop", "test_fraction": 0.25}
    assert body["upload_bytes"] == len(THREE_CLASSES)
    # The upload is in the blob store, whole, under the hash the row names.
    stored = row_of("flowers", 1).upload_sha256
    assert stored is not None and b"".join(DatabaseBlobStore().read(stored)) == THREE_CLASSES
    # As a multipart `file` part too; a new upload under the name is its next version.
    second = client.post("/datasets?name=flowers", files={"file": ("f.zip", THREE_CLASSES, "application/zip")})
    assert (second.status_code, second.json()["version"]) == (202, 2), second.text
    detail = client.get("/datasets/flowers").json()
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert [v["status"] for v in detail["versions"]] == ["processing", "processing"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "Flowers!"}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": "a" * 41}, "name"),
        ({"name": "ok", "image_size": "0x5"}, "image_size"),
        ({"name": "ok", "image_size": "64by64"}, "image_size"),
        ({"name": "ok", "test_fraction": "1.5"}, "test_fraction"),
        ({"name": "ok", "fit": "squash"}, "fit"),
    ],
)
def test_a_bad_name_or_option_is_a_422_and_stores_nothing(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    before = blob_counts()
    response = client.post(
        "/datasets", params=params, content=THREE_CLASSES, headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 422, response.text
    assert field in response.text
    assert blob_counts() == before


def test_a_built_in_name_or_another_users_name_is_a_409(client: TestClient, other_client: TestClient) -> None:
    response = upload(client, "mnist", THREE_CLASSES)
    assert response.status_code == 409 and "built-in" in response.json()["detail"]
    assert upload(other_client, "theirs", THREE_CLASSES).status_code == 202
    taken = upload(client, "theirs", THREE_CLASSES)
    assert taken.status_code == 409 and "another user" in taken.json()["detail"]


def test_a_body_that_is_no_upload_is_a_422(client: TestClient) -> None:
    response = client.post("/datasets?name=x", json={"file": "x"})
    assert response.status_code == 422 and "multipart/form-data part named 'file'" in response.text
    assert client.post("/datasets?name=x", files={"other": ("f.zip", b"x")}).status_code == 422


@pytest.fixture
def small_cap_client(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API built with an upload cap of 64 KiB (the cap is read when the app is built)."""
    from api.main import create_app

    monkeypatch.setattr(get_settings(), "max_upload_bytes", 64 * 1024)
    with TestClient(create_app(), headers={"Authorization": client.headers["Authorization"]}) as capped:
        yield capped


@pytest.mark.parametrize("declared", [True, False])
def test_an_upload_over_the_cap_is_a_413_naming_it_and_stores_nothing(
    small_cap_client: TestClient, declared: bool
) -> None:
    before = blob_counts()
    big = b"PK" + bytes(200 * 1024)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams, after some chunks were stored
        for start in range(0, len(big), 16 * 1024):
            yield big[start : start + 16 * 1024]

    response = small_cap_client.post(
        "/datasets?name=big", content=big if declared else chunks(), headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 413, response.text
    assert "EPOCHAL_MAX_UPLOAD_BYTES" in response.json()["detail"] and "65536 bytes" in response.json()["detail"]
    assert blob_counts() == before  # not a chunk of it stays
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(DatasetVersion).where(DatasetVersion.name == "big")) == 0
    # Under the cap the same app takes it.
    assert upload(small_cap_client, "small", THREE_CLASSES).status_code == 202


def test_uploads_past_the_storage_quota_are_a_429_and_usage_counts_datasets(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = client.get("/me").json()["id"]
    before = client.get(f"/users/{me}/usage").json()
    upload(client, "quota", THREE_CLASSES)
    assert prepare(row_of("quota", 1).id) == "ready"
    packed = row_of("quota", 1).size_bytes
    assert packed is not None and packed > 0
    usage = client.get(f"/users/{me}/usage").json()
    assert usage["storage_bytes"] == before["storage_bytes"] + packed
    assert usage["max_storage_bytes"] == get_settings().max_storage_bytes
    # Room for less than one more: the upload is read, counted, and refused; no version is made of it.
    monkeypatch.setattr(get_settings(), "max_storage_bytes", usage["storage_bytes"] + 10)
    refused = upload(client, "quota", zip_bytes(class_files(CLASSES, size=(9, 9))))
    assert refused.status_code == 429, refused.text
    assert "EPOCHAL_MAX_STORAGE_BYTES" in refused.json()["detail"] and refused.headers["retry-after"]
    assert [v["version"] for v in client.get("/datasets/quota").json()["versions"]] == [1]
    # Full already: refused before a byte of the body is read.
    monkeypatch.setattr(get_settings(), "max_storage_bytes", usage["storage_bytes"])
    assert upload(client, "quota", THREE_CLASSES).status_code == 429
    # Deleting gives the room back.
    assert client.delete("/datasets/quota/1").status_code == 204
    assert client.get(f"/users/{me}/usage").json()["storage_bytes"] == before["storage_bytes"]
    monkeypatch.setattr(get_settings(), "max_storage_bytes", before["storage_bytes"] + len(THREE_CLASSES))
    assert upload(client, "quota", THREE_CLASSES).status_code == 202  # exactly up to the quota


def test_the_reapers_pass_frees_what_no_dataset_references_once_idle_past_the_grace(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without it every upload stayed in the database for good once prepared, a failed one too: a user could fill it.
    from datetime import timedelta

    from sqlalchemy import update

    from models.base import utcnow
    from upkeep import reaper

    upload(client, "kept", THREE_CLASSES)
    assert prepare(row_of("kept", 1).id) == "ready"
    packed = row_of("kept", 1).blob_sha256
    assert packed is not None
    orphan = DatabaseBlobStore().put([b"an upload nothing references any more"])
    fresh = DatabaseBlobStore().put([b"an upload whose row is about to be written"])
    with session_scope() as session:  # all but the fresh one idle for two hours
        session.execute(update(Blob).where(Blob.sha256 != fresh).values(touched_at=utcnow() - timedelta(hours=2)))
    monkeypatch.setattr(reaper, "_last_blob_sweep", None)
    report = reaper.reap(lambda experiment_id, queue: None)
    assert orphan in report.freed_blobs and packed not in report.freed_blobs
    store = DatabaseBlobStore()
    assert not store.has(orphan) and store.has(packed) and store.has(fresh)
    assert "freed_blobs" in report.summary()
    # A pass right after does not list the store again (once a tenth of the grace).
    again = DatabaseBlobStore().put([b"another orphan"])
    with session_scope() as session:
        session.execute(update(Blob).where(Blob.sha256 == again).values(touched_at=utcnow() - timedelta(hours=2)))
    assert reaper.reap(lambda experiment_id, queue: None).freed_blobs == []
    assert store.has(again)


def test_the_worker_step_prepares_a_version_drops_its_upload_and_a_rerun_changes_nothing(client: TestClient) -> None:
    version = upload(client, "zoo", THREE_CLASSES, test_fraction=0.5).json()
    row_id = row_of("zoo", 1).id
    upload_blob = row_of("zoo", 1).upload_sha256
    assert prepare(row_id) == "ready"
    row = row_of("zoo", 1)
    assert row.status == DatasetStatus.READY and row.upload_sha256 is None and row.blob_sha256 is not None
    assert row.class_names == ["cat", "dog", "fox"]
    assert {split: sum(c.values()) for split, c in (row.counts or {}).items()} == {"train": 7, "test": 8}
    assert prepare(row_id) == "skipped"  # a redelivered task finds it done
    # Nothing references the upload any more: a sweep frees it and keeps the packed arrays.
    with session_scope() as session:
        keep = referenced_blobs(session)
    assert keep == {row.blob_sha256}
    swept = DatabaseBlobStore().sweep(keep, grace_s=0)
    assert upload_blob in swept.blobs and DatabaseBlobStore().has(row.blob_sha256)
    # The same content again (another archive's bytes: a tar would do too) is a duplicate of version 1.
    again = upload(
        client, "zoo", zip_bytes(dict(reversed(class_files(CLASSES, size=(12, 16)).items()))), test_fraction=0.5
    )
    assert prepare(row_of("zoo", 2).id) == "duplicate"
    duplicate = client.get("/datasets/zoo").json()["versions"][1]
    # Nothing new is referenced: it names version 1's packed arrays.
    assert (duplicate["status"], duplicate["duplicate_of"]) == ("duplicate", 1)
    assert duplicate["blob_sha256"] == row.blob_sha256
    assert duplicate["content_sha256"] == row.content_sha256
    assert version["version"] == 1 and again.json()["version"] == 2


class KilledAfterPut(DatabaseBlobStore):
    """The real store, in a process that dies (a BaseException, as a kill ends a task) right after its put."""

    def put(self, chunks: Iterable[bytes]) -> str:
        super().put(chunks)
        raise KeyboardInterrupt


def test_a_task_killed_midway_leaves_processing_and_its_redelivery_finishes(client: TestClient) -> None:
    upload(client, "killed", THREE_CLASSES)
    row = row_of("killed", 1)
    with pytest.raises(KeyboardInterrupt):
        prepare(row.id, store=KilledAfterPut())
    left = row_of("killed", 1)
    assert (left.status, left.upload_sha256, left.blob_sha256) == (DatasetStatus.PROCESSING, row.upload_sha256, None)
    assert prepare(row.id) == "ready"
    done = row_of("killed", 1)
    assert done.status == DatasetStatus.READY and done.upload_sha256 is None
    assert DatabaseBlobStore().has(done.blob_sha256 or "")


def test_the_worker_step_fails_a_hostile_upload_naming_the_entry(client: TestClient) -> None:
    upload(client, "bad", HOSTILE)
    assert prepare(row_of("bad", 1).id) == "failed"
    version = client.get("/datasets/bad").json()["versions"][0]
    assert version["status"] == "failed" and version["blob_sha256"] is None
    assert [e["entry"] for e in version["errors"]] == ["../evil.png"]
    assert "'..'" in version["errors"][0]["reason"]
    assert row_of("bad", 1).upload_sha256 is None


def test_the_list_keeps_the_built_ins_and_shows_public_and_own_uploads(
    client: TestClient, other_client: TestClient
) -> None:
    assert upload(client, "admins-private", THREE_CLASSES).status_code == 202
    assert upload(client, "admins-public", THREE_CLASSES, visibility="public").status_code == 202
    assert upload(other_client, "mine", THREE_CLASSES).status_code == 202
    listed = other_client.get("/datasets").json()
    assert [d["name"] for d in listed] == ["mnist", "fashion_mnist", "cats_vs_dogs", "admins-public", "mine"]
    mnist = listed[0]
    assert mnist["builtin"] and mnist["default_network"] == "mlp" and mnist["class_names"][0] == "0"
    assert mnist["test_split"].startswith("test") and mnist["owner_id"] is None and mnist["visibility"] == "public"
    mine = listed[-1]
    assert (mine["builtin"], mine["status"], mine["default_network"], mine["in_data_dir"]) == (
        False,
        "processing",
        None,
        False,
    )
    # An admin sees everyone's.
    assert {"admins-private", "admins-public", "mine"} <= {d["name"] for d in client.get("/datasets").json()}
    builtin = other_client.get("/datasets/cats_vs_dogs").json()
    assert builtin["builtin"] and builtin["versions"][0]["input_shape"] == [150, 150, 3]
    assert builtin["versions"][0]["content_sha256"] is None


def test_another_users_private_dataset_is_a_404_with_the_words_of_a_missing_one(
    client: TestClient, other_client: TestClient
) -> None:
    assert upload(client, "secret", THREE_CLASSES).status_code == 202
    for method, path in (("GET", "/datasets/{}"), ("DELETE", "/datasets/{}/1")):
        hidden = other_client.request(method, path.format("secret"))
        missing = other_client.request(method, path.format("nothing"))
        assert (hidden.status_code, missing.status_code) == (404, 404)
        assert hidden.json()["detail"] == missing.json()["detail"].replace("nothing", "secret")
    assert client.get("/datasets/secret").status_code == 200


def test_delete_by_the_owner_or_an_admin_and_never_a_built_in(client: TestClient, other_client: TestClient) -> None:
    theirs = zip_bytes(class_files(CLASSES, seed=7))  # bytes nobody else uploads
    assert upload(other_client, "shared", theirs, visibility="public").status_code == 202
    assert upload(other_client, "shared", theirs, visibility="public").status_code == 202
    assert upload(client, "admins", THREE_CLASSES, visibility="public").status_code == 202
    builtin = other_client.delete("/datasets/mnist/1")
    assert builtin.status_code == 403 and "built-in" in builtin.json()["detail"]
    assert client.delete("/datasets/mnist/1").status_code == 403  # not even an admin
    public = other_client.delete("/datasets/admins/1")
    assert public.status_code == 403 and "owner or an admin" in public.json()["detail"]
    assert other_client.delete("/datasets/shared/3").status_code == 404
    shared_upload = row_of("shared", 1).upload_sha256
    assert other_client.delete("/datasets/shared/1").status_code == 204
    assert client.delete("/datasets/shared/2").status_code == 204  # an admin deletes anyone's
    assert other_client.get("/datasets/shared").status_code == 404
    assert client.get("/datasets/shared").status_code == 404  # gone for an admin too
    with session_scope() as session:  # nothing references their upload: the store's sweep frees it
        assert shared_upload is not None and shared_upload not in referenced_blobs(session)
    # A deleted version's number is never given again, and the name stays its owner's.
    again = upload(other_client, "shared", THREE_CLASSES)
    assert (again.status_code, again.json()["version"]) == (202, 3)
    assert [v["version"] for v in other_client.get("/datasets/shared").json()["versions"]] == [3]
    assert client.get("/datasets/mnist").status_code == 200
    # The default-model routes under a built-in's name still answer as they did.
    unset = client.delete("/datasets/mnist/default-model")
    assert unset.status_code == 404 and "no default model for mnist" in unset.json()["detail"]


def committed_without_its_task(client: TestClient | httpx.Client, name: str) -> int:
    """A version committed `processing` as POST /datasets commits one, its task never published (the API died
    between its commit and its publish, or the broker lost the message)."""
    from domain import datasets as dataset_rows
    from models import Visibility
    from models.users import User

    me = client.get("/me").json()["id"]
    stored = DatabaseBlobStore().put([THREE_CLASSES])
    with session_scope() as session:
        caller = session.get_one(User, me)
        row = dataset_rows.new_version(session, caller, name, Visibility.PRIVATE, {}, stored, len(THREE_CLASSES))
        return row.id


def no_training(_experiment_id: int, _queue: str) -> None:
    pass


def test_a_version_whose_task_was_lost_is_published_again_past_the_grace_and_prepared(client: TestClient) -> None:
    # It stayed processing for good: nothing would ever prepare it, and its upload counted against the quota.
    from datetime import timedelta

    from models.base import as_utc
    from upkeep import reaper

    row_id = committed_without_its_task(client, "lost")
    settings = get_settings()
    grace = timedelta(seconds=settings.prepare_grace_s)
    created = as_utc(row_of("lost", 1).created_at)
    published: list[tuple[int, str]] = []

    def publish_dataset(dataset_id: int, queue: str) -> None:
        published.append((dataset_id, queue))

    def pass_at(now: Any) -> reaper.ReapReport:
        return reaper.reap(no_training, now=now, publish_dataset=publish_dataset)

    # Within the grace its message may still be on its way: left alone.
    assert pass_at(created + grace / 2).republished_datasets == []
    report = pass_at(created + grace + timedelta(seconds=1))
    assert report.republished_datasets == [row_id] and "republished_datasets" in report.summary()
    assert published == [(row_id, settings.default_queue)]
    # At most once a grace: the message published may be waiting behind other jobs.
    assert pass_at(created + grace * 1.5).republished_datasets == []
    assert pass_at(created + grace * 2 + timedelta(seconds=2)).republished_datasets == [row_id]
    # What the published task runs prepares it; a duplicate delivery, and later passes, find it settled.
    assert prepare(published[0][0]) == "ready"
    assert prepare(published[1][0]) == "skipped"
    assert row_of("lost", 1).status == DatasetStatus.READY
    later = pass_at(created + grace * 10)
    assert later.republished_datasets == [] and later.failed_datasets == []


def test_a_version_whose_preparations_are_all_lost_fails_after_the_attempt_cap_saying_so(client: TestClient) -> None:
    # An upload that kills its worker (out of memory) every time would otherwise be published again for good.
    from datetime import timedelta

    from domain import preparations
    from models.base import as_utc
    from upkeep import reaper

    row_id = committed_without_its_task(client, "killer")
    settings = get_settings()
    published: list[int] = []

    def pass_at(now: Any) -> reaper.ReapReport:
        return reaper.reap(
            no_training, now=now, publish_dataset=lambda dataset_id, _queue: published.append(dataset_id)
        )

    now = as_utc(row_of("killer", 1).created_at) + timedelta(seconds=settings.prepare_grace_s + 1)
    for attempt in range(1, settings.max_attempts + 1):
        with session_scope() as session:  # a worker starts preparing it...
            assert preparations.claim(session, row_id, now) == attempt
        # ...and while its lease is live, no pass publishes it and another delivery does nothing.
        assert pass_at(now + timedelta(seconds=1)).republished_datasets == []
        with session_scope() as session:
            assert preparations.claim(session, row_id, now + timedelta(seconds=1)) is None
        # Its worker dies: the lease lapses, unrenewed.
        now += timedelta(seconds=settings.lease_s + settings.prepare_grace_s + 1)
        report = pass_at(now)
        if attempt < settings.max_attempts:
            assert (report.republished_datasets, report.failed_datasets) == ([row_id], [])
        else:
            assert (report.republished_datasets, report.failed_datasets) == ([], [row_id])
    assert published == [row_id] * (settings.max_attempts - 1)
    row = row_of("killer", 1)
    assert row.status == DatasetStatus.FAILED and row.upload_sha256 is None and row.prepare_lease_expires_at is None
    version = client.get("/datasets/killer").json()["versions"][0]
    assert version["status"] == "failed" and version["errors"][0]["entry"] == "(the upload)"
    reason = version["errors"][0]["reason"]
    assert f"{settings.max_attempts} preparations" in reason and "EPOCHAL_MAX_ATTEMPTS" in reason
    assert prepare(row_id) == "skipped"  # a late delivery changes nothing
    assert pass_at(now + timedelta(days=1)).failed_datasets == []


@pytest.mark.skipif(
    not get_settings().database_url.startswith("postgresql"),
    reason="PostgreSQL only: the other finish is seen waiting on its lock in pg_stat_activity",
)
def test_two_versions_of_the_same_content_finishing_at_once_end_one_ready_and_one_duplicate(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each finish read "no ready version of this content yet" before the other committed: both ended ready.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    upload(client, "twins", THREE_CLASSES)
    upload(client, "twins", THREE_CLASSES)
    ids = [row_of("twins", 1).id, row_of("twins", 2).id]
    settle = DatasetVersion.settle_ready
    first_in, done = threading.Lock(), threading.Event()

    def other_is_waiting_on_a_lock() -> bool:
        with session_scope() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    def held_settle(row: DatasetVersion, blob: str | None, duplicate_of: int | None) -> None:
        # The first finish to get here waits, its transaction open, until the other one is blocked behind it (or,
        # were nothing held, has finished on its own): the race made certain, not left to timing.
        if first_in.acquire(blocking=False):
            while not (done.is_set() or other_is_waiting_on_a_lock()):
                time.sleep(0.02)
        settle(row, blob, duplicate_of)

    monkeypatch.setattr(DatasetVersion, "settle_ready", held_settle)

    def prepared(row_id: int) -> str:
        try:
            return prepare(row_id)
        finally:
            done.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(prepared, ids))
    assert sorted(outcomes) == ["duplicate", "ready"]
    versions = client.get("/datasets/twins").json()["versions"]
    ready = next(v for v in versions if v["status"] == "ready")
    duplicate = next(v for v in versions if v["status"] == "duplicate")
    assert duplicate["duplicate_of"] == ready["version"] and duplicate["blob_sha256"] == ready["blob_sha256"]


# With a real worker process: the upload is prepared by the `prepare_dataset` task the API queued.
QUEUE = "e2e-datasets"


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tests.support import empty_all_tables

    empty_all_tables()
    with running_service(tmp_path_factory.mktemp("datasets"), QUEUE, ["prep"]) as running:
        yield running


def wait_finished(http: httpx.Client, name: str, version: int, service: Service) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        found: dict[str, Any] = http.get(f"/datasets/{name}").json()["versions"][version - 1]
        if found["status"] != "processing":
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} v{version} still processing\n{service.logs()}")
        time.sleep(0.3)


@pytest.mark.e2e
def test_a_worker_prepares_an_uploaded_zip_and_fails_a_hostile_one(service: Service, tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "three.zip", class_files(CLASSES, size=(12, 16), channels=3))
    with service.http() as http, archive.open("rb") as stream:
        created = http.post("/datasets?name=pets&visibility=public", files={"file": ("three.zip", stream)})
        assert created.status_code == 202, created.text
        ready = wait_finished(http, "pets", 1, service)
        assert ready["status"] == "ready", ready
        assert ready["class_names"] == ["cat", "dog", "fox"]
        assert ready["color_mode"] == "rgb" and ready["input_shape"] == [12, 16, 3]
        totals = {name: ready["counts"]["train"][name] + ready["counts"]["test"][name] for name in CLASSES}
        assert totals == CLASSES and ready["images"] == sum(CLASSES.values())
        assert ready["held_out"] and ready["test_fraction"] == 0.2 and ready["seed"] == 42
        assert len(ready["content_sha256"]) == 64
        listed = {d["name"]: d for d in http.get("/datasets").json()}
        assert listed["pets"]["status"] == "ready" and listed["pets"]["class_names"] == ["cat", "dog", "fox"]

        assert upload(http, "hostile", HOSTILE).status_code == 202
        failed = wait_finished(http, "hostile", 1, service)
        assert failed["status"] == "failed" and failed["errors"][0]["entry"] == "../evil.png"


@pytest.mark.e2e
def test_a_version_whose_task_was_lost_is_prepared_by_a_worker_once_the_reaper_publishes_it(service: Service) -> None:
    # The service's processes take the reaper role, with a grace of seconds (tests/support.py FAST_RECOVERY).
    with service.http() as http:
        row_id = committed_without_its_task(http, "orphan")
        ready = wait_finished(http, "orphan", 1, service)
    assert ready["status"] == "ready", ready
    assert ready["class_names"] == ["cat", "dog", "fox"]
    with session_scope() as session:
        row = session.get_one(DatasetVersion, row_id)
        # Published by the reaper (never by the API), and prepared by one attempt.
        assert row.prepare_published_at is not None and row.prepare_attempts == 1


def ready(client: TestClient, name: str) -> None:
    assert upload(client, name, zip_bytes(class_files(CLASSES, seed=len(name)))).status_code == 202
    assert prepare(row_of(name, 1).id) == "ready"


def experiments_on(name: str) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(Experiment.id)).where(Experiment.dataset == name)) or 0


def test_a_version_deleted_after_a_spec_was_checked_refuses_the_submission_and_stores_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The delete lands between the spec's check against the dataset and the submission's insert.
    ready(client, "raced")
    checked = specs.lookup_for

    def lookup_then_deleted(session: Any, user: Any) -> Any:
        lookup = checked(session, user)

        def then_deleted(name: str, version: int | None) -> Any:
            info = lookup(name, version)
            with session_scope() as other:  # another request's delete, committed meanwhile
                other.execute(update(DatasetVersion).where(DatasetVersion.name == name).values(deleted_at=utcnow()))
            return info

        return then_deleted

    monkeypatch.setattr(specs, "lookup_for", lookup_then_deleted)
    refused = client.post("/experiments", json={"dataset": "raced", "epochs": 1})
    assert refused.status_code == 409, refused.text
    assert "raced@1 was deleted while this was submitted" in refused.json()["detail"]
    assert experiments_on("raced") == 0


def test_a_delete_during_a_submission_on_its_version_waits_for_it_and_is_refused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready(client, "busy")
    deletes: list[httpx.Response] = []
    held = submission.hold_versions

    def hold_then_delete_meanwhile(session: Any, experiments: Any) -> None:
        held(session, experiments)
        deleting = threading.Thread(target=lambda: deletes.append(client.delete("/datasets/busy/1")))
        deleting.start()
        deleting.join(timeout=1.0)
        # Until this submission commits, the delete waits: for the version's lock (PostgreSQL) or the write lock
        # (SQLite). Had it counted the version's users first, it would have found none and deleted it.
        assert deleting.is_alive() and not deletes

    monkeypatch.setattr(submission, "hold_versions", hold_then_delete_meanwhile)
    submitted = client.post("/experiments", json={"dataset": "busy", "epochs": 1})
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 30
    while not deletes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [d.status_code for d in deletes] == [409], [d.text for d in deletes]
    assert "used by 1 queued or running experiments" in deletes[0].json()["detail"]
    assert row_of("busy", 1).deleted_at is None and experiments_on("busy") == 1
