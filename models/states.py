"""The words of a job's lifecycle: its statuses, how an attempt ends, and which moves between statuses exist.

Pure vocabulary, with no imports of the service: the tables store these values, and `domain/lifecycle.py`
(which re-exports them) owns every function that moves a job from one status to another.
"""

from __future__ import annotations

from enum import StrEnum


# Where a job is in its life (stored in `experiment.status`). No docstring: it would become the description of
# the enum's schema in the OpenAPI document.
class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


class Outcome(StrEnum):
    """How an attempt ended (stored as text in `attempt.outcome`)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # no heartbeat within the lease: the process died, hung, or lost its connections
    INTERRUPTED = "interrupted"  # its worker shut down and gave the job back
    TIMED_OUT = "timed_out"


# A finished job changes no more, except by a retry; an active one counts against its owner's quota.
FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})


class Move(StrEnum):
    """The lifecycle's functions (domain/lifecycle.py), one per way a job's status changes."""

    CLAIM = "claim"  # a worker starts a new attempt
    FINISH = "finish"  # the attempt ends the job: succeeded, failed or cancelled at an epoch end
    GIVE_BACK = "give_back"  # the attempt's worker stops and puts the job back in the queue
    EXPIRE = "expire"  # the attempt's lease ran out (the reaper, or a cancel of a job whose worker is gone)
    CANCEL = "cancel"  # a user cancels a job
    RETRY = "retry"  # a user queues a failed or cancelled job again, from scratch
    STRAND = "strand"  # an accepted job the broker refused: nothing will ever deliver it


# Every status change there is: (move, from, to). Anything else is a bug, which tests/test_lifecycle.py looks for.
TRANSITIONS: dict[Move, frozenset[tuple[Status, Status]]] = {
    Move.CLAIM: frozenset({(Status.QUEUED, Status.RUNNING)}),
    Move.FINISH: frozenset({(Status.RUNNING, status) for status in FINISHED}),
    Move.GIVE_BACK: frozenset({(Status.RUNNING, Status.QUEUED)}),
    Move.EXPIRE: frozenset({(Status.RUNNING, s) for s in (Status.QUEUED, Status.FAILED, Status.CANCELLED)}),
    # A running job is only flagged (it stops at its next epoch end), unless its lease expired: then it ends now.
    Move.CANCEL: frozenset({(Status.QUEUED, Status.CANCELLED), (Status.RUNNING, Status.CANCELLED)}),
    Move.RETRY: frozenset({(Status.FAILED, Status.QUEUED), (Status.CANCELLED, Status.QUEUED)}),
    Move.STRAND: frozenset({(Status.QUEUED, Status.FAILED)}),
}
ALLOWED: frozenset[tuple[Status, Status]] = frozenset().union(*TRANSITIONS.values())


def sources(move: Move) -> frozenset[Status]:
    """The statuses a job may be in for `move` to apply to it."""
    return frozenset(before for before, _after in TRANSITIONS[move])
