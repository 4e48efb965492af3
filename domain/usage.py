"""What a user is using: jobs queued and running, worker time (all of it, and the decayed figure fair share counts),
and the bytes they store (their jobs' checkpoints and resume states, their datasets' arrays and uploads)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.dispatch import decayed_seconds
from models import Artifact, Attempt, DatasetVersion, Experiment, ResumeState
from models.base import as_utc, utcnow
from models.states import Status
from models.users import User


@dataclass(frozen=True)
class Usage:
    user_id: int
    queued: int
    running: int
    worker_seconds: float
    recent_worker_seconds: float
    storage_bytes: int
    max_storage_bytes: int
    max_running_jobs: int
    priority: int


def usage_of(session: Session, settings: Settings, user: User) -> Usage:
    """The user's usage now (one short read)."""
    now = utcnow()
    mine = select(Experiment.id).where(Experiment.owner_id == user.id).scalar_subquery()
    counts = dict(
        session.execute(
            select(Experiment.status, func.count())
            .where(Experiment.owner_id == user.id, Experiment.status.in_([Status.QUEUED, Status.RUNNING]))
            .group_by(Experiment.status)
        ).all()
    )
    total = recent = 0.0
    for started, ended in session.execute(
        select(Attempt.started_at, Attempt.ended_at).where(Attempt.experiment_id.in_(mine))
    ):
        start, end = as_utc(started), as_utc(ended) if ended is not None else now
        total += max(0.0, (end - start).total_seconds())
        recent += decayed_seconds(start, min(end, now), now, settings.fair_share_half_life_s)
    return Usage(
        user_id=user.id,
        queued=counts.get(Status.QUEUED, 0),
        running=counts.get(Status.RUNNING, 0),
        worker_seconds=total,
        recent_worker_seconds=recent,
        storage_bytes=storage_bytes(session, user),
        max_storage_bytes=storage_quota(settings, user),
        max_running_jobs=user.max_running_jobs or settings.max_running_jobs,
        priority=user.priority or 0,
    )


def storage_quota(settings: Settings, user: User) -> int:
    """The most bytes the user may store: their own quota, else EPOCHAL_MAX_STORAGE_BYTES."""
    return user.max_storage_bytes or settings.max_storage_bytes


def storage_bytes(session: Session, user: User) -> int:
    """The bytes the user stores: their jobs' checkpoints and resume states, and their datasets."""
    mine = select(Experiment.id).where(Experiment.owner_id == user.id).scalar_subquery()
    artifacts = session.scalar(
        select(func.coalesce(func.sum(Artifact.size), 0)).where(Artifact.experiment_id.in_(mine))
    )
    resume = session.scalar(
        select(func.coalesce(func.sum(func.length(ResumeState.state)), 0)).where(ResumeState.experiment_id.in_(mine))
    )
    return int(artifacts or 0) + int(resume or 0) + dataset_bytes(session, user.id)


def dataset_bytes(session: Session, user_id: int) -> int:
    """The bytes a user's datasets store: each live version's packed arrays (a duplicate stores none of its own),
    and the upload of each one still being prepared."""
    packed = session.scalar(
        select(func.coalesce(func.sum(DatasetVersion.size_bytes), 0)).where(
            DatasetVersion.owner_id == user_id,
            DatasetVersion.deleted_at.is_(None),
            DatasetVersion.duplicate_of.is_(None),
            DatasetVersion.blob_sha256.is_not(None),
        )
    )
    uploads = session.scalar(
        select(func.coalesce(func.sum(DatasetVersion.upload_bytes), 0)).where(
            DatasetVersion.owner_id == user_id,
            DatasetVersion.deleted_at.is_(None),
            DatasetVersion.upload_sha256.is_not(None),
        )
    )
    return int(packed or 0) + int(uploads or 0)
