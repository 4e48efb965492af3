"""The reaper: every job that was accepted ends, even when the process running it vanished.

A role (upkeep/keeper.py): whichever long-lived process holds its lease (an API process, a worker's main
process) runs a pass every `EPOCHAL_REAPER_INTERVAL_S`, and another takes over when it dies. Passes are safe from
any number of processes at once all the same (two holders for a moment, a test calling `reap`): every change is
a conditional update, so two reapers never act twice on the same attempt.

1. A `running` job whose lease expired lost its attempt (no heartbeat: killed, hung, cut off). It is
   cancelled if a cancel was asked for, failed if the attempt ran past the time limit or if
   `EPOCHAL_MAX_ATTEMPTS` attempts were lost, and otherwise queued again for a new attempt that
   resumes after its last finished epoch.
2. A `queued` job that the dispatcher released to the broker and nobody claimed in time (the dispatcher died
   between marking and publishing it, the broker lost the message) is published again, backing off; a duplicate
   message is harmless because claims are. A queued job not yet released is the dispatcher's
   (upkeep/dispatcher.py): it waits in the database for a free slot, not on the broker.
3. Stored blobs that no dataset row references (an upload once prepared, a deleted version's arrays, a put that
   was killed) are freed once idle for `EPOCHAL_BLOB_SWEEP_GRACE_S`, at most once a grace's tenth: without it every
   upload stayed in the database for good, a failed one too.
4. An uploaded dataset version still `processing` past `EPOCHAL_PREPARE_GRACE_S` with no live preparation (the
   broker lost its message, the API died between its commit and its publish, a worker died preparing it) has its
   `prepare_dataset` published again, at most once a grace; one whose `EPOCHAL_MAX_ATTEMPTS` started preparations
   were all lost is failed, its errors saying so (domain/preparations.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from config import get_settings
from domain import lifecycle, preparations
from domain.lifecycle import Outcome, Status
from infra import events
from models import Attempt, Experiment, attempt_sessions
from models.attempts import attempt_story
from models.base import as_utc, utcnow
from models.blob_store import DatabaseBlobStore
from models.datasets import referenced_blobs
from models.db import session_scope
from upkeep.keeper import RoleKeeper, holder_name

log = logging.getLogger(__name__)

MAX_REPUBLISH_BACKOFF_S = 3600.0
REAPER_ROLE = "reaper"

Publish = Callable[[int, str], None]


@dataclass
class ReapReport:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    freed_blobs: list[str] = field(default_factory=list)
    republished_datasets: list[int] = field(default_factory=list)
    failed_datasets: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """What the pass did, in a few words, for the record of passes."""
        counts = {name: len(ids) for name, ids in vars(self).items() if ids}
        return ", ".join(f"{count} {name}" for name, count in counts.items()) or "nothing to do"


def _decide(experiment: Experiment, attempt: Attempt | None, now: datetime) -> tuple[Status, str, str]:
    """What becomes of a job whose attempt was lost: (new status, the attempt's outcome, the reason)."""
    settings = get_settings()
    lease_expired = as_utc(experiment.lease_expires_at) if experiment.lease_expires_at else now
    silent_since = (lease_expired - timedelta(seconds=settings.lease_s)).isoformat(timespec="seconds")
    cause = f"no heartbeat from {experiment.worker} since {silent_since} (lease of {settings.lease_s:g} s expired)"
    if experiment.cancel_requested:
        return Status.CANCELLED, Outcome.LOST, cause
    started = as_utc(attempt.started_at) if attempt is not None else None
    if started is not None and (now - started).total_seconds() > settings.task_time_limit_s:
        return (
            Status.FAILED,
            Outcome.TIMED_OUT,
            f"the attempt ran past the time limit of {settings.task_time_limit_s:g} s (EPOCHAL_TASK_TIME_LIMIT_S)",
        )
    if experiment.lost_attempts + 1 >= settings.max_attempts:
        return Status.FAILED, Outcome.LOST, cause
    return Status.QUEUED, Outcome.LOST, cause


def _reap_expired(experiment_id: int, now: datetime, report: ReapReport) -> None:
    try:
        _settle_expired(experiment_id, now, report)
    except attempt_sessions.RowBusy as exc:
        log.warning("%s; the next pass tries again", exc)


def _settle_expired(experiment_id: int, now: datetime, report: ReapReport) -> None:
    settings = get_settings()
    with session_scope() as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is None or experiment.status is not Status.RUNNING:
            return
        attempt = session.scalars(
            select(Attempt).where(Attempt.experiment_id == experiment_id, Attempt.number == experiment.attempt)
        ).first()
        status, outcome, cause = _decide(experiment, attempt, now)
        lost = {"lost_attempts": experiment.lost_attempts + 1} if outcome == Outcome.LOST else {}
        # Conditional on the very attempt and lease we looked at: a heartbeat or another reaper in between wins.
        if not lifecycle.expire(session, experiment_id, experiment.attempt, now, status, outcome, cause, **lost):
            return
        session.flush()
        session.refresh(experiment)
        sweep_id = experiment.sweep_id
        if status is Status.FAILED:
            story = attempt_story(list(experiment.attempts))
            headline = (
                f"TimeLimitExceeded: {cause}"
                if outcome == Outcome.TIMED_OUT
                else f"AttemptsExhausted: {experiment.lost_attempts} attempts were lost "
                f"(EPOCHAL_MAX_ATTEMPTS={settings.max_attempts}); the job may kill its worker (out of memory?)"
            )
            experiment.error = f"{headline}\n\n{story}"
            report.failed.append(experiment_id)
        elif status is Status.CANCELLED:
            report.cancelled.append(experiment_id)
        else:
            report.requeued.append(experiment_id)
    log.warning("experiment %s: attempt lost (%s); now %s", experiment_id, cause, status)
    events.status(experiment_id, sweep_id, str(status), reason=cause)


def _republish_due(now: datetime, publish: Publish, report: ReapReport) -> None:
    settings = get_settings()
    with session_scope() as session:
        due = session.execute(
            select(Experiment.id, Experiment.queue, Experiment.publish_count, Experiment.next_publish_at).where(
                Experiment.status == Status.QUEUED,
                Experiment.dispatched_at.is_not(None),
                Experiment.next_publish_at <= now,
            )
        ).all()
    for experiment_id, queue, count, planned in due:
        try:
            publish(experiment_id, queue)
        except Exception as exc:
            log.warning("experiment %s: could not publish (%s); next pass tries again", experiment_id, exc)
            return  # the broker is down: the rest would fail the same way
        # Doubling: a job that waits behind hours of others collects a handful of duplicates, not thousands.
        backoff = min(settings.republish_after_s * 2 ** (count + 1), MAX_REPUBLISH_BACKOFF_S)
        try:
            with session_scope() as session:
                attempt_sessions.bound_lock_wait(session)
                session.execute(
                    update(Experiment)
                    .where(Experiment.id == experiment_id, Experiment.next_publish_at == planned)
                    .values(next_publish_at=now + timedelta(seconds=backoff), publish_count=count + 1)
                )
        except DBAPIError as exc:
            if not attempt_sessions.is_lock_timeout(exc):
                raise
            # Held by a claim in progress: it is being taken; at worst the next pass publishes once more.
            log.warning("experiment %s: published, but its row is locked; the next pass looks again", experiment_id)
        report.published.append(experiment_id)


def _recover_preparations(now: datetime, publish_dataset: Publish, report: ReapReport) -> None:
    """Publish again each dataset version whose preparation is stranded; fail those whose attempts are spent."""
    settings = get_settings()
    with session_scope() as session:
        stranded = preparations.stranded(session, now)
    for version in stranded:
        if version.attempts >= settings.max_attempts:
            with session_scope() as session:
                failed = preparations.fail_exhausted(session, version, now)
            if failed:
                log.warning("dataset version %s: %s", version.id, preparations.exhausted_reason(version.attempts))
                report.failed_datasets.append(version.id)
            continue
        last = version.published_at
        if last is not None and (now - as_utc(last)).total_seconds() < settings.prepare_grace_s:
            continue  # published again less than a grace ago: its message may still be waiting for a worker
        try:
            publish_dataset(version.id, settings.default_queue)
        except Exception as exc:
            log.warning("dataset version %s: could not publish (%s); next pass tries again", version.id, exc)
            return  # the broker is down: the rest would fail the same way
        # Published first, noted second: a reaper that dies in between publishes once more, which is harmless.
        with session_scope() as session:
            preparations.mark_published(session, version, now)
        log.warning("dataset version %s: no live preparation; published again", version.id)
        report.republished_datasets.append(version.id)


def reap(publish: Publish, now: datetime | None = None, publish_dataset: Publish | None = None) -> ReapReport:
    """One pass: settle every running job with an expired lease, publish every queued job that is due, free idle
    blobs and recover stranded dataset preparations (through `publish_dataset`; without one, they are not looked
    at)."""
    now = now or utcnow()
    report = ReapReport()
    with session_scope() as session:
        expired = session.scalars(
            select(Experiment.id)
            .where(Experiment.status == Status.RUNNING, Experiment.lease_expires_at < now)
            .order_by(Experiment.id)
        ).all()
    for experiment_id in expired:
        _reap_expired(experiment_id, now, report)
    _republish_due(now, publish, report)
    _sweep_blobs(now, report)
    if publish_dataset is not None:
        _recover_preparations(now, publish_dataset, report)
    return report


_last_blob_sweep: datetime | None = None


def _sweep_blobs(now: datetime, report: ReapReport) -> None:
    """Free the blobs no dataset references, idle past the grace; at most once a tenth of the grace per process."""
    global _last_blob_sweep
    grace_s = get_settings().blob_sweep_grace_s
    if _last_blob_sweep is not None and (now - _last_blob_sweep).total_seconds() < grace_s / 10:
        return
    _last_blob_sweep = now
    with session_scope() as session:
        referenced = referenced_blobs(session)
    swept = DatabaseBlobStore().sweep(referenced, grace_s)
    report.freed_blobs.extend(swept.blobs)
    if swept.bytes or swept.unfinished:
        log.info(
            "blob sweep: freed %d blobs and %d unfinished puts, %d bytes",
            len(swept.blobs),
            swept.unfinished,
            swept.bytes,
        )


def reaper_keeper(publish: Publish, name: str, publish_dataset: Publish) -> RoleKeeper:
    """The keeper of the reaper role for this process (`name`: what it is, e.g. "api" or a worker's node name);
    `publish` sends a training job, `publish_dataset` a dataset version's preparation."""
    settings = get_settings()

    def one_pass() -> str:
        return reap(publish, publish_dataset=publish_dataset).summary()

    return RoleKeeper(REAPER_ROLE, one_pass, settings.reaper_interval_s, holder_name(name))
