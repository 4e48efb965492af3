"""Per-user quotas and rate limits: active jobs, experiments per sweep, predictions per second, bytes stored.

Each limit is a setting (EPOCHAL_MAX_ACTIVE_JOBS, EPOCHAL_MAX_SWEEP_EXPERIMENTS, EPOCHAL_PREDICTIONS_PER_SECOND,
EPOCHAL_MAX_STORAGE_BYTES) that a user row may override. Over a limit: `QuotaExceeded` (a 429) with when to ask
again and a message naming the limit and its setting.
"""

from __future__ import annotations

import math
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from config import Settings
from domain.errors import QuotaExceeded
from domain.usage import storage_bytes, storage_quota
from models import Experiment
from models.states import ACTIVE
from models.users import User

# A job takes minutes: asking again sooner than this only costs a request.
ACTIVE_JOBS_RETRY_AFTER_S = 60


class Window(Protocol):
    """A moving window of hits per key (the API's is shared by its processes, api/http/rate_limits.py)."""

    def hit(self, key: str, limit: int, cost: int = 1) -> float:
        """Count `cost` hits of `key` if that keeps it within `limit` per window; else how many seconds to wait."""
        ...


class RateHolder(Protocol):
    """Whose predictions are counted: a user row, or what the API remembers of one (api/http/callers.py)."""

    @property
    def id(self) -> int: ...

    @property
    def predictions_per_second(self) -> int | None: ...


def too_many(detail: str, retry_after_s: int) -> QuotaExceeded:
    return QuotaExceeded(detail, retry_after_s)


# Built once: they run on every submission. Core statements on the tables, without the ORM's bookkeeping for an
# UPDATE (no loaded object changes: the write is a no-op).
_USERS, _EXPERIMENTS = cast(Table, User.__table__), cast(Table, Experiment.__table__)
_LOCK_USER = update(_USERS).where(_USERS.c.id == bindparam("user_id")).values(admin=_USERS.c.admin)
_COUNT_ACTIVE = select(func.count()).where(
    _EXPERIMENTS.c.owner_id == bindparam("user_id"), _EXPERIMENTS.c.status.in_(sorted(ACTIVE))
)


def check_active_jobs(session: Session, settings: Settings, user: User, adding: int, *, inserted: bool = False) -> None:
    """QuotaExceeded if queueing `adding` more experiments would take the user over their active-jobs limit.

    The caller must commit the new rows in the same transaction: the check holds a write lock until then.
    With `inserted`, the new rows are already in this transaction (and so in the count): the lock is then held
    for the count and the commit only, not for the insert too. When it is exceeded the caller rolls back.
    """
    limit = user.max_active_jobs or settings.max_active_jobs
    # Count, then insert, is a race: two requests of one user could both count below the limit. A no-op write
    # to the user's row first serializes them: it locks the row on PostgreSQL and takes the database's
    # write lock on SQLite, until the caller commits its new experiments.
    session.execute(_LOCK_USER, {"user_id": user.id})
    active = session.scalar(_COUNT_ACTIVE, {"user_id": user.id}) or 0
    if inserted:
        active -= adding
    if active + adding > limit:
        raise too_many(
            f"quota: {active} of your experiments are queued or running and this would add {adding}; the limit "
            f"is {limit} active jobs per user (EPOCHAL_MAX_ACTIVE_JOBS, or the user's max_active_jobs). "
            "Wait for some to finish, or cancel some",
            ACTIVE_JOBS_RETRY_AFTER_S,
        )


def check_sweep_size(settings: Settings, user: User, experiments: int) -> None:
    """QuotaExceeded if one sweep of the user would create more experiments than their per-sweep limit."""
    limit = user.max_sweep_experiments or settings.max_sweep_experiments
    if experiments > limit:
        raise too_many(
            f"quota: this sweep has {experiments} experiments and the limit is {limit} per sweep "
            "(EPOCHAL_MAX_SWEEP_EXPERIMENTS, or the user's max_sweep_experiments); split the sweep",
            ACTIVE_JOBS_RETRY_AFTER_S,
        )


def check_prediction_rate(settings: Settings, user: RateHolder, window: Window, images: int = 1) -> None:
    """Count `images` predictions in `window`; QuotaExceeded if the user is over their predictions per second.

    A batch of n images counts as n: the limit guards the network's time, which grows with images, not
    requests (otherwise the batch route would be a way around it).
    """
    per_second = user.predictions_per_second or settings.predictions_per_second
    if images > per_second:
        raise too_many(
            f"rate limit: this batch has {images} images and the limit is {per_second} predictions per second per "
            "user (EPOCHAL_PREDICTIONS_PER_SECOND, or the user's predictions_per_second; a batch of n images "
            "counts as n); send smaller batches",
            1,
        )
    wait_s = window.hit(str(user.id), per_second, cost=images)
    if wait_s:
        raise too_many(
            f"rate limit: at most {per_second} predictions per second per user "
            "(EPOCHAL_PREDICTIONS_PER_SECOND, or the user's predictions_per_second; a batch of n images counts as n)",
            math.ceil(wait_s),
        )


STORAGE_RETRY_AFTER_S = 3600  # space comes back when the user deletes something, not with time


def check_storage(session: Session, settings: Settings, user: User, adding: int) -> None:
    """QuotaExceeded if storing `adding` more bytes would take the user past their storage quota (their
    max_storage_bytes, else EPOCHAL_MAX_STORAGE_BYTES): their checkpoints, resume states and datasets together;
    GET /me and GET /users/{id}/usage show the figures."""
    used, limit = storage_bytes(session, user), storage_quota(settings, user)
    if used + adding > limit and (adding > 0 or used >= limit):
        raise too_many(
            f"storage quota: you store {used:,} bytes and this would add {adding:,}; the limit is {limit:,} bytes per "
            "user (EPOCHAL_MAX_STORAGE_BYTES, or the user's max_storage_bytes), checkpoints and datasets together. "
            "Delete datasets you no longer need (DELETE /datasets/{name}/{version}), or ask an admin",
            STORAGE_RETRY_AFTER_S,
        )
