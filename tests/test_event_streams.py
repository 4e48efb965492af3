"""What the API and the worker's database functions publish on the event streams, read back from the broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient

from config import get_settings
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


def _closing_lines(
    experiment_id: int, cursor: str, then: Callable[[], None] | None = None, settled_at: datetime | None = None
) -> list[str]:
    """What a stream relays once the database says the job is over (since `settled_at`, or a time it does not
    know), with `then` run 0.3 s into it."""
    from api.routers import events as routes

    final = {"experiment_id": experiment_id, "status": "succeeded", "final": True, routes.SETTLED_AT: settled_at}

    async def relay() -> list[str]:
        reader = aioredis.Redis.from_url(events.redis_url(get_settings().broker_url))
        if then is not None:
            threading.Timer(0.3, then).start()
        try:
            with anyio.fail_after(10):
                closing = routes._closing(reader, events.experiment_stream(experiment_id), cursor, final)
                return [line async for line in closing]
        finally:
            await reader.aclose()

    return anyio.run(relay)


def _fresh(experiment_id: int) -> int:
    events.redis_client().delete(events.experiment_stream(experiment_id))
    return experiment_id


def lines_final(experiment_id: int) -> dict[str, Any]:
    return {"experiment_id": experiment_id, "status": "succeeded", "final": True}


def _last_id(experiment_id: int) -> str:
    entries: Any = events.redis_client().xrevrange(events.experiment_stream(experiment_id), count=1)
    return str(entries[0][0].decode())


def test_a_terminal_status_committed_before_its_event_is_relayed_with_its_id(client: TestClient) -> None:
    # The worker commits the final status, then publishes it: a stream that reads the database in between must
    # still relay the event (with its id, as a replay has it), not only the database's word for it.
    experiment_id = _fresh(7_000_001)
    events.publish(experiment_id, None, "epoch", {"epoch": 1})
    cursor = _last_id(experiment_id)
    lines = _closing_lines(experiment_id, cursor, lambda: events.status(experiment_id, None, "succeeded"))
    assert lines[0].startswith(f"id: {_last_id(experiment_id)}\nevent: status\n")
    assert json.loads(lines[0].split("data: ")[1])["status"] == "succeeded"
    assert json.loads(lines[1].split("data: ")[1]) == {**lines_final(experiment_id)}
    assert len(lines) == 2


def test_a_stream_whose_terminal_event_was_relayed_ends_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routers import events as routes

    monkeypatch.setattr(routes, "FINAL_EVENT_GRACE_S", 60.0)  # a wait would outlast the relay's 10 s bound
    experiment_id = _fresh(7_000_002)
    events.status(experiment_id, None, "succeeded")
    lines = _closing_lines(experiment_id, _last_id(experiment_id))
    assert [json.loads(line.split("data: ")[1])["final"] for line in lines] == [True]


def test_a_lost_terminal_event_ends_the_stream_with_the_database_status(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.routers import events as routes

    monkeypatch.setattr(routes, "FINAL_EVENT_GRACE_S", 0.5)
    experiment_id = _fresh(7_000_003)
    events.publish(experiment_id, None, "epoch", {"epoch": 1})
    lines = _closing_lines(experiment_id, _last_id(experiment_id))
    assert len(lines) == 1 and json.loads(lines[0].split("data: ")[1])["final"] is True


def test_a_job_that_ended_long_ago_ends_its_stream_at_once_without_its_terminal_event(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The grace is for an end committed a moment ago, whose event may still be on its way: not for every later
    # viewer of a job whose final event was lost.
    from api.routers import events as routes

    monkeypatch.setattr(routes, "FINAL_EVENT_GRACE_S", 60.0)  # a wait would outlast the relay's 10 s bound
    experiment_id = _fresh(7_000_004)
    events.publish(experiment_id, None, "epoch", {"epoch": 1})
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    lines = _closing_lines(experiment_id, _last_id(experiment_id), settled_at=long_ago)
    assert [json.loads(line.split("data: ")[1]) for line in lines] == [lines_final(experiment_id)]
