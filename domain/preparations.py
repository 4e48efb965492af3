"""The preparation of an uploaded dataset version as a lease, so that a lost one is noticed and done again.

A worker that starts preparing a `processing` version claims it (`claim`): the attempt is counted and a lease
taken, renewed from a thread of the preparing process (worker/preparation_lease.py) and given back when it ends
without settling the version. The reaper (upkeep/reaper.py) publishes `prepare_dataset` again for a version still
processing past EPOCHAL_PREPARE_GRACE_S with no live lease (`stranded`: the broker lost the message, the API died
between its commit and its publish, a worker died preparing it), at most once a grace; and fails a version whose
EPOCHAL_MAX_ATTEMPTS preparations were all lost (`fail_exhausted`).

Only preparations that started count as attempts. A version whose message waits on the broker behind hours of
training is published again now and then (the duplicate finds it claimed or settled and does nothing), and never
failed for waiting. Every change here is a conditional update: two reapers, or a reaper and a worker, never both
act on the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from config import get_settings
from models import DatasetStatus, DatasetVersion
from models.db import rows_changed
from training.uploads.errors import WHOLE_UPLOAD


def _lease_until(now: datetime) -> datetime:
    return now + timedelta(seconds=get_settings().lease_s)


def _not_live(now: datetime) -> ColumnElement[bool]:
    lease = DatasetVersion.prepare_lease_expires_at
    return or_(lease.is_(None), lease < now)


def _pending(dataset_id: int) -> list[ColumnElement[bool]]:
    return [
        DatasetVersion.id == dataset_id,
        DatasetVersion.status == DatasetStatus.PROCESSING,
        DatasetVersion.deleted_at.is_(None),
        DatasetVersion.upload_sha256.is_not(None),
    ]


def claim(session: Session, dataset_id: int, now: datetime) -> int | None:
    """Start preparing the version: the attempt's number; None when it is not processing, another preparation's
    lease is live, or its attempts are spent (the reaper fails it)."""
    claimed = session.execute(
        update(DatasetVersion)
        .where(*_pending(dataset_id), _not_live(now), DatasetVersion.prepare_attempts < get_settings().max_attempts)
        .values(prepare_attempts=DatasetVersion.prepare_attempts + 1, prepare_lease_expires_at=_lease_until(now))
        .returning(DatasetVersion.prepare_attempts)
    ).scalar()
    return None if claimed is None else int(claimed)


def renew(session: Session, dataset_id: int, attempt: int, now: datetime) -> bool:
    """Extend the attempt's lease; False once the version is settled or another attempt claimed it."""
    return bool(
        rows_changed(
            session,
            update(DatasetVersion)
            .where(*_pending(dataset_id), DatasetVersion.prepare_attempts == attempt)
            .values(prepare_lease_expires_at=_lease_until(now)),
        )
    )


def give_back(session: Session, dataset_id: int, attempt: int) -> None:
    """The attempt ended without settling the version (its process is on its way out): its lease ends now, so the
    next delivery or the reaper's publish need not wait for it to expire."""
    session.execute(
        update(DatasetVersion)
        .where(*_pending(dataset_id), DatasetVersion.prepare_attempts == attempt)
        .values(prepare_lease_expires_at=None)
    )


@dataclass(frozen=True)
class Stranded:
    """A version processing past the grace with no live preparation, as the reaper read it."""

    id: int
    attempts: int
    published_at: datetime | None  # when the reaper last published it again, as stored
    lease_expires_at: datetime | None


def stranded(session: Session, now: datetime) -> list[Stranded]:
    """Every version processing for longer than EPOCHAL_PREPARE_GRACE_S whose preparation is not live."""
    created_before = now - timedelta(seconds=get_settings().prepare_grace_s)
    rows = session.execute(
        select(
            DatasetVersion.id,
            DatasetVersion.prepare_attempts,
            DatasetVersion.prepare_published_at,
            DatasetVersion.prepare_lease_expires_at,
        )
        .where(
            DatasetVersion.status == DatasetStatus.PROCESSING,
            DatasetVersion.deleted_at.is_(None),
            DatasetVersion.upload_sha256.is_not(None),
            DatasetVersion.created_at <= created_before,
            _not_live(now),
        )
        .order_by(DatasetVersion.id)
    ).all()
    return [Stranded(*row) for row in rows]


def mark_published(session: Session, version: Stranded, now: datetime) -> bool:
    """Note that the reaper published the version again now; False if another reaper did since it was read."""
    published = DatasetVersion.prepare_published_at
    seen = published.is_(None) if version.published_at is None else published == version.published_at
    return bool(
        rows_changed(
            session, update(DatasetVersion).where(*_pending(version.id), seen).values(prepare_published_at=now)
        )
    )


def exhausted_reason(attempts: int) -> str:
    return (
        f"PreparationsLost: {attempts} preparations of this upload were started and none finished (a worker died "
        f"preparing it, or lost its lease; EPOCHAL_MAX_ATTEMPTS={get_settings().max_attempts}); it may take more "
        "memory than a worker has: upload it again, smaller or with smaller images (image_size)"
    )


def fail_exhausted(session: Session, version: Stranded, now: datetime) -> bool:
    """Fail a version whose attempts are spent, saying so in its errors; False if it changed since it was read.

    The row is taken first by a conditional write (held until the caller commits: its row lock on PostgreSQL,
    the write lock on SQLite), so a late finish of a preparation presumed lost either settled it before (and this
    changes nothing) or waits, then finds it failed.
    """
    taken = rows_changed(
        session,
        update(DatasetVersion)
        .where(*_pending(version.id), _not_live(now), DatasetVersion.prepare_attempts == version.attempts)
        .values(prepare_lease_expires_at=None),
    )
    row = session.get(DatasetVersion, version.id) if taken else None
    if row is None:
        return False
    row.settle_failed([{"entry": WHOLE_UPLOAD, "reason": exhausted_reason(version.attempts)}])
    return True
