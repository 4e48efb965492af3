"""The dispatcher: releases queued jobs to the broker as worker slots free, in fair-share order (domain/dispatch.py).

A role (upkeep/keeper.py), like the reaper: whichever long-lived process holds its lease runs a pass every
`EPOCHAL_DISPATCH_INTERVAL_S`, and at once when nudged (infra/nudges.py: a job was queued or finished). Another
process takes the role over when the holder dies. Each release is marked on the job's row first, in an update fenced
on the job still waiting and on this holder's lease (`mark_released`), and published second; so a dispatcher killed
mid-pass and started again, or two holders for a moment, never publish a job twice, and a job marked but never
published is published by the reaper once nobody claimed it in time (upkeep/reaper.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE, mark_released, read_board, releases, unmark
from infra.nudges import Nudges
from models.db import session_scope
from upkeep.keeper import RoleKeeper, holder_name

log = logging.getLogger(__name__)

Publish = Callable[[int, str], None]


@dataclass
class DispatchReport:
    released: list[int] = field(default_factory=list)
    waiting: int = 0

    def summary(self) -> str:
        return f"{len(self.released)} released, {self.waiting} waiting"


def dispatch(publish: Publish, holder: str) -> DispatchReport:
    """One pass: release, in order, as many waiting jobs as there are free slots (and caps allow)."""
    settings = get_settings()
    with session_scope() as session:
        board = read_board(session, settings)
    chosen = releases(board, settings)
    report = DispatchReport(waiting=len(board.waiting))
    for job in chosen:
        with session_scope() as session:
            if not mark_released(session, job.experiment_id, holder, settings.republish_after_s):
                continue  # cancelled, claimed by a stray message, or the role is no longer ours
        try:
            publish(job.experiment_id, job.queue)
        except Exception as exc:
            log.warning("experiment %s: not released (%s); the next pass tries again", job.experiment_id, exc)
            with session_scope() as session:
                unmark(session, job.experiment_id)
            break  # the broker is down: the rest would fail the same way
        report.released.append(job.experiment_id)
    report.waiting -= len(report.released)
    if report.released:
        log.info("released %s to the workers", ", ".join(str(i) for i in report.released))
    return report


def dispatcher_keeper(publish: Publish, name: str) -> RoleKeeper:
    """The keeper of the dispatcher role for this process (`name`: what it is, e.g. "api" or a worker's node name)."""
    settings = get_settings()
    holder = holder_name(name)
    return RoleKeeper(
        DISPATCHER_ROLE,
        lambda: dispatch(publish, holder).summary(),
        settings.dispatch_interval_s,
        holder,
        wake=Nudges().wait,
    )
