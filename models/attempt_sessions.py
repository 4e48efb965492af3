"""An attempt's transactions on PostgreSQL: named after the attempt, and ended from outside when stalled.

Every write an attempt makes locks its job's row until it commits. A training process that stops inside
such a transaction (SIGSTOP, a swap storm, a VM pause) keeps that lock, and every other writer of the row
waits: the reaper, the next attempt, a user's cancel. Two bounds make sure it cannot wait forever:

- `idle_in_transaction_session_timeout`: the server ends a session left idle inside a transaction for
  a lease. This covers a process stopped between two statements.
- It does not cover a process stopped in the middle of sending one statement (an epoch's resume state
  or a checkpoint, megabytes long): the server then waits inside that statement for the rest of the
  message, with no timer running, for as long as the process stays stopped. So each transaction is named
  after its attempt (`application_name`), and whoever settles a job whose lease has expired (the reaper,
  a user's cancel) waits a bounded time for the row, then ends that attempt's named sessions itself
  (`update_ending_stalled`). The attempt was already presumed dead and its writes are fenced; ending its
  sessions only rolls back what it could never have committed.

On SQLite every function here does nothing: it has no row locks and no server to end a session on.
"""

from __future__ import annotations

import logging

from sqlalchemy import Update, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models.db import rows_changed

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that ran out
# How long the reaper or a user's cancel waits for a job's row. A live writer holds it for milliseconds
# (most of a second for a convnet's resume state); nobody should sit behind a writer that never finishes.
LOCK_WAIT_S = 2.0


class RowBusy(RuntimeError):
    """A job's row stayed locked past LOCK_WAIT_S by a transaction that could not be ended: try again later."""


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


def bound_lock_wait(session: Session, seconds: float = LOCK_WAIT_S) -> None:
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


def _end_refusable(session: Session, experiment_id: int, attempt: int) -> int:
    savepoint = session.begin_nested()
    try:
        ended = end_stalled_transactions(session, experiment_id, attempt)
    except DBAPIError as exc:
        savepoint.rollback()
        # PostgreSQL lets a role end only its own sessions: this needs the workers' role, or pg_signal_backend.
        log.warning("experiment %s: could not end attempt %s's sessions (%s)", experiment_id, attempt, exc.orig)
        return 0
    savepoint.commit()
    return ended


def update_ending_stalled(session: Session, statement: Update, experiment_id: int, attempt: int) -> int:
    """Run a conditional update of a job whose attempt's lease expired; return the rows it changed.

    The wait for the row is bounded (LOCK_WAIT_S). When it runs out, the row is held by a transaction that
    does not end; if it is that attempt's (a process stopped mid-write), its sessions are ended on the
    server and the update is tried once more. Any other holder raises `RowBusy`, and nothing is ended.
    Only for an attempt already presumed dead: the caller's statement must require the expired lease.
    """
    if not on_postgresql(session):
        return rows_changed(session, statement)  # SQLite: one writer at a time, behind its busy timeout
    bound_lock_wait(session)
    for tries_left in (1, 0):
        savepoint = session.begin_nested()
        try:
            changed = rows_changed(session, statement)
        except DBAPIError as exc:
            savepoint.rollback()
            if not is_lock_timeout(exc):
                raise
            ended = _end_refusable(session, experiment_id, attempt) if tries_left else 0
            if not ended:
                raise RowBusy(f"experiment {experiment_id} is being written by another transaction") from exc
            log.warning(
                "experiment %s: attempt %s's lease expired while %s of its transactions held the job's row "
                "(a process stopped mid-write?); ended them on the server",
                experiment_id,
                attempt,
                ended,
            )
            continue
        savepoint.commit()
        return changed
    raise AssertionError("unreachable")
