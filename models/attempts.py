"""Attempt bookkeeping shared by the worker (claims, finishes), the reaper and the API (cancel of a lost job)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.tables import Attempt


def end_attempt(session: Session, experiment_id: int, number: int, outcome: str, cause: str | None = None) -> None:
    """Close attempt `number` of an experiment, once: a later call for the same attempt changes nothing."""
    session.execute(
        update(Attempt)
        .where(Attempt.experiment_id == experiment_id, Attempt.number == number, Attempt.ended_at.is_(None))
        .values(ended_at=utcnow(), outcome=outcome, cause=cause)
    )


def attempt_story(attempts: list[Attempt]) -> str:
    """One line per attempt: where it ran, from which epoch, how it ended and why."""
    lines = []
    for attempt in attempts:
        ended = attempt.ended_at.isoformat(timespec="seconds") if attempt.ended_at else "now"
        lines.append(
            f"attempt {attempt.number} on {attempt.worker} (from epoch {attempt.resumed_from_epoch + 1}), "
            f"{attempt.started_at.isoformat(timespec='seconds')} to {ended}: "
            f"{attempt.outcome or 'running'}{f' ({attempt.cause})' if attempt.cause else ''}"
        )
    return "\n".join(lines)
