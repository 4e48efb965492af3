"""Submitting experiments: commit their rows, then tell the dispatcher; shared by the experiment and sweep routes.

A submitted job waits in the database until the dispatcher releases it to a free worker slot, in fair-share order
(domain/dispatch.py, upkeep/dispatcher.py). The service stores; how the dispatcher and the event streams hear of
it is handed in (`Publisher`, the API's is `api/http/deps.py: publisher`), so this floor knows no broker.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from config import Settings, get_settings
from domain import lifecycle
from domain.datasets import hold_versions
from domain.errors import Conflict, Invalid, QuotaExceeded, Unavailable
from domain.quotas import check_active_jobs
from models import Experiment, Sweep, User
from models.base import utcnow
from models.specs import spec_of
from training.graph.check import NetworkFigures, NetworkLimits, NetworkSummary, downloaded_weights, over_limits
from training.graph.network import GraphError, NetworkGraph


class Publisher(Protocol):
    """What a submission hands on once its rows are committed: the job's message and its events."""

    def nudge(self) -> None:
        """Wake the dispatcher: jobs wait; raise `Unavailable` (saying why) if the broker does not answer."""
        ...

    def queued_afresh(self, rows: list[tuple[int, int | None]], sweep_id: int | None) -> None:
        """Start the event streams of new queued jobs (experiment id, sweep id), and of their new sweep."""
        ...

    def failed(self, experiment_id: int, sweep_id: int | None, error: str) -> None:
        """Say on the job's streams that it ended failed."""
        ...


def check_queues(experiments: list[Experiment]) -> None:
    """Invalid unless every experiment goes to a queue this deployment's workers serve (a typo would strand it)."""
    known = get_settings().known_queues
    unknown = sorted({e.queue for e in experiments} - set(known))
    if unknown:
        raise Invalid(
            f"queue {unknown[0]!r} is not served by any worker of this deployment; use one of "
            f"{', '.join(repr(q) for q in known)} (EPOCHAL_QUEUES lists them), or omit queue for the default"
        )


def network_limits(settings: Settings, user: User | None = None) -> NetworkLimits:
    """The limits on a network's figures that hold for `user`: their overrides, else EPOCHAL_MAX_NETWORK_*."""
    return NetworkLimits(
        params=(user and user.max_network_params) or settings.max_network_params,
        flops_per_example=(user and user.max_network_flops) or settings.max_network_flops,
        activation_bytes=(user and user.max_network_activation_bytes) or settings.max_network_activation_bytes,
    )


def unreachable_weights(graph: NetworkGraph, settings: Settings) -> list[GraphError]:
    """The layers whose weights this deployment's workers cannot download (EPOCHAL_WORKERS_OFFLINE)."""
    return downloaded_weights(graph) if settings.workers_offline else []


def network_refusals(figures: NetworkFigures, limits: NetworkLimits) -> str | None:
    """Why a network with `figures` is refused under `limits` (which figure, its limit, who may raise it), or None."""
    refusals = over_limits(figures, limits)
    if not refusals:
        return None
    return f"network: {'; '.join(refusals)}: make it smaller (POST /networks/check shows the figures)"


def check_networks(experiments: list[Experiment], settings: Settings, owner: User | None) -> None:
    """Invalid if a network graph is over its owner's limits (nobody queues a network that exhausts a worker), or
    needs weights its workers cannot download. (The spec checked the graph itself against the dataset's input; a
    preset is within the default limits.)"""
    limits = network_limits(settings, owner)
    for experiment in experiments:
        if isinstance(experiment.network, dict):
            spec = spec_of(experiment)
            assert isinstance(spec.network, NetworkGraph)
            offline = unreachable_weights(spec.network, settings)
            if offline:
                raise Invalid("; ".join(f"network: {e}" for e in offline))
            summary = spec.network_summary()
            assert isinstance(summary, NetworkSummary)  # the spec refuses a graph that does not build
            refused = network_refusals(summary.figures, limits)
            if refused:
                raise Invalid(refused)


def submit(
    session: Session,
    experiments: list[Experiment],
    settings: Settings,
    publisher: Publisher,
    *,
    new_sweep: Sweep | None = None,
    quota_of: User | None = None,
    owner: User | None = None,
) -> None:
    """Commit queued rows, then wake the dispatcher; if the broker does not answer, the new rows end failed.

    Network graphs are held to the limits of `owner` (by default `quota_of`; with neither, the settings').
    With `quota_of`, the rows count against that user's active-jobs quota (QuotaExceeded over it, and nothing
    stored). The check takes a lock that one user's submissions queue behind, held until the commit, so everything
    else comes before it, the insert included: inside it there are only the count and the commit. Each statement
    inside is a wait for the database and then for this thread's turn at the interpreter lock, which under load is
    what one user's concurrent submissions queue behind.

    Rows are committed before the nudge; a nudge that is lost (this process dies in between) only delays the
    jobs to the dispatcher's next regular pass. A broker that does not answer at all is refused now, as when the
    API published the jobs itself: the workers could not be reached, so the jobs end failed with the reason.
    """
    check_queues(experiments)
    check_networks(experiments, settings, owner or quota_of)
    now = utcnow()
    for experiment in experiments:
        experiment.queued_at, experiment.dispatched_at = now, None
        experiment.next_publish_at, experiment.publish_count = None, 0
    if new_sweep is not None:
        session.add(new_sweep)
    session.add_all(experiments)
    session.flush()
    try:
        hold_versions(session, experiments)
        if quota_of is not None:
            check_active_jobs(session, settings, quota_of, adding=len(experiments), inserted=True)
    except (Conflict, QuotaExceeded):
        session.rollback()
        raise
    session.commit()
    publisher.queued_afresh([(e.id, e.sweep_id) for e in experiments], new_sweep.id if new_sweep is not None else None)
    try:
        publisher.nudge()
    except Unavailable as exc:
        # Failed with the reason, not left queued until a broker that may never come back does.
        error = f"could not be queued: {exc}"
        stranded = lifecycle.strand(session, [row.id for row in experiments], error)
        session.commit()
        if not stranded:
            return  # a dispatcher that reaches the broker released them all meanwhile: they run
        for row in experiments:
            if row.id in stranded:
                publisher.failed(row.id, row.sweep_id, error)
        ids = ", ".join(str(i) for i in stranded)
        raise Unavailable(
            f"experiments {ids} were stored as failed because they could not be queued: {exc}; "
            "check EPOCHAL_BROKER_URL and GET /health, then submit again"
        ) from exc
