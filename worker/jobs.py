"""The job's life in the database: claim, per-epoch rows, cancellation flag, and the final state.

Each function is one short transaction; none is ever held open across training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Artifact, EpochMetric, Evaluation, Experiment
from models.base import utcnow
from models.db import rows_changed, session_scope
from models.specs import spec_of
from training.results import CHECKPOINT_NAME, EpochResult, EvaluationResult
from training.spec import ExperimentSpec, Status

H5_MEDIA_TYPE = "application/x-hdf5"

log = logging.getLogger(__name__)


def claim(experiment_id: int, worker: str, *, redelivered: bool = False) -> ExperimentSpec | None:
    """Mark the experiment running and return its spec, or None when this delivery must do nothing.

    A queued experiment is claimed. A running one is taken over only by a redelivered message: the
    broker redelivers when the worker running it was lost (killed, out of memory), and the task time
    limit is shorter than the visibility timeout, so a healthy run is never redelivered. Any other
    second delivery, or a job cancelled while queued, does nothing.
    """
    with session_scope() as session:
        claimed = rows_changed(
            session,
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.status == Status.QUEUED)
            .values(status=Status.RUNNING, worker=worker, started_at=utcnow()),
        )
        if not claimed and redelivered:
            claimed = rows_changed(
                session,
                update(Experiment)
                .where(Experiment.id == experiment_id, Experiment.status == Status.RUNNING)
                .values(worker=worker, started_at=utcnow()),
            )
            if claimed:
                # Start the history afresh: the lost attempt's epochs would mix with this one's.
                session.execute(delete(EpochMetric).where(EpochMetric.experiment_id == experiment_id))
                restarted = session.get_one(Experiment, experiment_id)
                restarted.warnings = [*restarted.warnings, f"the worker running it was lost; restarted on {worker}"]
                log.warning("experiment %s: its worker was lost; restarting it on %s", experiment_id, worker)
        if not claimed:
            return None
        return spec_of(session.get_one(Experiment, experiment_id))


def record_device(experiment_id: int, device: str, warnings: list[str]) -> None:
    """Record where the job trains, adding any warnings about what the device changed."""
    with session_scope() as session:
        experiment = session.get_one(Experiment, experiment_id)
        experiment.device = device
        experiment.warnings = [*experiment.warnings, *warnings]


def _insert_ignoring_duplicates(session: Session, values: dict[str, object]) -> None:
    # (experiment, epoch) is unique: a redelivered job that reaches an epoch again writes nothing.
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(EpochMetric).values(**values).on_conflict_do_nothing())


def record_epoch(experiment_id: int, result: EpochResult) -> None:
    """Write one finished epoch's metrics."""
    with session_scope() as session:
        _insert_ignoring_duplicates(
            session,
            {
                "experiment_id": experiment_id,
                "epoch": result.epoch,
                "loss": result.loss,
                "accuracy": result.accuracy,
                "val_loss": result.val_loss,
                "val_accuracy": result.val_accuracy,
                "seconds": result.seconds,
                "created_at": utcnow(),
            },
        )


def cancel_requested(experiment_id: int) -> bool:
    with session_scope() as session:
        return bool(session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id)))


def _finish(session: Session, experiment_id: int, status: Status, **values: object) -> None:
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.RUNNING)
        .values(status=status, finished_at=utcnow(), **values)
    )


def finish_succeeded(
    experiment_id: int,
    best_epoch: int,
    best_val_accuracy: float | None,
    evaluation: EvaluationResult,
    checkpoint: Path,
) -> None:
    """Store the evaluation, the checkpoint and the final status in one transaction: all or nothing."""
    content = checkpoint.read_bytes()
    with session_scope() as session:
        session.add(Evaluation(experiment_id=experiment_id, **dataclasses.asdict(evaluation)))
        session.add(
            Artifact(
                experiment_id=experiment_id,
                name=CHECKPOINT_NAME,
                media_type=H5_MEDIA_TYPE,
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                content=content,
            )
        )
        _finish(
            session,
            experiment_id,
            Status.SUCCEEDED,
            best_epoch=best_epoch,
            best_val_accuracy=best_val_accuracy,
        )


def finish_cancelled(experiment_id: int, best_epoch: int | None, best_val_accuracy: float | None) -> None:
    with session_scope() as session:
        _finish(
            session,
            experiment_id,
            Status.CANCELLED,
            best_epoch=best_epoch,
            best_val_accuracy=best_val_accuracy,
        )


def finish_failed(experiment_id: int, error: str) -> None:
    with session_scope() as session:
        _finish(session, experiment_id, Status.FAILED, error=error)
