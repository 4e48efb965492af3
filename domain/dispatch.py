"""Fair-share dispatch: which queued jobs go to the workers next, and the fenced mark that releases one.

A submitted job waits in the database (`queued`, `dispatched_at` null). The dispatcher (a role, upkeep/dispatcher.py)
releases jobs to the broker only while a queue has free slots (EPOCHAL_QUEUE_SLOTS / EPOCHAL_SLOTS_PER_QUEUE), so the
broker never holds more than the workers can take and the order below, not arrival, decides who runs next. A job
released and not yet claimed holds its slot, as a running one does.

The order, one pick at a time, as if each pick started running at once:

1. a user at their running cap (EPOCHAL_MAX_RUNNING_JOBS, or the user's max_running_jobs) waits: their jobs come
   after everyone else's;
2. higher priority first (the job's own plus its owner's, both set by an admin);
3. fair share: the user with the fewest jobs running (released ones included) goes first, then the one who used the
   least worker time lately (decayed: time used a half-life ago counts half, EPOCHAL_FAIR_SHARE_HALF_LIFE_S);
4. within a user, by priority and then in order of submission.

Positions (domain/queue_positions.py) read the same order, so a job's position is where the dispatcher would put it.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from config import Settings
from models import Attempt, Experiment, RoleLease, User
from models.base import as_utc, utcnow
from models.db import rows_changed
from models.states import Status

DISPATCHER_ROLE = "dispatcher"
# Worker time older than this many half-lives weighs under 0.4 %: not worth reading.
HALF_LIVES_READ = 8


@dataclass(frozen=True)
class Waiting:
    """A queued job not yet released: what the order needs to know of it."""

    experiment_id: int
    owner_id: int
    queue: str
    priority: int  # the job's own plus its owner's
    epochs: int


@dataclass
class Board:
    """The state the order is chosen from, read in one short transaction."""

    waiting: list[Waiting]
    # Jobs holding a slot, per queue: running, or released and not yet claimed.
    occupied: dict[str, int]
    # The same, per user, over every queue: what the running cap and fair share count.
    occupying: Counter[int]
    recent_seconds: dict[int, float]
    caps: dict[int, int]
    released_waiting: dict[str, list[int]] = field(default_factory=dict)  # released, unclaimed, in release order


@dataclass(frozen=True)
class Pick:
    job: Waiting
    capped: bool  # its owner is at their running cap at this point of the order: it waits for one of theirs to end


def decayed_seconds(started: datetime, ended: datetime, now: datetime, half_life_s: float) -> float:
    """Worker seconds between `started` and `ended`, each weighted by 2^-(age / half-life)."""
    if ended <= started:
        return 0.0
    rate = math.log(2) / half_life_s
    older, newer = (now - started).total_seconds(), max(0.0, (now - ended).total_seconds())
    return (math.exp(-rate * newer) - math.exp(-rate * older)) / rate


def recent_worker_seconds(session: Session, settings: Settings, now: datetime) -> dict[int, float]:
    """Each user's decayed worker time (attempts running or ended within HALF_LIVES_READ half-lives)."""
    since = now - timedelta(seconds=settings.fair_share_half_life_s * HALF_LIVES_READ)
    rows = session.execute(
        select(Experiment.owner_id, Attempt.started_at, Attempt.ended_at)
        .join(Experiment, Experiment.id == Attempt.experiment_id)
        .where(or_(Attempt.ended_at.is_(None), Attempt.ended_at > since))
    ).all()
    used: dict[int, float] = defaultdict(float)
    for owner_id, started, ended in rows:
        end = as_utc(ended) if ended is not None else now
        used[owner_id] += decayed_seconds(as_utc(started), min(end, now), now, settings.fair_share_half_life_s)
    return dict(used)


def read_board(session: Session, settings: Settings, now: datetime | None = None) -> Board:
    """Everything the order depends on: waiting jobs, occupied slots, caps, priorities and recent worker time."""
    now = now or utcnow()
    waiting = [
        Waiting(row.id, row.owner_id, row.queue, row.priority + (row.user_priority or 0), row.epochs)
        for row in session.execute(
            select(
                Experiment.id,
                Experiment.owner_id,
                Experiment.queue,
                Experiment.priority,
                Experiment.epochs,
                User.priority.label("user_priority"),
            )
            .join(User, User.id == Experiment.owner_id)
            .where(Experiment.status == Status.QUEUED, Experiment.dispatched_at.is_(None))
            .order_by(Experiment.id)
        )
    ]
    occupied: dict[str, int] = Counter()
    occupying: Counter[int] = Counter()
    released_waiting: dict[str, list[int]] = defaultdict(list)
    holding = or_(Experiment.status == Status.RUNNING, Experiment.dispatched_at.is_not(None))
    for experiment_id, owner_id, queue, status in session.execute(
        select(Experiment.id, Experiment.owner_id, Experiment.queue, Experiment.status)
        .where(Experiment.status.in_([Status.QUEUED, Status.RUNNING]), holding)
        .order_by(Experiment.dispatched_at, Experiment.id)
    ):
        occupied[queue] += 1
        occupying[owner_id] += 1
        if status is Status.QUEUED:
            released_waiting[queue].append(experiment_id)
    owners = {job.owner_id for job in waiting} | set(occupying)
    caps = {
        user_id: cap or settings.max_running_jobs
        for user_id, cap in session.execute(select(User.id, User.max_running_jobs).where(User.id.in_(owners)))
    }
    return Board(
        waiting, dict(occupied), occupying, recent_worker_seconds(session, settings, now), caps, released_waiting
    )


def order(board: Board, queue: str, occupying: Counter[int] | None = None) -> list[Pick]:
    """Every waiting job of `queue` in the order the dispatcher releases them, as if each pick started at once.

    `occupying` (default: the board's) is updated with the picks: the dispatcher carries it from queue to queue, so
    a user's cap and share count their jobs on every queue.
    """
    running = occupying if occupying is not None else Counter(board.occupying)
    mine: dict[int, list[Waiting]] = defaultdict(list)
    for job in board.waiting:
        if job.queue == queue:
            mine[job.owner_id].append(job)
    heads = {user: deque(sorted(jobs, key=lambda j: (-j.priority, j.experiment_id))) for user, jobs in mine.items()}
    picks: list[Pick] = []
    while heads:

        def rank(user: int) -> tuple[bool, int, int, float, int]:
            job = heads[user][0]
            capped = running[user] >= board.caps.get(user, 1)
            return (capped, -job.priority, running[user], board.recent_seconds.get(user, 0.0), job.experiment_id)

        user = min(heads, key=rank)
        job = heads[user].popleft()
        picks.append(Pick(job, running[user] >= board.caps.get(user, 1)))
        running[user] += 1
        if not heads[user]:
            del heads[user]
    return picks


def releases(board: Board, settings: Settings) -> list[Waiting]:
    """The jobs to release now: per queue, the first picks of the order that fit its free slots and their caps."""
    occupying = Counter(board.occupying)
    chosen: list[Waiting] = []
    for queue in sorted({job.queue for job in board.waiting}):
        free = settings.slots_for(queue) - board.occupied.get(queue, 0)
        if free <= 0:
            continue
        for pick in order(board, queue, occupying):
            if pick.capped or free == 0:
                break  # capped users sort last: everything after is capped too
            chosen.append(pick.job)
            free -= 1
    return chosen


def mark_released(session: Session, experiment_id: int, holder: str, republish_after_s: float) -> bool:
    """Record that `holder` releases this job to the broker now, before it publishes; whether it may publish.

    Fenced: only a job still queued and unreleased, and only while `holder`'s lease on the dispatcher role runs. A
    dispatcher that paused past its lease (another took over) or was killed and restarted mid-pass can therefore
    never release a job twice: the second mark changes nothing. Marked first, published second: a dispatcher killed
    in between leaves a released job with no message, which the reaper publishes once `next_publish_at` passes,
    as it does for any released job nobody claimed; none is ever lost.
    """
    now = utcnow()
    holds = exists().where(RoleLease.role == DISPATCHER_ROLE, RoleLease.holder == holder, RoleLease.expires_at > now)
    return bool(
        rows_changed(
            session,
            update(Experiment)
            .where(
                Experiment.id == experiment_id,
                Experiment.status == Status.QUEUED,
                Experiment.dispatched_at.is_(None),
                holds,
            )
            .values(dispatched_at=now, next_publish_at=now + timedelta(seconds=republish_after_s), publish_count=0)
            .execution_options(synchronize_session=False),
        )
    )


def unmark(session: Session, experiment_id: int) -> None:
    """The broker refused the job just marked: back to waiting, for the next pass to release."""
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == Status.QUEUED)
        .values(dispatched_at=None, next_publish_at=None)
        .execution_options(synchronize_session=False)
    )


def waiting_count(session: Session) -> int:
    """Queued jobs not yet released (for the record of a pass)."""
    return (
        session.scalar(
            select(func.count(Experiment.id)).where(
                Experiment.status == Status.QUEUED, Experiment.dispatched_at.is_(None)
            )
        )
        or 0
    )


def set_priority(session: Session, experiment_id: int, priority: int) -> None:
    """An admin's priority for one job (added to its owner's), committed; the next pass orders by it."""
    session.execute(update(Experiment).where(Experiment.id == experiment_id).values(priority=priority))
    session.commit()
