"""Roles held by one process of the service at a time, through a short lease row per role, and their passes.

A role (the reaper; later the fair-share dispatcher) is work that exactly one process should do at a time, but
that any long-lived process may do. Each candidate calls `acquire_or_renew` every few seconds: one conditional
UPDATE takes the row when this process holds it already or its lease expired, so of any number of callers only
one holds an unexpired lease, and when the holder dies the row is free again once its lease runs out. Every pass
the holder runs is recorded (`record_pass`): on the row (the last one, which /health and /metrics read) and in a
short history.

Times are the callers' clocks, as for the jobs' own leases: the hosts of one service must keep their clocks
within a small fraction of a lease of each other (NTP does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, case, delete, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, as_utc, utcnow
from models.db import rows_changed

# Passes kept per role: enough to see a pattern (who ran the last ones, how long they took), never a growing table.
PASS_HISTORY = 20


class RoleLease(Base):
    """Who holds a role until when, and the last pass run in it."""

    __tablename__ = "role_lease"

    role: Mapped[str] = mapped_column(String(40), primary_key=True)
    # "<name>@<host>:<pid>": an operator (or bench/chaos.py) finds the process from it.
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_pass_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_pass_by: Mapped[str | None] = mapped_column(String(200))
    passes: Mapped[int] = mapped_column(Integer, default=0)


class RolePass(Base):
    """One pass run in a role: when, by whom, how long, and what it did (the last PASS_HISTORY per role)."""

    __tablename__ = "role_pass"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(40), index=True)
    holder: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    summary: Mapped[str] = mapped_column(String(200), default="")


@dataclass(frozen=True)
class RoleState:
    """A role's row as read: its holder, when the lease ends, and its last pass (None before the first)."""

    role: str
    holder: str
    expires_at: datetime
    last_pass_at: datetime | None
    last_pass_by: str | None
    passes: int


def _state(row: RoleLease) -> RoleState:
    return RoleState(
        role=row.role,
        holder=row.holder,
        expires_at=as_utc(row.expires_at),
        last_pass_at=as_utc(row.last_pass_at) if row.last_pass_at is not None else None,
        last_pass_by=row.last_pass_by,
        passes=row.passes,
    )


def _insert_if_absent(session: Session, role: str, holder: str, now: datetime, expires: datetime) -> bool:
    """Create the role's row held by `holder`; False when another process created it first (no error)."""
    values = {"role": role, "holder": holder, "acquired_at": now, "expires_at": expires, "passes": 0}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RoleLease).values(**values).on_conflict_do_nothing(index_elements=["role"])
    # RETURNING says whether the row went in: the driver's row count for this INSERT is -1 on PostgreSQL.
    return session.execute(statement.returning(RoleLease.role)).first() is not None


def bound_role_transaction(session: Session, lease_s: float) -> None:
    """On PostgreSQL, hold this transaction on a role's row to about a lease, whatever happens to its process.

    A holder cut off from the database (its host's link down) inside a renewal keeps the row locked for as long as
    the server keeps its session, and every other keeper waited behind it: no reaper, no dispatcher, for minutes
    (tests/test_cluster.py found it). The server now ends the session once it sits idle in the transaction for a
    lease, and a keeper waits at most a lease for the row lock (its tick fails and the next one tries again).
    """
    if session.get_bind().dialect.name == "postgresql":
        bound_ms = str(max(1000, int(lease_s * 1000)))
        session.execute(
            text(
                "SELECT set_config('idle_in_transaction_session_timeout', :ms, true), "
                "set_config('lock_timeout', :ms, true)"
            ),
            {"ms": bound_ms},
        )


def acquire_or_renew(
    session: Session, role: str, holder: str, ttl_s: float, now: datetime | None = None
) -> RoleState | None:
    """Hold `role` for `ttl_s` more seconds if it is ours or its lease expired; its state if we hold it, else None.

    One conditional UPDATE decides, so two callers can never both succeed on an unexpired lease; the first call
    for a role creates its row (a concurrent creation simply loses, as a taken lease would). The transaction is
    bounded to a lease (`bound_role_transaction`).
    """
    bound_role_transaction(session, ttl_s)
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl_s)
    taken = rows_changed(
        session,
        update(RoleLease)
        .where(RoleLease.role == role, or_(RoleLease.holder == holder, RoleLease.expires_at < now))
        # A takeover restarts acquired_at; a renewal keeps it (evaluated by the database, on the old row).
        .values(
            holder=holder,
            expires_at=expires,
            acquired_at=case((RoleLease.holder == holder, RoleLease.acquired_at), else_=now),
        )
        .execution_options(synchronize_session=False),
    )
    if not taken and not _insert_if_absent(session, role, holder, now, expires):
        return None
    row = session.get(RoleLease, role, populate_existing=True)
    assert row is not None
    return _state(row)


def release(session: Session, role: str, holder: str, now: datetime | None = None) -> bool:
    """Give `role` up at once (a clean stop), so another process takes it at its next try instead of a lease later."""
    now = now or utcnow()
    return bool(
        rows_changed(
            session,
            update(RoleLease)
            .where(RoleLease.role == role, RoleLease.holder == holder, RoleLease.expires_at >= now)
            .values(expires_at=now - timedelta(microseconds=1))
            .execution_options(synchronize_session=False),
        )
    )


def record_pass(
    session: Session, role: str, holder: str, started_at: datetime, finished_at: datetime, summary: str = ""
) -> None:
    """Note a finished pass on the role's row and in its history (trimmed to the last PASS_HISTORY)."""
    session.execute(
        update(RoleLease)
        .where(RoleLease.role == role)
        .values(last_pass_at=finished_at, last_pass_by=holder, passes=RoleLease.passes + 1)
        .execution_options(synchronize_session=False)
    )
    session.add(RolePass(role=role, holder=holder, started_at=started_at, finished_at=finished_at, summary=summary))
    session.flush()
    kept = select(RolePass.id).where(RolePass.role == role).order_by(RolePass.id.desc()).limit(PASS_HISTORY)
    session.execute(
        delete(RolePass)
        .where(RolePass.role == role, RolePass.id.not_in(kept.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )


def read_role(session: Session, role: str) -> RoleState | None:
    """The role's row, or None when no process ever took it."""
    row = session.get(RoleLease, role, populate_existing=True)
    return _state(row) if row is not None else None


def recent_passes(session: Session, role: str, limit: int = PASS_HISTORY) -> list[RolePass]:
    """The role's last passes, newest first."""
    newest = select(RolePass).where(RolePass.role == role).order_by(RolePass.id.desc()).limit(limit)
    return list(session.scalars(newest))
