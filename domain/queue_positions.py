"""Where a queued job stands: its place in the dispatcher's order, and an estimate of when it starts.

The position is 1-based among its queue's queued jobs: first those released to the broker and not yet claimed (in
the order they were released), then the waiting ones in the order the dispatcher would choose now
(domain/dispatch.py). It changes as other users submit, finish or get priorities.

The start is an estimate, nothing more. A job's length is modelled as its start-up (an attempt's start to its
first epoch's start: the training process, the data), its epochs, and its wrap-up (its last epoch's end to its end:
the test evaluation, the checkpoint), each measured on the queue's recent attempts; the epochs alone were a tenth of
a small job's length (docs/results/fair-share.md). The queue's slots are filled with the running jobs' remaining
time (their epochs left times their own mean epoch time, their wrap-up, and their start-up before a first epoch,
less the time since their last epoch ended or they started), then every job ahead is given its length, each in the
slot that frees first. Unknown (null) while the queue has no finished epoch to measure by; until an attempt has
ended, start-up and wrap-up count as nothing. Each turn of a slot also costs the queue's recent handover (a slot
freeing to the next waiting job's start), which was most of the estimate's remaining error on small jobs. Caps are
not simulated: a job held back by its owner's cap may start later than this says.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config import Settings
from domain.dispatch import Pick, order, read_board
from models import Attempt, EpochMetric, Experiment
from models.base import as_utc, utcnow
from models.states import Outcome, Status

# Recent epochs of a queue that its mean epoch time is measured on, and recent attempts its start-up and wrap-up.
RECENT_EPOCHS = 50
RECENT_ATTEMPTS = 20


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


@dataclass(frozen=True)
class Overheads:
    """What a job takes besides its epochs, as the queue's recent attempts took it (seconds)."""

    start_s: float = 0.0  # from an attempt's start to its first epoch's start
    tail_s: float = 0.0  # from its last epoch's end to its end
    # From a slot freeing (an attempt's end) to the next waiting job's start on it: the dispatcher's pass, the broker,
    # the worker finishing the last job and claiming. Paid once per turn of a slot, so it adds up along the queue.
    handover_s: float = 0.0


def _handover_s(session: Session, queue: str, attempts: list[tuple[datetime, datetime]]) -> float:
    """The mean gap between an attempt's start and the latest end of another of the queue's attempts before it, over
    the `attempts` (start, job queued at) whose job was already waiting at that end: a job that came to an idle slot
    measures an idle slot, not a handover."""
    if not attempts:
        return 0.0
    # An end shortly before the earliest of these starts may be the one it waited for.
    earliest = min(started for started, _ in attempts) - timedelta(hours=1)
    ends = sorted(
        as_utc(ended)
        for ended in session.scalars(
            select(Attempt.ended_at)
            .join(Experiment, Experiment.id == Attempt.experiment_id)
            .where(Experiment.queue == queue, Attempt.ended_at.is_not(None), Attempt.ended_at >= earliest)
            .order_by(Attempt.ended_at.desc())
            .limit(RECENT_ATTEMPTS * 10)
        )
        if ended is not None
    )
    gaps = []
    for started, queued in attempts:
        before = [ended for ended in ends if ended <= started]
        if before and queued <= before[-1]:
            gaps.append((started - before[-1]).total_seconds())
    return sum(gaps) / len(gaps) if gaps else 0.0


def _overheads(session: Session, queue: str) -> Overheads:
    rows = session.execute(
        select(
            Attempt.started_at,
            Attempt.ended_at,
            func.min(EpochMetric.created_at),
            func.max(EpochMetric.created_at),
            func.avg(EpochMetric.seconds),
            Experiment.queued_at,
        )
        .join(Experiment, Experiment.id == Attempt.experiment_id)
        .join(
            EpochMetric,
            (EpochMetric.experiment_id == Attempt.experiment_id) & (EpochMetric.attempt == Attempt.number),
        )
        .where(Experiment.queue == queue, Attempt.outcome == Outcome.SUCCEEDED.value, Attempt.ended_at.is_not(None))
        .group_by(Attempt.id, Attempt.started_at, Attempt.ended_at, Experiment.queued_at)
        .order_by(Attempt.ended_at.desc())
        .limit(RECENT_ATTEMPTS)
    ).all()
    if not rows:
        return Overheads()
    starts, tails, waited = [], [], []
    for started, ended, first_end, last_end, epoch_s, queued in rows:
        # The first epoch ended its own length after it started: what came before it is start-up.
        starts.append(max(0.0, (as_utc(first_end) - as_utc(started)).total_seconds() - float(epoch_s or 0.0)))
        tails.append(max(0.0, (as_utc(ended) - as_utc(last_end)).total_seconds()))
        if queued is not None:
            waited.append((as_utc(started), as_utc(queued)))
    return Overheads(sum(starts) / len(starts), sum(tails) / len(tails), _handover_s(session, queue, waited))


def _running_left_s(
    session: Session, queue: str, now: datetime, fallback_epoch_s: float | None, overheads: Overheads
) -> list[float | None]:
    """Seconds each running job of `queue` has left, by its own epochs (or the queue's mean); None if unknown."""
    left: list[float | None] = []
    rows = session.execute(
        select(Experiment.id, Experiment.epochs, Experiment.attempt).where(
            Experiment.queue == queue, Experiment.status == Status.RUNNING
        )
    ).all()
    for experiment_id, epochs, attempt in rows:
        started = session.scalar(
            select(Attempt.started_at).where(Attempt.experiment_id == experiment_id, Attempt.number == attempt)
        )
        done, mean, last_end = session.execute(
            select(func.count(EpochMetric.id), func.avg(EpochMetric.seconds), func.max(EpochMetric.created_at)).where(
                EpochMetric.experiment_id == experiment_id
            )
        ).one()
        per_epoch = float(mean) if mean is not None else fallback_epoch_s
        if per_epoch is None:
            left.append(None)
            continue
        # Before this attempt's first epoch, its start-up is still to come (a resumed attempt starts up again).
        ended_in_attempt = last_end is not None and (started is None or as_utc(last_end) >= as_utc(started))
        since = max([as_utc(t) for t in (last_end, started) if t is not None], default=now)
        ahead_of_it = (epochs - done) * per_epoch + overheads.tail_s + (0.0 if ended_in_attempt else overheads.start_s)
        left.append(max(0.0, ahead_of_it - (now - since).total_seconds()))
    return left


def _ahead(
    released: list[int], picks: list[Pick], experiment: Experiment, released_epochs: dict[int, int]
) -> list[int]:
    """The epochs of every queued job ahead of `experiment` on its queue (`released` to the broker and not yet
    started, then the dispatcher's `picks` in order), in order: its position is one more."""
    if experiment.id in released:
        return [released_epochs.get(i, 0) for i in released[: released.index(experiment.id)]]
    index = next((i for i, pick in enumerate(picks) if pick.job.experiment_id == experiment.id), len(picks))
    return [released_epochs.get(i, 0) for i in released] + [pick.job.epochs for pick in picks[:index]]


@dataclass(frozen=True)
class _QueueClock:
    """What every estimate on one queue is made of, read once per request however many jobs it answers for."""

    slots: int
    mean_epoch_s: float | None
    overheads: Overheads
    running_left_s: list[float | None]

    def start_after(self, ahead: list[int], now: datetime) -> datetime | None:
        """When a job with the jobs of `ahead` epochs before it starts; None while the queue has nothing to go by."""
        mean, overheads = self.mean_epoch_s, self.overheads
        if mean is None or any(left is None for left in self.running_left_s):
            return None
        free_at = [0.0] * self.slots
        lengths = [overheads.handover_s + overheads.start_s + e * mean + overheads.tail_s for e in ahead]
        # The running jobs first, then every job ahead, each into the slot that frees first; the job itself starts a
        # handover after its slot frees (none when a slot is free now and nothing is ahead: it is being released).
        for seconds in [*sorted((left or 0.0 for left in self.running_left_s), reverse=True), *lengths]:
            heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
        own_handover = overheads.handover_s if free_at[0] > 0 else 0.0
        return now + timedelta(seconds=free_at[0] + own_handover)


def _clock(session: Session, settings: Settings, queue: str, now: datetime) -> _QueueClock:
    mean = _mean_epoch_s(session, queue)
    overheads = _overheads(session, queue)
    running = _running_left_s(session, queue, now, mean, overheads)
    return _QueueClock(max(1, settings.slots_for(queue)), mean, overheads, running)


def standings(session: Session, settings: Settings, experiments: Sequence[Experiment]) -> dict[int, Standing]:
    """The position and estimated start of each queued job of `experiments` (the others are left out), in one
    read of the board and one set of figures per queue: a page of a list costs what one job does."""
    queued = [e for e in experiments if e.status is Status.QUEUED]
    if not queued:
        return {}
    now = utcnow()
    board = read_board(session, settings, now)
    released = [i for queue in {e.queue for e in queued} for i in board.released_waiting.get(queue, [])]
    released_epochs = dict(
        session.execute(select(Experiment.id, Experiment.epochs).where(Experiment.id.in_(released))).all()
    )
    picks: dict[str, list[Pick]] = {}
    clocks: dict[str, _QueueClock] = {}
    answers = {}
    for experiment in queued:
        queue = experiment.queue
        if queue not in clocks:
            picks[queue] = order(board, queue)
            clocks[queue] = _clock(session, settings, queue, now)
        ahead = _ahead(board.released_waiting.get(queue, []), picks[queue], experiment, released_epochs)
        answers[experiment.id] = Standing(len(ahead) + 1, clocks[queue].start_after(ahead, now))
    return answers


def standing(session: Session, settings: Settings, experiment: Experiment) -> Standing | None:
    """The queued job's position and estimated start; None for a job that is not queued."""
    return standings(session, settings, [experiment]).get(experiment.id)
