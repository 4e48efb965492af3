"""Live events over Server-Sent Events, from a real worker training a real job through a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Service, read_events, running_service, wait_until_finished

pytestmark = pytest.mark.e2e

QUEUE = "e2e-events"
JOB: dict[str, Any] = {"dataset": "mnist", "epochs": 3, "batch_size": 32, "train_size": 3000, "jit_compile": False}


@pytest.fixture(scope="module")
def service(
    migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: Any
) -> Iterator[Service]:
    # Progress every 50 ms: even the small generated data set reports some within each epoch.
    monkeypatch_module.setenv("EPOCHAL_PROGRESS_INTERVAL_S", "0.05")
    with running_service(tmp_path_factory.mktemp("events"), QUEUE, ["worker1"]) as running:
        yield running


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http(timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def followed(http: httpx.Client, service: Service) -> tuple[int, list[dict[str, Any]]]:
    """A job followed live from its submission to its end."""
    response = http.post("/experiments", json=JOB)
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    events = read_events(http, f"/experiments/{experiment_id}/events")
    return experiment_id, events


def test_a_live_job_reports_status_epochs_and_progress_in_order(
    http: httpx.Client, followed: tuple[int, list[dict[str, Any]]]
) -> None:
    experiment_id, events = followed
    kinds = [e["event"] for e in events]
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[0] == "queued" and statuses[1] == "running"
    assert statuses[-1] == "succeeded" and kinds[-1] == "status", "the stream closes after the terminal status"
    epochs = [e["data"] for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    # The epoch events carry what GET .../metrics stores.
    stored = http.get(f"/experiments/{experiment_id}/metrics").json()
    assert [(e["epoch"], e["loss"], e["val_accuracy"]) for e in epochs] == [
        (m["epoch"], m["loss"], m["val_accuracy"]) for m in stored
    ]
    progress = [e["data"] for e in events if e["event"] == "progress"]
    assert progress, "progress within an epoch is reported"
    batches = -(-http.get(f"/experiments/{experiment_id}").json()["train_count"] // JOB["batch_size"])
    for event in progress:
        assert 1 <= event["batch"] <= event["batches"] == batches
        assert event["epoch"] in (1, 2, 3)
    # Progress moves forward, and comes before its epoch's event. (An epoch event is published once the epoch
    # is stored, which overlaps the next epoch's start: its first progress may come first.)
    assert [(p["epoch"], p["batch"]) for p in progress] == sorted((p["epoch"], p["batch"]) for p in progress)
    position = {e["data"]["epoch"]: i for i, e in enumerate(events) if e["event"] == "epoch"}
    for i, event in enumerate(events):
        if event["event"] == "progress":
            assert i < position[event["data"]["epoch"]]
    ids = [e["id"] for e in events if "id" in e]
    assert len(ids) == len(set(ids))


def test_a_client_that_reconnects_with_last_event_id_misses_nothing_and_sees_nothing_twice(
    http: httpx.Client, followed: tuple[int, list[dict[str, Any]]]
) -> None:
    experiment_id, whole = followed
    path = f"/experiments/{experiment_id}/events"
    first = read_events(http, path, stop_after=4)
    rest = read_events(http, path, last_event_id=first[-1]["id"])
    replay = read_events(http, path)
    identified = [e for e in replay if "id" in e]
    assert [e["id"] for e in first + rest if "id" in e] == [e["id"] for e in identified]
    assert [e["id"] for e in identified] == [e["id"] for e in whole if "id" in e]


def test_a_sweep_streams_every_experiment_and_ends_with_the_last(http: httpx.Client, service: Service) -> None:
    body = {"base": {**JOB, "epochs": 1, "train_size": 600}, "grid": {"optimizer": ["adam", "sgd"]}}
    response = http.post("/sweeps", json=body)
    assert response.status_code == 202, response.text
    sweep = response.json()
    ids = {e["id"] for e in sweep["experiments"]}
    events = read_events(http, f"/sweeps/{sweep['id']}/events")
    finished = wait_until_finished(http, sorted(ids), timeout_s=300, service=service)
    assert {b["status"] for b in finished} == {"succeeded"}
    assert {e["data"]["experiment_id"] for e in events if e["event"] == "epoch"} == ids
    assert events[-1]["data"]["final"] is True
    assert events[-1]["data"]["experiments"] == {str(i): "succeeded" for i in ids}


def test_events_of_an_unknown_experiment_are_a_404(http: httpx.Client) -> None:
    assert http.get("/experiments/999999/events").status_code == 404
