"""A job's lifecycle: the one module that changes `experiment.status`, for the routes, the worker and the reaper.

Its statuses and the moves between them are `models/states.py` (re-exported here); each move is one function
below, with the fencing it needs, run in the caller's transaction (the caller commits, then publishes its events):

- A move of a running job is fenced by its attempt: conditional on the job still being `running` under that
  attempt's number. An attempt the reaper presumed dead (its lease expired) and replaced can therefore never
  write again, whatever it still believes: its write raises `Superseded`.
- A move that a user or the reaper makes is conditional on the status it starts from, so a worker claiming or
  finishing the job at the same moment is never overwritten: the later of the two changes nothing.
- Ending an attempt whose lease expired (`expire`) waits a bounded time for the job's row and ends the
  attempt's stalled transactions first (models/attempt_sessions.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from domain.errors import Conflict
from models import Artifact, EpochMetric, Evaluation, Experiment, ResumeState, attempt_sessions
from models.attempts import end_attempt
from models.base import utcnow
from models.db import rows_changed
from models.states import ACTIVE, ALLOWED, FINISHED, TRANSITIONS, Move, Outcome, Status, sources

__all__ = [
    "ACTIVE",
    "ALLOWED",
    "FINISHED",
    "TRANSITIONS",
    "Move",
    "Outcome",
    "Status",
    "Superseded",
    "cancel",
    "claim",
    "expire",
    "fence",
    "finish",
    "give_back",
    "renew_lease",
    "retry",
    "sources",
    "strand",
]


class Superseded(RuntimeError):
    """This attempt is no longer the job's current one (presumed dead and replaced, or ended): write nothing."""


# A job queued again waits in the database for the dispatcher (domain/dispatch.py), with no message on the broker.
_WAITING: dict[str, object] = {"dispatched_at": None, "next_publish_at": None, "publish_count": 0}


def _allowed(move: Move, before: Status, after: Status) -> None:
    if (before, after) not in TRANSITIONS[move]:
        raise ValueError(f"{move} does not move a job from {before} to {after}")


def _current(experiment_id: int, attempt: int) -> tuple[ColumnElement[bool], ...]:
    return (Experiment.id == experiment_id, Experiment.attempt == attempt, Experiment.status == Status.RUNNING)


def _fenced(session: Session, experiment_id: int, attempt: int, **values: object) -> None:
    if not rows_changed(session, update(Experiment).where(*_current(experiment_id, attempt)).values(**values)):
        raise Superseded(f"experiment {experiment_id}: attempt {attempt} is no longer current")


def fence(session: Session, experiment_id: int, attempt: int, **values: object) -> None:
    """Write `values` on the job only while `attempt` is its current, running attempt; otherwise `Superseded`.

    For what an attempt records as it runs (its lease, its split sizes): never its status, which only the
    moves below change.
    """
    if "status" in values:
        raise ValueError("a job's status changes through finish or give_back, never through fence")
    _fenced(session, experiment_id, attempt, **values)


def renew_lease(session: Session, experiment_id: int, attempt: int, until: datetime) -> bool:
    """Extend the attempt's lease; False when it is no longer the current attempt (stop, write nothing)."""
    renewal = update(Experiment).where(*_current(experiment_id, attempt)).values(lease_expires_at=until)
    return bool(rows_changed(session, renewal))


def claim(session: Session, experiment_id: int, worker: str, lease_until: datetime) -> Experiment | None:
    """Start a new attempt at a queued job (its number is the fencing token); None when it is not queued.

    A duplicate message (a republish, or Redis redelivering a message whose job is still running elsewhere),
    a running, finished or cancelled job changes nothing.
    """
    claimed = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.QUEUED)
        .values(
            status=Status.RUNNING,
            attempt=Experiment.attempt + 1,
            worker=worker,
            started_at=func.coalesce(Experiment.started_at, utcnow()),
            lease_expires_at=lease_until,
            next_publish_at=None,
            # Claimed from a message the dispatcher did not send (one from before a give-back): counted from now.
            dispatched_at=func.coalesce(Experiment.dispatched_at, utcnow()),
        ),
    )
    return session.get_one(Experiment, experiment_id) if claimed else None


def finish(
    session: Session,
    experiment_id: int,
    attempt: int,
    status: Status,
    outcome: str,
    cause: str | None,
    **values: object,
) -> None:
    """End the job `status` (succeeded, failed, cancelled) from its current attempt, with the attempt's outcome."""
    _allowed(Move.FINISH, Status.RUNNING, status)
    _fenced(session, experiment_id, attempt, status=status, finished_at=utcnow(), lease_expires_at=None, **values)
    end_attempt(session, experiment_id, attempt, outcome, cause)
    # The job is over: its resume state would only be dead weight (a retry starts from scratch).
    session.execute(delete(ResumeState).where(ResumeState.experiment_id == experiment_id))


def give_back(session: Session, experiment_id: int, attempt: int, cause: str) -> None:
    """Put a running job back in the queue from its current attempt (its worker stops); the next one resumes it.

    It waits for the dispatcher again (`dispatched_at` null), which releases it in fair-share order.
    """
    _fenced(session, experiment_id, attempt, status=Status.QUEUED, lease_expires_at=None, **_WAITING)
    end_attempt(session, experiment_id, attempt, Outcome.INTERRUPTED, cause)


def expire(
    session: Session,
    experiment_id: int,
    attempt: int,
    now: datetime,
    status: Status,
    outcome: str,
    cause: str,
    **values: object,
) -> bool:
    """End `attempt` of a running job whose lease expired before `now`: the job becomes `status`. Whether it did.

    Conditional on the very attempt and an expired lease: a heartbeat, or another reaper or a cancel in between,
    wins. A transaction the expired attempt left stalled on the row is ended first (models/attempt_sessions.py);
    a row held by anything else raises `RowBusy`. Queued again, the job waits for the dispatcher to release it.
    """
    _allowed(Move.EXPIRE, Status.RUNNING, status)
    changes: dict[str, object] = {"status": status, "lease_expires_at": None, **values}
    if status is Status.QUEUED:
        changes |= _WAITING
    else:
        changes["finished_at"] = now
    changed = attempt_sessions.update_ending_stalled(
        session,
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.status == Status.RUNNING,
            Experiment.attempt == attempt,
            Experiment.lease_expires_at < now,
        )
        .values(**changes)
        # No in-Python evaluation against the loaded row: SQLite hands its times back without a zone.
        .execution_options(synchronize_session=False),
        experiment_id,
        attempt,
    )
    if changed and attempt:
        end_attempt(session, experiment_id, attempt, outcome, cause)
    return bool(changed)


def cancel(session: Session, experiment_id: int) -> None:
    """Cancel a job: a queued one never starts, a running one is flagged and stops at its next epoch end.

    A running job whose lease expired has no worker left to read the flag: it is cancelled at once. `Conflict`
    when the job already finished. A row its worker keeps locked is waited for a bounded time (`RowBusy`).
    """
    attempt_sessions.bound_lock_wait(session)
    never_started = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.QUEUED)
        .values(status=Status.CANCELLED, cancel_requested=True, finished_at=utcnow()),
    )
    if never_started:
        return
    current = session.scalar(select(Experiment.attempt).where(Experiment.id == experiment_id)) or 0
    reason = "cancelled while its worker was gone"
    if expire(session, experiment_id, current, utcnow(), Status.CANCELLED, Outcome.LOST, reason, cancel_requested=True):
        return
    flagged = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.RUNNING)
        .values(cancel_requested=True),
    )
    if not flagged:
        status = session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))
        raise Conflict(f"experiment {experiment_id} already finished ({status}); there is nothing to cancel")


def retry(session: Session, experiment_id: int) -> None:
    """Queue a failed or cancelled job again, from scratch: its epochs, results and resume state are dropped.

    Conditional, so a retry cannot race a worker that is still finishing the job; `Conflict` for any other status.
    """
    reopened = rows_changed(
        session,
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.in_(_sorted(sources(Move.RETRY))))
        .values(
            status=Status.QUEUED,
            cancel_requested=False,
            error=None,
            warnings=[],
            worker=None,
            device=None,
            best_epoch=None,
            best_val_accuracy=None,
            stopped_early_at=None,
            started_at=None,
            finished_at=None,
            lost_attempts=0,
            lease_expires_at=None,
            **_WAITING,
        ),
    )
    if not reopened:
        session.rollback()
        status = session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))
        raise Conflict(f"experiment {experiment_id} is {status}; only failed or cancelled experiments can be retried")
    for table in (EpochMetric, Evaluation, Artifact, ResumeState):
        session.execute(delete(table).where(table.experiment_id == experiment_id))


def strand(session: Session, experiment_ids: Iterable[int], error: str) -> list[int]:
    """End failed, with `error`, accepted jobs whose broker did not answer; the ids it ended (caller commits).

    Conditional on each still waiting unreleased: a dispatcher elsewhere that reached the broker and released one
    in the meantime wins, and that job runs.
    """
    _allowed(Move.STRAND, Status.QUEUED, Status.FAILED)
    ids = list(experiment_ids)
    stranded = session.scalars(
        update(Experiment)
        .where(Experiment.id.in_(ids), Experiment.status == Status.QUEUED, Experiment.dispatched_at.is_(None))
        .values(status=Status.FAILED, error=error, finished_at=utcnow())
        .returning(Experiment.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(stranded)


def _sorted(statuses: frozenset[Status]) -> list[Status]:
    return sorted(statuses)
