"""Submitting experiments: commit their rows, then enqueue them; shared by the experiment and sweep routers."""

from __future__ import annotations

from datetime import timedelta

from fastapi import HTTPException
from sqlalchemy.orm import Session

from api.quotas import check_active_jobs
from config import Settings, get_settings
from infra import events
from infra.task_publisher import BrokerUnavailable, enqueue_training
from models import Experiment, Sweep, User
from models.base import utcnow
from training.spec import Status


def check_queues(experiments: list[Experiment]) -> None:
    """422 unless every experiment goes to a queue this deployment's workers serve (a typo would strand it)."""
    known = get_settings().known_queues
    unknown = sorted({e.queue for e in experiments} - set(known))
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=f"queue {unknown[0]!r} is not served by any worker of this deployment; use one of "
            f"{', '.join(repr(q) for q in known)} (EPOCHAL_QUEUES lists them), or omit queue for the default",
        )


def submit(
    session: Session,
    experiments: list[Experiment],
    settings: Settings,
    *,
    new_sweep: Sweep | None = None,
    quota_of: User | None = None,
) -> None:
    """Commit queued rows, then enqueue each; if the broker refuses, every row not yet queued ends failed.

    With `quota_of`, the rows count against that user's active-jobs quota (429 over it, and nothing stored). The
    check takes a lock that one user's submissions queue behind, held until the commit, so everything else comes
    before it, the insert included: inside it there are only the count and the commit. Each statement inside
    is a wait for the database and then for this thread's turn at the interpreter lock, which under load is
    what one user's concurrent submissions queue behind.

    Should this process die between the commit and the publish, the reaper publishes the rows once
    their `next_publish_at` has passed: an accepted job is never left waiting for a message that was never sent.
    """
    check_queues(experiments)
    due = utcnow() + timedelta(seconds=settings.republish_after_s)
    for experiment in experiments:
        experiment.next_publish_at, experiment.publish_count = due, 0
    if new_sweep is not None:
        session.add(new_sweep)
    session.add_all(experiments)
    if quota_of is not None:
        session.flush()
        try:
            check_active_jobs(session, settings, quota_of, adding=len(experiments), inserted=True)
        except HTTPException:
            session.rollback()
            raise
    # Commit before enqueueing: a worker must never receive an id that is not in the database yet.
    session.commit()
    events.queued_afresh([(e.id, e.sweep_id) for e in experiments], new_sweep.id if new_sweep is not None else None)
    for position, experiment in enumerate(experiments):
        try:
            enqueue_training(experiment.id, experiment.queue)
        except BrokerUnavailable as exc:
            # Failed with the reason, not left queued forever: nothing will ever deliver these.
            stranded = experiments[position:]
            for row in stranded:
                row.status, row.error, row.finished_at = Status.FAILED, f"could not be queued: {exc}", utcnow()
            session.commit()
            for row in stranded:
                events.status(row.id, row.sweep_id, "failed", error=row.error)
            ids = ", ".join(str(row.id) for row in stranded)
            raise HTTPException(
                status_code=503,
                detail=f"experiments {ids} were stored as failed because they could not be queued: {exc}; "
                "check EPOCHAL_BROKER_URL and GET /health, then submit again",
            ) from exc
