"""An attempt's transactions on PostgreSQL: named after the attempt, and ended from outside when stalled.

Every write an attempt makes locks its job's row until it commits. A training process that stops inside
such a transaction (SIGSTOP, a swap storm, a VM pause) keeps that lock, and every other writer of the row
waits: the reaper, the next attempt, a user's cancel. Two bounds make sure it cannot wait forever:

- `idle_in_transaction_session_timeout`: the server ends a session left idle inside a transaction for
  a lease. This covers a process stopped between two statements.
- It does not cover a process stopped in the middle of sending one statement (an epoch's resume state
  or a checkpoint, megabytes long): the server then waits inside that statement for the rest of the
  message, with no timer running, for as long as the process stays stopped. So each transaction is named
  after its attempt (`application_name`), and the reaper, once that attempt's lease has expired and its
  wait for the row runs out, ends the named sessions itself (`end_stalled_transactions`). The attempt was
  already presumed dead and its writes are fenced; ending its sessions only rolls back what it could
  never have committed.

On SQLite every function here does nothing: it has no row locks and no server to end a session on.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that ran out


def on_postgresql(session: Session) -> bool:
    """Whether the session's database has row locks and server-side sessions to end (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


def attempt_name(experiment_id: int, attempt: int) -> str:
    """The application_name a transaction of this attempt carries while it is open."""
    return f"epochal job {experiment_id} attempt {attempt}"


def bound_idle_transaction(session: Session, lease_s: float) -> None:
    """End this transaction on the server if its process stalls in it, between statements, for a lease."""
    if on_postgresql(session):
        timeout_ms = str(max(1000, int(lease_s * 1000)))
        session.execute(text("SELECT set_config('idle_in_transaction_session_timeout', :ms, true)"), {"ms": timeout_ms})


def name_transaction(session: Session, experiment_id: int, attempt: int) -> None:
    """Mark this transaction as the attempt's, until it ends (SET LOCAL), so a stalled one can be found."""
    if on_postgresql(session):
        name = attempt_name(experiment_id, attempt)
        session.execute(text("SELECT set_config('application_name', :name, true)"), {"name": name})


def bound_lock_wait(session: Session, seconds: float) -> None:
    """Let the statements of this transaction wait at most `seconds` for a row lock, then raise."""
    if on_postgresql(session):
        session.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": str(max(1, int(seconds * 1000)))})


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether `exc` is a statement that gave up waiting for a lock (see `bound_lock_wait`)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def end_stalled_transactions(session: Session, experiment_id: int, attempt: int) -> int:
    """End, on the server, every session with an open transaction of this attempt; return how many.

    Only for an attempt already presumed dead (its lease expired): its sessions are rolled back, and the
    process, if it ever wakes, finds its connection gone and its attempt superseded.
    """
    if not on_postgresql(session):
        return 0
    ended = session.scalar(
        text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :name AND pid <> pg_backend_pid()"
        ),
        {"name": attempt_name(experiment_id, attempt)},
    )
    return int(ended or 0)
