"""What the API and the worker's database functions publish on the event streams, read back from the broker."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from infra import events
from training.results import EpochResult
from worker import jobs


def stream(experiment_id: int) -> list[tuple[str, dict[str, Any]]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = events.redis_client().xrange(
        events.experiment_stream(experiment_id)
    )  # type: ignore[assignment]
    return [(fields[b"event"].decode(), json.loads(fields[b"data"])) for _id, fields in entries]


def test_a_job_publishes_its_status_changes_and_epochs(client: TestClient) -> None:
    experiment_id = client.post("/experiments", json={"dataset": "mnist", "epochs": 2}).json()["id"]
    job = jobs.claim(experiment_id, "events@host")
    assert job is not None
    jobs.record_epoch(job, EpochResult(1, 0.5, 0.8, 0.6, 0.7, 1.0))
    jobs.finish_failed(job, "RuntimeError: out of memory\n\ntraceback")
    assert [(kind, data.get("status", data.get("epoch"))) for kind, data in stream(experiment_id)] == [
        ("status", "queued"),
        ("status", "running"),
        ("epoch", 1),
        ("status", "failed"),
    ]
    assert stream(experiment_id)[-1][1]["error"] == "RuntimeError: out of memory"  # the first line, no traceback


def test_a_retry_starts_a_fresh_stream(client: TestClient) -> None:
    experiment_id = client.post("/experiments", json={"dataset": "mnist", "epochs": 2}).json()["id"]
    job = jobs.claim(experiment_id, "events@host")
    assert job is not None
    jobs.finish_failed(job, "DatasetUnavailable: put mnist.npz in the data folder")
    assert client.post(f"/experiments/{experiment_id}/retry").status_code == 202
    # The old attempt's "failed" must not be replayed to someone following the retried job.
    assert [data["status"] for _kind, data in stream(experiment_id)] == ["queued"]


def test_a_leftover_stream_under_a_reused_id_is_dropped(client: TestClient) -> None:
    # Ids come back when a database is reset under the same broker (SQLite reuses the highest id).
    experiment_id = client.post("/experiments", json={"dataset": "mnist"}).json()["id"]
    events.publish(experiment_id + 1, None, "status", {"status": "succeeded"})
    reused = client.post("/experiments", json={"dataset": "mnist"}).json()["id"]
    assert reused == experiment_id + 1
    assert [data["status"] for _kind, data in stream(reused)] == ["queued"]


def test_cancelling_a_queued_job_publishes_it(client: TestClient) -> None:
    experiment_id = client.post("/experiments", json={"dataset": "mnist"}).json()["id"]
    assert client.post(f"/experiments/{experiment_id}/cancel").status_code == 200
    assert [data["status"] for _kind, data in stream(experiment_id)] == ["queued", "cancelled"]


def test_a_submission_the_broker_refuses_ends_its_stream_failed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the job's publish fails (Celery pointed at a port where nothing listens); the events' Redis answers.
    from celery import Celery

    import infra.task_publisher

    dead = Celery("epochal-api-dead", broker="redis://127.0.0.1:1/0")
    dead.conf.broker_connection_timeout = 1
    monkeypatch.setattr(infra.task_publisher, "get_celery_client", lambda: dead)
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    monkeypatch.setattr(infra.task_publisher, "get_nudge_client", lambda: nowhere)
    assert client.post("/experiments", json={"dataset": "mnist"}).status_code == 503
    experiment_id = client.get("/experiments").json()["items"][0]["id"]
    published = stream(experiment_id)
    assert [data["status"] for _kind, data in published] == ["queued", "failed"]
    assert "could not be queued" in published[-1][1]["error"]
