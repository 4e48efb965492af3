"""Submitting experiments: commit their rows, then enqueue them; shared by the experiment and sweep routers."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy.orm import Session

from api.queue import BrokerUnavailable, enqueue_training
from models import Experiment
from models.base import utcnow
from training.spec import Status


def submit(session: Session, experiments: list[Experiment]) -> None:
    """Commit queued rows, then enqueue each; if the broker refuses, every row not yet queued ends failed."""
    session.add_all(experiments)
    # Commit before enqueueing: a worker must never receive an id that is not in the database yet.
    session.commit()
    for position, experiment in enumerate(experiments):
        try:
            enqueue_training(experiment.id, experiment.queue)
        except BrokerUnavailable as exc:
            # Failed with the reason, not left queued forever: nothing will ever deliver these.
            stranded = experiments[position:]
            for row in stranded:
                row.status, row.error, row.finished_at = Status.FAILED, f"could not be queued: {exc}", utcnow()
            session.commit()
            ids = ", ".join(str(row.id) for row in stranded)
            raise HTTPException(
                status_code=503,
                detail=f"experiments {ids} were stored as failed because they could not be queued: {exc}; "
                "check EPOCHAL_BROKER_URL and GET /health, then submit again",
            ) from exc
