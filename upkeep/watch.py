"""Whether the service's roles run: the reaper's and the dispatcher's passes, read from their roles' rows.

A role whose passes stopped (its keepers wedged on a lock, their threads gone) is a service that looks up and does
nothing: jobs whose worker died never end (the reaper), queued jobs never reach a worker (the dispatcher). Both are
held to one rule, `stalled`, by /health (a 503 naming the role), by `serve` (which restarts its role takers) and by
the container healthcheck (which restarts its container).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE
from models.roles import RoleState, read_role
from upkeep.reaper import REAPER_ROLE

# Passes missed before the service says it is unwell (/health's 503, serve's restart of the role takers).
STALLED_AFTER_INTERVALS = 3


@dataclass(frozen=True)
class WatchedRole:
    role: str  # the role's row
    setting: str  # the setting of its interval, as an EPOCHAL_* variable
    interval_s: float


def watched_roles() -> tuple[WatchedRole, WatchedRole]:
    """The reaper and the dispatcher, with their intervals as configured now."""
    settings = get_settings()
    return (
        WatchedRole(REAPER_ROLE, "EPOCHAL_REAPER_INTERVAL_S", settings.reaper_interval_s),
        WatchedRole(DISPATCHER_ROLE, "EPOCHAL_DISPATCH_INTERVAL_S", settings.dispatch_interval_s),
    )


def stalled(watched: WatchedRole, state: RoleState | None, now: datetime, up_since: datetime) -> str | None:
    """Why the role's passes count as stopped (none for STALLED_AFTER_INTERVALS intervals), or None while they run.

    `up_since` is when the asking process started: for as long again after it no pass is held against the
    service, since its role takers may be starting too (a pass from before a restart is old, but not a fault).
    """
    interval_s, role = watched.interval_s, watched.role
    limit_s = STALLED_AFTER_INTERVALS * interval_s
    if (now - up_since).total_seconds() <= limit_s:
        return None
    if state is None or state.last_pass_at is None:
        return f"no {role} pass was ever recorded (expected one every {interval_s:g} s, {watched.setting})"
    age_s = (now - state.last_pass_at).total_seconds()
    if age_s <= limit_s:
        return None
    return (
        f"no {role} pass for {age_s:.0f} s (the last by {state.last_pass_by}; expected one every {interval_s:g} s, "
        f"{watched.setting})"
    )


def stalls(
    session: Session, now: datetime, up_since: datetime
) -> Iterator[tuple[WatchedRole, RoleState | None, str | None]]:
    """Each watched role, its row (None before its first lease) and why it counts as stopped (None while it runs)."""
    for watched in watched_roles():
        state = read_role(session, watched.role)
        yield watched, state, stalled(watched, state, now, up_since)


def first_stall(session: Session, now: datetime, up_since: datetime) -> str | None:
    """Why some role's passes count as stopped, or None while all of them run."""
    return next((problem for _watched, _state, problem in stalls(session, now, up_since) if problem), None)
