"""Where a queued job stands: its place in the dispatcher's order, and an estimate of when it starts.

The position is 1-based among its queue's queued jobs: first those released to the broker and not yet claimed (in
the order they were released), then the waiting ones in the order the dispatcher would choose now
(domain/dispatch.py). It changes as other users submit, finish or get priorities.

The start is an estimate, nothing more: the queue's slots are filled with the running jobs' remaining time (their
epochs left times their own mean epoch time, less the time since their last epoch ended), then every job ahead is
given its epochs times the queue's recent mean epoch time, each in the slot that frees first. Unknown (null) while
the queue has no finished epoch to measure by. Caps are not simulated: a job held back by its owner's cap may start
later than this says.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.dispatch import Board, order, read_board
from models import Attempt, EpochMetric, Experiment
from models.base import as_utc, utcnow
from models.states import Status

# Recent epochs of a queue that its mean epoch time is measured on.
RECENT_EPOCHS = 50


@dataclass(frozen=True)
class Standing:
    position: int
    estimated_start: datetime | None


def _mean_epoch_s(session: Session, queue: str) -> float | None:
    recent = (
        select(EpochMetric.seconds)
        .join(Experiment, Experiment.id == EpochMetric.experiment_id)
        .where(Experiment.queue == queue)
        .order_by(EpochMetric.id.desc())
        .limit(RECENT_EPOCHS)
        .subquery()
    )
    mean = session.scalar(select(func.avg(recent.c.seconds)))
    return float(mean) if mean is not None else None


def _running_left_s(session: Session, queue: str, now: datetime, fallback_epoch_s: float | None) -> list[float | None]:
    """Seconds each running job of `queue` has left, by its own epochs (or the queue's mean); None if unknown."""
    left: list[float | None] = []
    rows = session.execute(
        select(Experiment.id, Experiment.epochs, Experiment.attempt).where(
            Experiment.queue == queue, Experiment.status == Status.RUNNING
        )
    ).all()
    for experiment_id, epochs, attempt in rows:
        done, mean, last_end = session.execute(
            select(func.count(EpochMetric.id), func.avg(EpochMetric.seconds), func.max(EpochMetric.created_at)).where(
                EpochMetric.experiment_id == experiment_id
            )
        ).one()
        per_epoch = float(mean) if mean is not None else fallback_epoch_s
        if per_epoch is None:
            left.append(None)
            continue
        started = session.scalar(
            select(Attempt.started_at).where(Attempt.experiment_id == experiment_id, Attempt.number == attempt)
        )
        since = max([as_utc(t) for t in (last_end, started) if t is not None], default=now)
        left.append(max(0.0, (epochs - done) * per_epoch - (now - since).total_seconds()))
    return left


def _ahead(board: Board, experiment: Experiment, released_epochs: dict[int, int]) -> list[int]:
    """The epochs of every queued job ahead of `experiment` on its queue, in order: its position is one more."""
    released = board.released_waiting.get(experiment.queue, [])
    if experiment.id in released:
        return [released_epochs.get(i, 0) for i in released[: released.index(experiment.id)]]
    picks = order(board, experiment.queue)
    index = next((i for i, pick in enumerate(picks) if pick.job.experiment_id == experiment.id), len(picks))
    return [released_epochs.get(i, 0) for i in released] + [pick.job.epochs for pick in picks[:index]]


def standing(session: Session, settings: Settings, experiment: Experiment) -> Standing | None:
    """The queued job's position and estimated start; None for a job that is not queued."""
    if experiment.status is not Status.QUEUED:
        return None
    now = utcnow()
    board = read_board(session, settings, now)
    released = board.released_waiting.get(experiment.queue, [])
    released_epochs = dict(
        session.execute(select(Experiment.id, Experiment.epochs).where(Experiment.id.in_(released))).all()
    )
    ahead = _ahead(board, experiment, released_epochs)
    position = len(ahead) + 1
    mean = _mean_epoch_s(session, experiment.queue)
    running = _running_left_s(session, experiment.queue, now, mean)
    if mean is None or any(left is None for left in running):
        return Standing(position, None)
    slots = [0.0] * max(1, settings.slots_for(experiment.queue))
    # The running jobs first, then every job ahead, each into the slot that frees first.
    for seconds in [*sorted((left or 0.0 for left in running), reverse=True), *(e * mean for e in ahead)]:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return Standing(position, now + timedelta(seconds=slots[0]))
