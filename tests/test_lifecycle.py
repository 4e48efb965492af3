"""The lifecycle's transitions table, checked against its functions on the real database.

Every function of domain/lifecycle.py is called on a job in each status there is: it must either leave the
status as it was (refusing, or finding nothing to do) or make one of the moves the table gives it, and it
must make each of those from the status it starts from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from config import get_settings
from domain import lifecycle
from domain.errors import Conflict
from domain.lifecycle import ALLOWED, FINISHED, TRANSITIONS, Move, Outcome, Status, Superseded
from infra import events
from models import Attempt, Experiment
from models.accounts import create_user
from models.base import utcnow
from models.db import session_scope
from models.specs import experiment_from_spec
from training.spec import Dataset, ExperimentSpec

ATTEMPT = 1
# A move, called on one job in the caller's transaction.
Call = Callable[[Session, int], object]


def _claim(session: Session, experiment_id: int) -> object:
    return lifecycle.claim(session, experiment_id, "lifecycle-test@host", utcnow() + timedelta(seconds=60))


def _finish(status: Status) -> Call:
    def call(session: Session, experiment_id: int) -> object:
        lifecycle.finish(session, experiment_id, ATTEMPT, status, Outcome(str(status)), None)
        return None

    return call


def _expire(status: Status) -> Call:
    def call(session: Session, experiment_id: int) -> object:
        return lifecycle.expire(session, experiment_id, ATTEMPT, utcnow(), status, Outcome.LOST, "test")

    return call


def _give_back(session: Session, experiment_id: int) -> object:
    lifecycle.give_back(session, experiment_id, ATTEMPT, "test")
    return None


def _strand(session: Session, experiment_id: int) -> object:
    lifecycle.strand(session, [experiment_id], "could not be queued: test")
    return None


# (move, what the call asks for, the call)
CALLS: list[tuple[Move, Status | None, Call]] = [
    (Move.CLAIM, None, _claim),
    *[(Move.FINISH, status, _finish(status)) for status in sorted(FINISHED)],
    (Move.GIVE_BACK, None, _give_back),
    *[(Move.EXPIRE, status, _expire(status)) for status in (Status.QUEUED, Status.FAILED, Status.CANCELLED)],
    (Move.CANCEL, None, lifecycle.cancel),
    (Move.RETRY, None, lifecycle.retry),
    (Move.STRAND, None, _strand),
]


def job_in(status: Status, owner_id: int) -> int:
    """A job in `status`, at attempt 1 with an expired lease (so that every move can find it stranded)."""
    with session_scope() as session:
        row = experiment_from_spec(ExperimentSpec(dataset=Dataset.MNIST, epochs=2))
        row.owner_id, row.queue = owner_id, get_settings().default_queue
        session.add(row)
        session.flush()
        session.add(Attempt(experiment_id=row.id, number=ATTEMPT, worker="w@h", resumed_from_epoch=0))
        # Put straight in place by the test, the way no module of the service may write it.
        session.execute(
            update(Experiment)
            .where(Experiment.id == row.id)
            .values(status=status, attempt=ATTEMPT, lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        return row.id


def status_of(experiment_id: int) -> Status:
    with session_scope() as session:
        return session.scalars(select(Experiment.status).where(Experiment.id == experiment_id)).one()


def test_the_table_names_every_move_and_only_moves_between_different_statuses() -> None:
    assert set(TRANSITIONS) == set(Move)
    assert all(before != after for before, after in ALLOWED)
    # A succeeded job is final: nothing moves it (a retry is for failed and cancelled ones).
    assert not any(before is Status.SUCCEEDED for before, _after in ALLOWED)
    assert {after for _before, after in ALLOWED} == set(Status)


def test_the_finished_statuses_are_the_events_terminal_ones() -> None:
    assert {str(status) for status in FINISHED} == events.TERMINAL_STATUSES
    assert [s for s in Status if s.finished] == sorted(FINISHED, key=list(Status).index)


@pytest.mark.parametrize(("move", "target", "call"), CALLS, ids=[f"{m}-{t or ''}" for m, t, _c in CALLS])
def test_each_move_makes_only_the_transitions_the_table_allows(
    db: str, move: Move, target: Status | None, call: Call
) -> None:
    with session_scope() as session:
        owner, _key = create_user(session, f"owner-{move}-{target}")
        owner_id = owner.id
    made = set()
    for before in Status:
        experiment_id = job_in(before, owner_id)
        with session_scope() as session:
            try:
                call(session, experiment_id)
            except (Conflict, Superseded, ValueError):
                session.rollback()
        after = status_of(experiment_id)
        if after is not before:
            assert (before, after) in TRANSITIONS[move], f"{move} moved a job from {before} to {after}"
            made.add((before, after))
    # And it does make them: each move the table gives it, asked for, from where it starts.
    expected = {(b, a) for b, a in TRANSITIONS[move] if target is None or a is target}
    assert made == expected


def test_cancel_only_flags_a_running_job_whose_worker_still_holds_its_lease(db: str) -> None:
    with session_scope() as session:
        owner, _key = create_user(session, "owner-flag")
        owner_id = owner.id
    experiment_id = job_in(Status.RUNNING, owner_id)
    with session_scope() as session:
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(lease_expires_at=utcnow() + timedelta(seconds=60))
        )
    with session_scope() as session:
        lifecycle.cancel(session, experiment_id)
    with session_scope() as session:
        row = session.get_one(Experiment, experiment_id)
        assert (row.status, row.cancel_requested) == (Status.RUNNING, True)


def test_a_status_is_never_written_through_the_fence(db: str) -> None:
    with session_scope() as session:
        owner, _key = create_user(session, "owner-fence")
        owner_id = owner.id
    experiment_id = job_in(Status.RUNNING, owner_id)
    with session_scope() as session, pytest.raises(ValueError, match="never through fence"):
        lifecycle.fence(session, experiment_id, ATTEMPT, status=Status.SUCCEEDED)
    assert status_of(experiment_id) is Status.RUNNING
