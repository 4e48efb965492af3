"""A dataset version's live events: `processing` when the API commits it, the worker's `progress` while it prepares
it, and its final `status`; relayed as Server-Sent Events by GET /datasets/{name}/versions/{version}/events with
the job streams' resume, slots and closing, and the ownership rule of GET /datasets/{name}."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.routers.events import SETTLED_AT, _dataset_version_ended
from infra import events
from models.base import as_utc
from tests.support import OTHER, Service, new_key, parse_events, read_events, running_service
from tests.test_dataset_rows import HOSTILE, THREE_CLASSES, row_of, upload, zip_bytes
from tests.upload_archives import class_files, write_zip
from worker import dataset_events
from worker.datasets import prepare

MANY = {"cat": 40, "dog": 35, "fox": 45}  # enough images for a stage to report more than its start and its end


def stream(dataset_id: int) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = events.redis_client().xrange(events.dataset_stream(dataset_id))
    return [(fields[b"event"].decode(), json.loads(fields[b"data"])) for _id, fields in entries]


def check_progress(progress: list[dict[str, Any]]) -> dict[str, list[tuple[int, int | None]]]:
    """The progress events by stage: checking comes first and ends before any image is fitted; within a stage
    `done` only grows, to its total."""
    stages: dict[str, list[tuple[int, int | None]]] = {}
    for event in progress:
        stages.setdefault(event["stage"], []).append((event["done"], event["total"]))
    assert list(stages) == ["checking", "train", "test"], list(stages)
    checking_ends = max(i for i, e in enumerate(progress) if e["stage"] == "checking")
    assert all(e["stage"] == "checking" for e in progress[: checking_ends + 1])
    for stage, seen in stages.items():
        done = [d for d, _t in seen]
        assert done == sorted(done) and done[0] == 0, (stage, done)
        assert seen[-1][0] == seen[-1][1], (stage, seen[-1])
    return stages


def test_an_upload_publishes_processing_then_the_worker_step_its_progress_and_ready(client: TestClient) -> None:
    created = upload(client, "flowers", zip_bytes(class_files(MANY)))
    assert created.status_code == 202, created.text
    dataset_id = row_of("flowers", 1).id
    assert stream(dataset_id) == [
        ("status", {"dataset_id": dataset_id, "name": "flowers", "version": 1, "status": "processing"})
    ]
    assert prepare(dataset_id) == "ready"
    published = stream(dataset_id)
    kinds = [kind for kind, _data in published]
    assert kinds[0] == "status" and kinds[-1] == "status" and set(kinds[1:-1]) == {"progress"}
    stages = check_progress([data for kind, data in published if kind == "progress"])
    version = client.get("/datasets/flowers").json()["versions"][0]
    for split in ("train", "test"):
        assert stages[split][-1][0] == sum(version["counts"][split].values())
    assert stages["checking"][-1] == (120, 120)
    assert published[-1][1] == {
        "dataset_id": dataset_id,
        "name": "flowers",
        "version": 1,
        "status": "ready",
        "images": 120,
    }
    assert events.redis_client().ttl(events.dataset_stream(dataset_id)) > 0, "a settled stream expires"
    # The same content again: a duplicate, which says of which version.
    assert upload(client, "flowers", zip_bytes(class_files(MANY))).status_code == 202
    again = row_of("flowers", 2).id
    assert prepare(again) == "duplicate"
    assert stream(again)[-1][1] == {
        "dataset_id": again,
        "name": "flowers",
        "version": 2,
        "status": "duplicate",
        "duplicate_of": 1,
        "images": 120,
    }
    # A redelivery of a settled version's task publishes nothing more.
    before = stream(again)
    assert prepare(again) == "skipped" and stream(again) == before


def test_a_settled_version_answers_its_final_status_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routers import events as routes

    # Its stream holds its final event already, so nothing is waited for: were the terminal statuses a job's, `ready`
    # would not be one, and the relay would wait this long for it.
    monkeypatch.setattr(routes, "FINAL_EVENT_GRACE_S", 60.0)
    assert upload(client, "bad", HOSTILE).status_code == 202
    assert upload(client, "good", THREE_CLASSES).status_code == 202
    assert prepare(row_of("bad", 1).id) == "failed" and prepare(row_of("good", 1).id) == "ready"
    answers: dict[str, Any] = {}

    def read_both() -> None:
        for name in ("bad", "good"):
            answers[name] = client.get(f"/datasets/{name}/versions/1/events")

    reader = threading.Thread(target=read_both, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "a settled version's stream waited for an event it had relayed"
    assert parse_events(answers["good"].text.splitlines())[-2]["data"]["status"] == "ready"
    response = answers["bad"]
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    relayed = parse_events(response.text.splitlines())
    statuses = [e["data"]["status"] for e in relayed if e["event"] == "status"]
    assert statuses == ["processing", "failed", "failed"]  # the stream's own, then the database's final word
    final = relayed[-1]
    assert "id" not in final and final["data"]["final"] is True
    assert [e["entry"] for e in final["data"]["errors"]] == ["../evil.png"]
    assert relayed[-2]["data"]["errors"] == final["data"]["errors"]
    # A built-in is ready from the start: its stream is its final status alone.
    builtin = parse_events(client.get("/datasets/mnist/versions/1/events").text.splitlines())
    assert [(e["data"]["status"], e["data"]["final"]) for e in builtin] == [("ready", True)]


def test_a_lost_stream_still_closes_with_the_status_of_the_row(client: TestClient) -> None:
    assert upload(client, "lost", THREE_CLASSES).status_code == 202
    dataset_id = row_of("lost", 1).id
    assert prepare(dataset_id) == "ready"
    events.redis_client().delete(events.dataset_stream(dataset_id))  # expired, or never published
    relayed = parse_events(client.get("/datasets/lost/versions/1/events").text.splitlines())
    assert [(e["data"]["status"], e["data"]["final"]) for e in relayed] == [("ready", True)]


def test_a_version_deleted_while_processing_closes_its_stream(client: TestClient) -> None:
    assert upload(client, "gone", THREE_CLASSES).status_code == 202
    dataset_id = row_of("gone", 1).id
    ended = _dataset_version_ended(dataset_id)
    assert ended() is None  # processing: the stream follows it
    assert client.delete("/datasets/gone/1").status_code == 204
    final, deleted_at = ended(), row_of("gone", 1).deleted_at
    assert final is not None and deleted_at is not None
    assert as_utc(final.pop(SETTLED_AT)) == as_utc(deleted_at)  # since when: how long to wait for its last events
    assert final == {
        "dataset_id": dataset_id,
        "name": "gone",
        "version": 1,
        "status": "processing",
        "deleted": True,
        "final": True,
    }
    assert client.get("/datasets/gone/versions/1/events").status_code == 404  # and nobody opens it again


def test_another_users_private_dataset_and_a_missing_version_are_404s(
    client: TestClient, other_client: TestClient
) -> None:
    assert upload(client, "secret", HOSTILE).status_code == 202
    prepare(row_of("secret", 1).id)
    hidden = other_client.get("/datasets/secret/versions/1/events")
    missing = other_client.get("/datasets/nothing/versions/1/events")
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["detail"] == missing.json()["detail"].replace("nothing", "secret")
    no_version = client.get("/datasets/secret/versions/2/events")
    assert no_version.status_code == 404 and "has no version 2" in no_version.json()["detail"]
    assert client.get(f"/datasets/secret/versions/{2**70}/events").status_code == 404  # out of range: no such one
    assert client.get("/datasets/secret/versions/1/events").status_code == 200


def test_a_leftover_stream_under_a_reused_id_is_dropped(client: TestClient) -> None:
    assert upload(client, "first", THREE_CLASSES).status_code == 202
    reused = row_of("first", 1).id + 1
    events.dataset_event(reused, "status", {"status": "failed", "errors": [{"entry": "old", "reason": "old"}]})
    assert upload(client, "second", THREE_CLASSES).status_code == 202
    assert row_of("second", 1).id == reused
    assert [data["status"] for _kind, data in stream(reused)] == ["processing"]


def test_an_upload_the_broker_refuses_ends_its_stream_failed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.task_publisher import BrokerUnavailable

    def refused(dataset_id: int, queue: str) -> None:
        raise BrokerUnavailable("the broker did not take the job")

    monkeypatch.setattr("api.routers.datasets.enqueue_dataset", refused)
    assert upload(client, "unqueued", THREE_CLASSES).status_code == 503
    published = stream(row_of("unqueued", 1).id)
    assert [data["status"] for _kind, data in published] == ["processing", "failed"]
    assert "upload it again" in published[-1][1]["errors"][0]["reason"]


def test_progress_stops_trying_a_broker_that_is_away_and_the_preparation_goes_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert upload(client, "offline", zip_bytes(class_files(MANY))).status_code == 202
    dataset_id = row_of("offline", 1).id
    tried: list[str] = []
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)

    def unreachable() -> redis.Redis:
        tried.append("redis")
        return nowhere

    monkeypatch.setattr(events, "redis_client", unreachable)
    assert prepare(dataset_id) == "ready"  # nothing published, and nothing failed
    assert tried and row_of("offline", 1).images == 120
    clock = [0.0]
    publisher = dataset_events.ProgressPublisher(dataset_id, clock=lambda: clock[0])
    tried.clear()
    publisher("train", 1, 10)
    publisher("train", 2, 10)
    clock[0] += dataset_events.PAUSE_S
    publisher("train", 3, 10)
    assert len(tried) == 2  # the first, then the first after the pause


# Through real processes: the API queues `prepare_dataset`, a worker prepares it, the stream relays it all.
QUEUE = "e2e-dataset-events"


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from tests.support import empty_all_tables

    empty_all_tables()
    with running_service(tmp_path_factory.mktemp("dataset-events"), QUEUE, ["prep"]) as running:
        yield running


@pytest.mark.e2e
def test_a_worker_prepares_an_upload_followed_live_to_ready_and_a_reconnect_sees_nothing_twice(
    service: Service, tmp_path: Path
) -> None:
    archive = write_zip(tmp_path / "many.zip", class_files(MANY, size=(16, 16), channels=3))
    with service.http(timeout=120) as http, archive.open("rb") as body:
        created = http.post("/datasets?name=pets", files={"file": ("many.zip", body)})
        assert created.status_code == 202, created.text
        path = f"/datasets/pets/versions/{created.json()['version']}/events"
        whole = read_events(http, path)
        statuses = [e["data"]["status"] for e in whole if e["event"] == "status"]
        assert statuses == ["processing", "ready", "ready"], service.logs()
        assert whole[-1]["data"]["final"] is True and whole[-1]["data"]["images"] == 120
        check_progress([e["data"] for e in whole if e["event"] == "progress"])
        kinds = [e["event"] for e in whole]
        assert kinds.index("progress") > 0 and kinds[-2:] == ["status", "status"]
        assert whole[-1]["data"]["status"] == http.get("/datasets/pets").json()["versions"][0]["status"]
        # Reconnecting after any event continues right after it: nothing missed, nothing twice.
        identified = [e["id"] for e in whole if "id" in e]
        assert len(identified) == len(set(identified)) == len(whole) - 1
        first = read_events(http, path, stop_after=3)
        rest = read_events(http, path, last_event_id=first[-1]["id"])
        assert [e["id"] for e in first + rest if "id" in e] == identified
        assert rest[-1]["data"]["final"] is True

        assert upload(http, "hostile", HOSTILE).status_code == 202
        failed = read_events(http, "/datasets/hostile/versions/1/events")
        assert [e["data"]["status"] for e in failed if e["event"] == "status"] == ["processing", "failed", "failed"]
        assert [e["entry"] for e in failed[-2]["data"]["errors"]] == ["../evil.png"]  # the worker's event names it
        assert "'..'" in failed[-2]["data"]["errors"][0]["reason"]

    with service.http(key=new_key(OTHER)) as other:
        hidden = other.get(path)
        missing = other.get("/datasets/nothing/versions/1/events")
        assert (hidden.status_code, missing.status_code) == (404, 404)
        assert hidden.json()["detail"] == missing.json()["detail"].replace("nothing", "pets")
