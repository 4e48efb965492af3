"""GET /metrics: the Prometheus text format, for admins, with values that match the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE
from infra.task_publisher import enqueue_training
from models import Experiment
from models.base import utcnow
from models.db import session_scope
from models.roles import acquire_or_renew
from tests.support import bearer, new_key
from training.results import EpochResult
from upkeep.dispatcher import dispatch
from worker import jobs


def scrape(client: TestClient) -> dict[str, list[Any]]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: list[Any], **labels: str) -> float:
    matching = [
        s.value
        for s in samples
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created")
    ]
    assert len(matching) == 1, (labels, samples)
    return float(matching[0])


def test_jobs_epochs_leases_and_queue_depth_match_the_database_and_broker(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [client.post("/experiments", json={"dataset": "mnist", "epochs": 3}).json()["id"] for _ in range(3)]
    job = jobs.claim(ids[0], "metrics@host")
    assert job is not None
    for epoch in (1, 2):
        jobs.record_epoch(job, EpochResult(epoch, 0.5, 0.8, 0.5, 0.8, 1.25))
    assert client.post(f"/experiments/{ids[2]}/cancel").status_code == 200

    families = scrape(client)
    jobs_by_status = families["epochal_jobs"]
    assert value(jobs_by_status, status="queued") == 1
    assert value(jobs_by_status, status="running") == 1
    assert value(jobs_by_status, status="cancelled") == 1
    assert value(jobs_by_status, status="succeeded") == 0
    assert value(families["epochal_epochs_trained"]) == 2
    assert value(families["epochal_epoch_seconds"]) == 2.5
    lease = value(families["epochal_lease_seconds_left"], experiment=str(ids[0]), worker="metrics@host")
    assert 0 < lease <= 60
    # The queued one waits for the dispatcher, in the database; released, it waits on the broker (no worker reads
    # the API tests' queue), and no longer for a slot.
    assert value(families["epochal_jobs_waiting_for_slot"], queue="api-tests") == 1
    depth = value(families["epochal_queue_depth"], queue="api-tests")  # what earlier tests left there
    with session_scope() as session:
        assert acquire_or_renew(session, DISPATCHER_ROLE, "metrics@host:1", 30) is not None
    # The running job holds the queue's one slot; with a second slot, the queued job is released.
    assert dispatch(enqueue_training, "metrics@host:1").released == []
    monkeypatch.setattr(get_settings(), "slots_per_queue", 2)
    assert dispatch(enqueue_training, "metrics@host:1").released == [ids[1]]
    families = scrape(client)
    assert value(families["epochal_jobs_waiting_for_slot"], queue="api-tests") == 0
    assert value(families["epochal_queue_depth"], queue="api-tests") == depth + 1


def test_each_users_oldest_waiting_job_is_exported_while_it_waits(client: TestClient) -> None:
    from api.main import app

    ada = TestClient(app, headers=bearer(new_key("metrics-ada")))
    bob = TestClient(app, headers=bearer(new_key("metrics-bob")))
    with ada, bob:
        older, newer = (ada.post("/experiments", json={"dataset": "mnist"}).json()["id"] for _ in range(2))
        bobs = bob.post("/experiments", json={"dataset": "mnist"}).json()["id"]
        with session_scope() as session:
            ten_minutes_ago = utcnow() - timedelta(seconds=600)
            session.execute(update(Experiment).where(Experiment.id == older).values(queued_at=ten_minutes_ago))
        oldest = scrape(client)["epochal_queue_oldest_wait_seconds"]
        assert 600 <= value(oldest, user="metrics-ada") < 900
        assert value(oldest, user="metrics-bob") < 600
        # Once it starts it waits no more: her other job is then her oldest; with none left waiting, no series.
        job = jobs.claim(older, "metrics@host")
        assert job is not None
        assert value(scrape(client)["epochal_queue_oldest_wait_seconds"], user="metrics-ada") < 600
        assert ada.post(f"/experiments/{newer}/cancel").status_code == 200
        assert bob.post(f"/experiments/{bobs}/cancel").status_code == 200
        oldest = scrape(client)["epochal_queue_oldest_wait_seconds"]
        assert not [s for s in oldest if s.labels["user"] in ("metrics-ada", "metrics-bob")], oldest
        jobs.finish_cancelled(job, None, None)


def test_requests_are_counted_and_timed_by_route_template(client: TestClient) -> None:
    client.get("/experiments/424242")  # a 404, counted under the route's template, not the raw path
    families = scrape(client)
    counted = value(families["epochal_http_requests"], method="GET", route="/experiments/{experiment_id}", status="404")
    assert counted >= 1
    timed = [
        s
        for s in families["epochal_http_request_duration_seconds"]
        if s.name.endswith("_count") and s.labels.get("route") == "/experiments/{experiment_id}"
    ]
    assert timed and timed[0].value >= 1
    assert all("424242" not in s.labels.get("route", "") for s in families["epochal_http_requests"])


def test_only_admins_read_metrics(other_client: TestClient, anonymous_client: TestClient) -> None:
    assert other_client.get("/metrics").status_code == 403
    assert anonymous_client.get("/metrics").status_code == 401
