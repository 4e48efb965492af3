"""The job's life in the database, as its worker sees it: claim an attempt, per-epoch rows with resume state, and
the final state.

Every write an attempt makes is fenced (domain/lifecycle.py): it is conditional on the experiment still being
`running` under this attempt's number, in the same transaction. An attempt that the reaper presumed dead (its
lease expired) and replaced can therefore never write again, whatever it still believes; the write
raises `Superseded` and the attempt stops. Each function is one short transaction; none is ever held
open across training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, undefer

from config import get_settings
from domain import lifecycle
from domain.lifecycle import Outcome, Status, Superseded
from infra import events
from infra.version import service_version
from models import Artifact, Attempt, EpochMetric, Evaluation, Experiment, ResumeState, attempt_sessions
from models.base import utcnow
from models.change_notices import announce
from models.datasets import record_builtin_hash
from models.db import rows_changed, session_scope
from models.specs import spec_of
from training.results import CHECKPOINT_NAME, EpochResult, EvaluationResult, ResumePoint
from training.runtime import LibraryVersions
from training.spec import ExperimentSpec

H5_MEDIA_TYPE = "application/x-hdf5"

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ClaimedJob:
    """One attempt at one experiment: the fencing token (`attempt`) goes with every write."""

    experiment_id: int
    attempt: int
    queue: str
    spec: ExperimentSpec
    resume: ResumePoint | None
    sweep_id: int | None = None


def lease_deadline() -> datetime:
    return utcnow() + timedelta(seconds=get_settings().lease_s)


def with_db_retry(write: Callable[[], T], what: str) -> T:
    """Run `write`, retrying with backoff while the database is unreachable (a restart), up to EPOCHAL_DB_RETRY_S.

    Safe because each write is one fenced transaction: a retry after a lost commit either finds its
    own work done (and is refused by the fence or the epoch's unique key) or does it once.
    """
    deadline = time.monotonic() + get_settings().db_retry_s
    delay = 0.5
    while True:
        try:
            return write()
        except DBAPIError as exc:
            if not (exc.connection_invalidated or _is_outage(exc)) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable while %s (%s); retrying in %.1f s", what, type(exc.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)


def _is_outage(exc: DBAPIError) -> bool:
    # OperationalError covers refused connections and server restarts on both PostgreSQL and SQLite's
    # "database is locked"; a constraint violation (IntegrityError) is never an outage.
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def _load_resume(session: Session, experiment_id: int) -> ResumePoint | None:
    row = session.scalars(
        select(ResumeState)
        .where(ResumeState.experiment_id == experiment_id)
        .options(undefer(ResumeState.state), undefer(ResumeState.best_checkpoint))
    ).first()
    if row is None:
        return None
    if hashlib.sha256(row.state).hexdigest() != row.state_sha256:
        raise ValueError(f"the resume state of experiment {experiment_id} is corrupt (sha256 mismatch)")
    return ResumePoint(row.epoch, row.state, row.best_epoch, row.best_val_accuracy, row.best_checkpoint)


def _key_of(resume: ResumePoint | None) -> tuple[int, str] | None:
    return None if resume is None else (resume.epoch, resume.sha256)


def _resume_key(session: Session, experiment_id: int) -> tuple[int, str] | None:
    """The stored resume state's epoch and checksum, without its bytes."""
    row = session.execute(
        select(ResumeState.epoch, ResumeState.state_sha256).where(ResumeState.experiment_id == experiment_id)
    ).first()
    return None if row is None else (row.epoch, row.state_sha256)


def claim(experiment_id: int, worker: str, pid: int | None = None) -> ClaimedJob | None:
    """Start a new attempt at a queued experiment and return it, or None when this delivery must do nothing.

    Only a `queued` experiment is claimed: a duplicate message (a republish, or Redis redelivering a
    message whose job is still running elsewhere), a running, finished or cancelled job does nothing.
    A job that was running before continues after its last finished epoch (its resume state).
    """
    with session_scope() as session:
        attempt_sessions.bound_idle_transaction(session, get_settings().lease_s)
        # Read before the claim locks the row: megabytes of resume state going to a process that stops
        # halfway would otherwise hold that lock with no timeout (models/attempt_sessions.py).
        resume = _load_resume(session, experiment_id)
        experiment = lifecycle.claim(session, experiment_id, worker, lease_deadline())
        if experiment is None:
            return None
        attempt_sessions.name_transaction(session, experiment_id, experiment.attempt)
        if _resume_key(session, experiment_id) != _key_of(resume):
            # Another attempt ran and was lost between the read and the claim: read its newer state.
            resume = _load_resume(session, experiment_id)
        done = 0 if resume is None else resume.epoch
        # Rows past the resume point cannot exist (both are written in one transaction), but a row from a
        # database that predates resume states could: a fresh start must never mix with it.
        session.execute(delete(EpochMetric).where(EpochMetric.experiment_id == experiment_id, EpochMetric.epoch > done))
        session.add(
            Attempt(
                experiment_id=experiment_id, number=experiment.attempt, worker=worker, pid=pid, resumed_from_epoch=done
            )
        )
        if done:
            log.info("experiment %s: attempt %s resumes after epoch %s", experiment_id, experiment.attempt, done)
        job = ClaimedJob(
            experiment_id, experiment.attempt, experiment.queue, spec_of(experiment), resume, experiment.sweep_id
        )
    events.status(experiment_id, job.sweep_id, "running", attempt=job.attempt, worker=worker, resumed_after_epoch=done)
    return job


def renew_lease(job: ClaimedJob) -> bool:
    """Extend this attempt's lease; False when it is no longer the current attempt (stop, write nothing)."""
    with session_scope() as session:
        _as_attempt(session, job)
        return lifecycle.renew_lease(session, job.experiment_id, job.attempt, lease_deadline())


def record_device(job: ClaimedJob, device: str, warnings: list[str], libraries: LibraryVersions) -> None:
    """Record where the job trains and what this attempt runs (libraries, service version), adding any warnings
    about what the device changed."""

    def write() -> None:
        with session_scope() as session:
            _as_attempt(session, job)
            experiment = _running_experiment(session, job)
            experiment.device = device
            _add_warnings(experiment, warnings)
            session.execute(
                update(Attempt)
                .where(Attempt.experiment_id == job.experiment_id, Attempt.number == job.attempt)
                .values(
                    device=device,
                    python_version=libraries.python,
                    tensorflow_version=libraries.tensorflow,
                    keras_version=libraries.keras,
                    numpy_version=libraries.numpy,
                    service_version=service_version(),
                )
            )

    with_db_retry(write, "recording the device")


def _running_experiment(session: Session, job: ClaimedJob) -> Experiment:
    """The job's experiment, while this attempt is the one running it; Superseded otherwise."""
    experiment = session.get_one(Experiment, job.experiment_id)
    if experiment.attempt != job.attempt or experiment.status is not Status.RUNNING:
        raise Superseded(f"experiment {job.experiment_id}: attempt {job.attempt} was superseded")
    return experiment


def _add_warnings(experiment: Experiment, warnings: list[str]) -> None:
    new = [w for w in warnings if w not in experiment.warnings]  # a resumed attempt repeats them
    experiment.warnings = [*experiment.warnings, *new]


def record_content_hash(job: ClaimedJob, sha256: str, host: str) -> None:
    """Record the content hash of the built-in data this attempt read on its dataset's row, if none is yet (the
    first reader's stays); when the row holds another, the data `host` read is not what the dataset records: a
    warning on the experiment says so, and the job goes on."""
    name = job.spec.info.name

    def write() -> str | None:
        with session_scope() as session:
            _as_attempt(session, job)
            recorded = record_builtin_hash(session, name, sha256)
            if recorded in (None, sha256):
                return None
            warning = (
                f"the {name} data read on {host} has content sha256 {sha256}, not the {recorded} that GET "
                f"/datasets/{name} records: the data folder (or download) it was read from holds other data than the "
                "one first read, and these results are of that other data"
            )
            experiment = _running_experiment(session, job)
            _add_warnings(experiment, [warning])
            return warning

    warning = with_db_retry(write, "recording the dataset's content hash")
    if warning is not None:
        log.warning("experiment %s: %s", job.experiment_id, warning)


def record_split(job: ClaimedJob, train_count: int, validation_count: int) -> None:
    """Record how many examples train and validate this run, in one fenced transaction."""

    def write() -> None:
        with session_scope() as session:
            _fence(session, job, train_count=train_count, validation_count=validation_count)

    with_db_retry(write, "recording the split sizes")


def _as_attempt(session: Session, job: ClaimedJob) -> None:
    """Open this transaction as the attempt's own: bounded when idle, and named so a stalled one can be ended.

    See models/attempt_sessions.py: a process frozen inside a fenced write must not keep the job's row
    locked, or the reaper could never hand the job on. Our transactions take milliseconds.
    """
    attempt_sessions.bound_idle_transaction(session, get_settings().lease_s)
    attempt_sessions.name_transaction(session, job.experiment_id, job.attempt)


def _fence(session: Session, job: ClaimedJob, **values: object) -> None:
    _as_attempt(session, job)
    lifecycle.fence(session, job.experiment_id, job.attempt, **values)


def record_epoch(job: ClaimedJob, result: EpochResult, point: ResumePoint | None = None) -> None:
    """Write one finished epoch's metrics and (with `point`) its resume state, in one fenced transaction."""

    def write() -> None:
        with session_scope() as session:
            _fence(session, job, lease_expires_at=lease_deadline())
            if _already_written(session, job, result.epoch):
                return  # a retry after a commit whose answer was lost in a database restart
            # A plain insert: (experiment, epoch) is unique, so an epoch trained twice is an error, never a copy.
            session.execute(
                insert(EpochMetric).values(
                    experiment_id=job.experiment_id,
                    epoch=result.epoch,
                    loss=result.loss,
                    accuracy=result.accuracy,
                    val_loss=result.val_loss,
                    val_accuracy=result.val_accuracy,
                    seconds=result.seconds,
                    learning_rate=result.learning_rate,
                    attempt=job.attempt,
                    created_at=utcnow(),
                )
            )
            if point is not None:
                _store_resume_point(session, job, point)

    with_db_retry(write, f"recording epoch {result.epoch}")
    events.publish(job.experiment_id, job.sweep_id, "epoch", {**dataclasses.asdict(result), "attempt": job.attempt})


def _already_written(session: Session, job: ClaimedJob, epoch: int) -> bool:
    return (
        session.scalar(
            select(EpochMetric.id).where(
                EpochMetric.experiment_id == job.experiment_id,
                EpochMetric.epoch == epoch,
                EpochMetric.attempt == job.attempt,
            )
        )
        is not None
    )


def _store_resume_point(session: Session, job: ClaimedJob, point: ResumePoint) -> None:
    values: dict[str, object] = {
        "epoch": point.epoch,
        "attempt": job.attempt,
        "state": point.state,
        "state_sha256": point.sha256,
        "best_epoch": point.best_epoch,
        "best_val_accuracy": point.best_val_accuracy,
        "updated_at": utcnow(),
    }
    if point.best_checkpoint is not None:  # unchanged otherwise: no need to rewrite megabytes
        values["best_checkpoint"] = point.best_checkpoint
    changed = rows_changed(
        session, update(ResumeState).where(ResumeState.experiment_id == job.experiment_id).values(**values)
    )
    if not changed:
        session.execute(insert(ResumeState).values(experiment_id=job.experiment_id, **values))


def cancel_requested(experiment_id: int) -> bool:
    with session_scope() as session:
        return bool(session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id)))


def _finish(
    session: Session, job: ClaimedJob, status: Status, outcome: str, cause: str | None, **values: object
) -> None:
    _as_attempt(session, job)
    lifecycle.finish(session, job.experiment_id, job.attempt, status, outcome, cause, **values)


def finish_succeeded(
    job: ClaimedJob,
    best_epoch: int,
    best_val_accuracy: float | None,
    evaluation: EvaluationResult,
    checkpoint: Path,
    stopped_early_at: int | None = None,
) -> None:
    """Store the evaluation, the checkpoint and the final status in one fenced transaction: all or nothing;
    `stopped_early_at`: the epoch after which early stopping ended training."""
    content = checkpoint.read_bytes()

    def write() -> None:
        with session_scope() as session:
            _finish(
                session,
                job,
                Status.SUCCEEDED,
                Outcome.SUCCEEDED,
                None,
                best_epoch=best_epoch,
                best_val_accuracy=best_val_accuracy,
                stopped_early_at=stopped_early_at,
            )
            session.add(Evaluation(experiment_id=job.experiment_id, **dataclasses.asdict(evaluation)))
            session.add(
                Artifact(
                    experiment_id=job.experiment_id,
                    name=CHECKPOINT_NAME,
                    media_type=H5_MEDIA_TYPE,
                    size=len(content),
                    sha256=hashlib.sha256(content).hexdigest(),
                    content=content,
                )
            )
            # A new succeeded experiment can be its owner's (and an admin's) best on its dataset: API processes
            # that remember which experiment a dataset's predictions use forget it once this commits.
            announce(session, f"experiment:{job.experiment_id}")

    with_db_retry(write, "storing the results")
    events.status(
        job.experiment_id,
        job.sweep_id,
        "succeeded",
        best_epoch=best_epoch,
        best_val_accuracy=best_val_accuracy,
        test_accuracy=evaluation.test_accuracy,
    )


def finish_cancelled(job: ClaimedJob, best_epoch: int | None, best_val_accuracy: float | None) -> None:
    def write() -> None:
        with session_scope() as session:
            _finish(
                session,
                job,
                Status.CANCELLED,
                Outcome.CANCELLED,
                "cancelled by request",
                best_epoch=best_epoch,
                best_val_accuracy=best_val_accuracy,
            )

    with_db_retry(write, "recording the cancellation")
    events.status(job.experiment_id, job.sweep_id, "cancelled")


def finish_failed(job: ClaimedJob, error: str, outcome: str = Outcome.FAILED) -> None:
    first_line = error.split("\n", 1)[0]

    def write() -> None:
        with session_scope() as session:
            _finish(session, job, Status.FAILED, outcome, first_line, error=error)

    with_db_retry(write, "recording the failure")
    events.status(job.experiment_id, job.sweep_id, "failed", error=first_line)


def give_back(job: ClaimedJob, cause: str) -> None:
    """Put a running job back in the queue (its worker is stopping); the next attempt resumes it."""

    def write() -> None:
        with session_scope() as session:
            _as_attempt(session, job)
            lifecycle.give_back(session, job.experiment_id, job.attempt, cause)

    with_db_retry(write, "giving the job back")
    events.status(job.experiment_id, job.sweep_id, "queued", reason=cause)
