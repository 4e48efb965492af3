"""Fenced attempts, leases and the reaper, on the real database: who may write, and how every job ends.

These drive the worker's database functions (worker.jobs) and the reaper (upkeep.reaper) directly, as
a worker process would, with the clock moved forward instead of waited for. The same paths with real
worker processes, kills and restarts are in test_reliability.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from config import get_settings
from models import Artifact, EpochMetric, Evaluation, Experiment, ResumeState
from models.base import utcnow
from models.db import session_scope
from tests.support import release_waiting
from training.results import EpochResult, EvaluationResult, ResumePoint
from upkeep import reaper
from worker import jobs

WORKER = "fencing-test@host"


def submit(client: TestClient, **fields: Any) -> int:
    response = client.post("/experiments", json={"dataset": "mnist", "epochs": 4, **fields})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def epoch(n: int) -> EpochResult:
    return EpochResult(epoch=n, loss=1.0 / n, accuracy=0.5, val_loss=1.0 / n, val_accuracy=0.4 + n / 100, seconds=0.1)


def point(n: int, checkpoint: bytes | None = None) -> ResumePoint:
    return ResumePoint(n, f"state after epoch {n}".encode(), n, 0.4 + n / 100, checkpoint)


def expire_lease(experiment_id: int) -> None:
    """What a dead worker looks like from the database: nobody renewed the lease."""
    with session_scope() as session:
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


class Published(list[tuple[int, str]]):
    def __call__(self, experiment_id: int, queue: str) -> None:
        self.append((experiment_id, queue))


def read(client: TestClient, experiment_id: int) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/experiments/{experiment_id}").json()
    return body


def evaluation() -> EvaluationResult:
    return EvaluationResult(0.3, 0.9, ["0", "1"], [[1, 0], [0, 1]], {})


def test_a_superseded_attempt_can_write_nothing(client: TestClient, tmp_path: Path) -> None:
    experiment_id = submit(client)
    first = jobs.claim(experiment_id, "alpha@host")
    assert first is not None and first.attempt == 1 and first.resume is None
    jobs.record_epoch(first, epoch(1), point(1, b"best after 1"))

    # The first attempt goes silent (a long pause, a cut connection): the reaper presumes it dead.
    expire_lease(experiment_id)
    published = Published()
    report = reaper.reap(published)
    assert report.requeued == [experiment_id]
    # Queued again, it waits for the dispatcher (which releases it to a free slot), not for the reaper.
    assert published == []
    with session_scope() as session:
        assert session.get_one(Experiment, experiment_id).dispatched_at is None
    second = jobs.claim(experiment_id, "beta@host")
    assert second is not None and second.attempt == 2
    assert second.resume is not None and second.resume.epoch == 1
    assert second.resume.best_checkpoint == b"best after 1"

    # The first attempt wakes up and carries on as if nothing happened: every write is refused.
    assert jobs.renew_lease(first) is False
    with pytest.raises(jobs.Superseded):
        jobs.record_epoch(first, epoch(2), point(2))
    checkpoint = tmp_path / "best_model.h5"
    checkpoint.write_bytes(b"the stale attempt's checkpoint")
    with pytest.raises(jobs.Superseded):
        jobs.finish_succeeded(first, 2, 0.42, evaluation(), checkpoint)
    with pytest.raises(jobs.Superseded):
        jobs.finish_failed(first, "RuntimeError: stale")
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 0
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
        assert session.scalar(select(ResumeState.epoch).where(ResumeState.experiment_id == experiment_id)) == 1

    # The current attempt writes as usual, and the job ends exactly once.
    for n in (2, 3, 4):
        jobs.record_epoch(second, epoch(n), point(n))
    checkpoint.write_bytes(b"the current attempt's checkpoint")
    jobs.finish_succeeded(second, 4, 0.44, evaluation(), checkpoint)
    body = read(client, experiment_id)
    assert body["status"] == "succeeded"
    assert [(a["number"], a["worker"], a["outcome"]) for a in body["attempts"]] == [
        (1, "alpha@host", "lost"),
        (2, "beta@host", "succeeded"),
    ]
    assert body["attempts"][1]["resumed_from_epoch"] == 1
    assert "no heartbeat from alpha@host" in body["attempts"][0]["cause"]
    metrics = client.get(f"/experiments/{experiment_id}/metrics").json()
    assert [(m["epoch"], m["attempt"]) for m in metrics] == [(1, 1), (2, 2), (3, 2), (4, 2)]
    download = client.get(f"/experiments/{experiment_id}/artifacts/best_model.h5")
    assert download.content == b"the current attempt's checkpoint"
    with session_scope() as session:  # the finished job keeps no resume state
        assert session.get(ResumeState, experiment_id) is None


def test_a_live_lease_is_left_alone(client: TestClient) -> None:
    experiment_id = submit(client)
    job = jobs.claim(experiment_id, WORKER)
    assert job is not None
    assert jobs.renew_lease(job)
    report = reaper.reap(Published())
    assert experiment_id not in report.requeued + report.failed + report.cancelled
    assert read(client, experiment_id)["status"] == "running"


def test_epoch_rows_and_resume_state_are_written_together(client: TestClient) -> None:
    experiment_id = submit(client)
    job = jobs.claim(experiment_id, WORKER)
    assert job is not None
    jobs.record_epoch(job, epoch(1), point(1, b"ckpt-1"))
    jobs.record_epoch(job, epoch(2), point(2))  # no better checkpoint at epoch 2: the stored one stays
    with session_scope() as session:
        state = session.get_one(ResumeState, experiment_id)
        assert (state.epoch, state.attempt, state.state) == (2, 1, b"state after epoch 2")
        assert state.best_checkpoint == b"ckpt-1"
        epochs = session.scalars(select(EpochMetric.epoch).where(EpochMetric.experiment_id == experiment_id)).all()
        assert sorted(epochs) == [1, 2]


def test_lost_attempts_past_the_cap_fail_the_job_with_each_attempts_story(client: TestClient) -> None:
    experiment_id = submit(client)
    cap = get_settings().max_attempts
    for number in range(1, cap + 1):
        job = jobs.claim(experiment_id, f"w{number}@host")
        assert job is not None and job.attempt == number
        expire_lease(experiment_id)
        report = reaper.reap(Published())
    assert report.failed == [experiment_id]
    body = read(client, experiment_id)
    assert body["status"] == "failed"
    assert body["finished_at"] is not None
    assert body["error"].startswith(f"AttemptsExhausted: {cap} attempts were lost (EPOCHAL_MAX_ATTEMPTS={cap})")
    for number in range(1, cap + 1):
        assert f"attempt {number} on w{number}@host" in body["error"]
    assert [a["outcome"] for a in body["attempts"]] == ["lost"] * cap
    assert jobs.claim(experiment_id, WORKER) is None  # a late duplicate message does nothing


def test_an_attempt_past_the_time_limit_ends_failed_saying_so(client: TestClient) -> None:
    experiment_id = submit(client)
    assert jobs.claim(experiment_id, WORKER) is not None
    later = utcnow() + timedelta(seconds=get_settings().task_time_limit_s + 120)
    report = reaper.reap(Published(), now=later)
    assert report.failed == [experiment_id]
    body = read(client, experiment_id)
    assert body["status"] == "failed"
    assert body["error"].startswith("TimeLimitExceeded:")
    assert "EPOCHAL_TASK_TIME_LIMIT_S" in body["error"]
    assert body["attempts"][0]["outcome"] == "timed_out"


def test_a_lost_job_that_was_asked_to_cancel_ends_cancelled(client: TestClient) -> None:
    experiment_id = submit(client)
    assert jobs.claim(experiment_id, WORKER) is not None
    # While the lease is live the worker is trusted to stop at its epoch end...
    flagged = client.post(f"/experiments/{experiment_id}/cancel").json()
    assert (flagged["status"], flagged["cancel_requested"]) == ("running", True)
    # ...but nobody will: the reaper ends it.
    expire_lease(experiment_id)
    assert reaper.reap(Published()).cancelled == [experiment_id]
    assert read(client, experiment_id)["status"] == "cancelled"


def test_cancelling_a_job_whose_worker_is_gone_ends_it_at_once(client: TestClient) -> None:
    experiment_id = submit(client)
    assert jobs.claim(experiment_id, WORKER) is not None
    expire_lease(experiment_id)
    response = client.post(f"/experiments/{experiment_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["finished_at"] is not None
    assert body["attempts"][0]["outcome"] == "lost"


def test_a_queued_job_nobody_claimed_is_published_again_with_backoff(client: TestClient) -> None:
    experiment_id = submit(client)
    settings = get_settings()
    published = Published()
    # Waiting for a slot, it is the dispatcher's: the reaper never publishes it, however long it waits.
    assert reaper.reap(published, now=utcnow() + timedelta(days=1)).published == []
    assert release_waiting() == [experiment_id]
    # Released, but not yet due: the message may simply be waiting for the worker to take it.
    assert reaper.reap(published).published == []
    first_pass = utcnow() + timedelta(seconds=settings.republish_after_s + 1)
    assert reaper.reap(published, now=first_pass).published == [experiment_id]
    # Backing off: due again only after twice the delay.
    assert reaper.reap(published, now=first_pass + timedelta(seconds=settings.republish_after_s + 1)).published == []
    second_pass = first_pass + timedelta(seconds=2 * settings.republish_after_s + 1)
    assert reaper.reap(published, now=second_pass).published == [experiment_id]
    assert published == [(experiment_id, "api-tests")] * 2
    # Once claimed, never again.
    assert jobs.claim(experiment_id, WORKER) is not None
    assert reaper.reap(published, now=second_pass + timedelta(days=1)).published == []


def test_a_job_given_back_resumes_on_the_next_claim(client: TestClient) -> None:
    experiment_id = submit(client)
    job = jobs.claim(experiment_id, WORKER)
    assert job is not None
    jobs.record_epoch(job, epoch(1), point(1, b"ckpt"))
    jobs.give_back(job, "its worker was shutting down")
    body = read(client, experiment_id)
    assert body["status"] == "queued"
    assert body["attempts"][0]["outcome"] == "interrupted"
    again = jobs.claim(experiment_id, WORKER)
    assert again is not None and again.attempt == 2
    assert again.resume is not None and again.resume.epoch == 1


def test_a_claim_reads_a_resume_state_written_between_its_read_and_its_claim(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A claim reads the resume state before it locks the row (models/attempt_sessions.py says why); when
    # another attempt ran and was lost in between, the claim must resume from that attempt's newer state.
    experiment_id = submit(client)
    job = jobs.claim(experiment_id, WORKER)
    assert job is not None
    jobs.record_epoch(job, epoch(1), point(1))
    jobs.give_back(job, "its worker was shutting down")
    newer = point(2)
    original = jobs._load_resume
    reads: list[int | None] = []

    def read_then_overtaken(session: Any, experiment: int) -> ResumePoint | None:
        loaded = original(session, experiment)
        if not reads:
            with session_scope() as other:  # committed while this claim has not yet taken the row
                other.execute(
                    update(ResumeState)
                    .where(ResumeState.experiment_id == experiment)
                    .values(epoch=2, state=newer.state, state_sha256=newer.sha256)
                )
        reads.append(None if loaded is None else loaded.epoch)
        return loaded

    monkeypatch.setattr(jobs, "_load_resume", read_then_overtaken)
    again = jobs.claim(experiment_id, WORKER)
    assert reads == [1, 2]
    assert again is not None and again.resume is not None
    assert (again.resume.epoch, again.resume.state) == (2, newer.state)


def test_a_retry_starts_from_scratch_with_a_fresh_attempt_budget(client: TestClient) -> None:
    experiment_id = submit(client)
    job = jobs.claim(experiment_id, WORKER)
    assert job is not None
    jobs.record_epoch(job, epoch(1), point(1, b"ckpt"))
    expire_lease(experiment_id)
    reaper.reap(Published())
    again = jobs.claim(experiment_id, WORKER)
    assert again is not None
    jobs.finish_failed(again, "DatasetUnavailable: put mnist.npz in the data folder")
    assert client.post(f"/experiments/{experiment_id}/retry").status_code == 202
    fresh = jobs.claim(experiment_id, WORKER)
    # Attempt numbers are fencing tokens: never reused, even after a retry.
    assert fresh is not None and fresh.attempt == 3 and fresh.resume is None
    with session_scope() as session:
        assert session.get_one(Experiment, experiment_id).lost_attempts == 0


def test_a_job_whose_child_is_terminated_mid_training_is_given_back_not_failed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery terminates a running task's child when its broker connection is lost; billiard's SIGTERM handler raises
    # SystemExit, and raised inside a TensorFlow call it can come out as another error (seen in a broker-kill chaos
    # round: "TypeError: Cannot find minimum value of <dtype: 'int32'>"). That is no failure of the job.
    from billiard import common

    from worker import tasks

    experiment_id = submit(client)

    def terminated_inside_tensorflow(job: jobs.ClaimedJob, *_: object) -> str:
        monkeypatch.setattr(common, "_should_have_exited", [True])  # what billiard's handler sets before exiting
        raise TypeError("Cannot find minimum value of <dtype: 'int32'>.")

    monkeypatch.setattr(tasks, "_train", terminated_inside_tensorflow)
    with pytest.raises(TypeError):  # the child goes on exiting
        tasks.train_experiment(experiment_id)
    body = read(client, experiment_id)
    assert (body["status"], body["error"]) == ("queued", None)
    with session_scope() as session:
        experiment = session.get_one(Experiment, experiment_id)
        assert experiment.dispatched_at is None, "it waits for the dispatcher to release it again"
        assert [attempt.outcome for attempt in experiment.attempts] == ["interrupted"]
