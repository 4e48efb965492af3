"""Changes that API processes may hold in their caches, announced once the transaction that made them commits.

A writer calls `announce(session, "key:12")` next to its change; the message goes out (infra/invalidation.py)
after a successful commit and is forgotten on a rollback, so no process drops its cache for a change that never
happened, nor refills it from the database before the change is there to read.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session

from infra import invalidation

_PENDING = "epochal_change_notices"


def announce(session: Session, message: str) -> None:
    """Publish `message` to every API process once `session` commits."""
    session.info.setdefault(_PENDING, set()).add(message)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    messages = session.info.pop(_PENDING, None)
    if messages:
        invalidation.publish(*sorted(messages))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
