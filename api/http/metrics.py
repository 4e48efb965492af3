"""Prometheus metrics: request counts and latency measured as requests pass, the rest read at scrape time.

Counters that live in the database or the broker (jobs by status, epochs trained and their seconds,
queue depth and queue waits, leases of running jobs, the roles' holders and the age of their last pass) are read when
Prometheus scrapes, so every API process reports
the same truth and nothing is lost when one restarts. Only HTTP traffic is counted in process; with several
API processes on one host (EPOCHAL_API_WORKERS), each counts in files of a shared folder that the launcher
names (epochal/api_server.py) and a scrape adds them all up, whichever process answers it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import get_settings
from domain.lifecycle import Status
from models import EpochMetric, Experiment, RoleLease, User
from models.base import as_utc, utcnow
from models.db import session_scope

# No auto_describe: registering must not read the database (the API may start before it answers).
REGISTRY = CollectorRegistry(auto_describe=False)
REQUESTS = Counter(
    "epochal_http_requests", "HTTP requests answered, by route and status.", ["method", "route", "status"],
    registry=REGISTRY,
)  # fmt: skip
LATENCY = Histogram(
    "epochal_http_request_duration_seconds",
    "Time to answer, by route (a prediction route's is the prediction latency).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PREDICTION_LOOKUPS = Counter(
    "epochal_prediction_lookups",
    "Predictions by where their caller and network were found: 'memory' (no SQL, no Redis, no thread before the "
    "model call) or 'database'.",
    ["source"],
    registry=REGISTRY,
)
NETWORK_LOADS = Counter(
    "epochal_prediction_network_loads",
    "Networks loaded for predictions, by the runtime their calls go through: 'onnx' (onnxruntime on the checked ONNX "
    "export) or 'keras' (the fallback; the API's log says why).",
    ["runtime"],
    registry=REGISTRY,
)
# Queue waits run from seconds (a free slot) to hours (behind a class's sweeps).
WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0)
UNMATCHED = "<unmatched>"  # a path no route matched: one label, so scanners cannot blow up the label set


class RequestMetrics:
    """ASGI middleware: one count and one latency observation per HTTP request, labelled by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED)
            method = str(scope.get("method", ""))
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)


class StoredStateCollector(Collector):
    """Jobs, epochs, leases (database) and queue depths (broker), read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        jobs = GaugeMetricFamily("epochal_jobs", "Experiments by status.", labels=["status"])
        epochs = GaugeMetricFamily("epochal_epochs_trained", "Epochs trained and stored, all experiments.")
        seconds = GaugeMetricFamily("epochal_epoch_seconds", "Seconds spent in the stored epochs, all experiments.")
        leases = GaugeMetricFamily(
            "epochal_lease_seconds_left",
            "Running jobs: seconds until the lease expires (a worker heartbeat renews it; below 0 it is lost).",
            labels=["experiment", "worker"],
        )
        with session_scope() as session:
            counts = dict(session.execute(select(Experiment.status, func.count()).group_by(Experiment.status)).all())
            for status in Status:
                jobs.add_metric([str(status)], float(counts.get(status, 0)))
            count, total = session.execute(select(func.count(EpochMetric.id), func.sum(EpochMetric.seconds))).one()
            epochs.add_metric([], float(count or 0))
            seconds.add_metric([], float(total or 0.0))
            running = session.execute(
                select(Experiment.id, Experiment.worker, Experiment.lease_expires_at).where(
                    Experiment.status == Status.RUNNING
                )
            ).all()
            for experiment_id, worker, expires in running:
                if expires is not None:
                    leases.add_metric([str(experiment_id), worker or ""], (as_utc(expires) - now).total_seconds())
            roles = list(session.scalars(select(RoleLease)))
            waits = session.execute(
                select(User.name, Experiment.priority + func.coalesce(User.priority, 0), Experiment.queued_at)
                .add_columns(Experiment.started_at)
                .join(User, User.id == Experiment.owner_id)
                .where(Experiment.started_at.is_not(None), Experiment.queued_at.is_not(None))
            ).all()
            oldest = session.execute(
                select(User.name, func.min(Experiment.queued_at))
                .join(User, User.id == Experiment.owner_id)
                .where(
                    Experiment.status == Status.QUEUED,
                    Experiment.started_at.is_(None),
                    Experiment.queued_at.is_not(None),
                )
                .group_by(User.name)
            ).all()
            waiting = dict(
                session.execute(
                    select(Experiment.queue, func.count())
                    .where(Experiment.status == Status.QUEUED, Experiment.dispatched_at.is_(None))
                    .group_by(Experiment.queue)
                ).all()
            )
        yield from (jobs, epochs, seconds, leases)
        yield self._queue_waits(waits)
        yield self._oldest_waits(oldest, now)
        undispatched = GaugeMetricFamily(
            "epochal_jobs_waiting_for_slot",
            "Queued jobs the dispatcher has not released to the broker yet (no free slot, or their owner's cap).",
            labels=["queue"],
        )
        for queue in sorted(set(get_settings().known_queues) | set(waiting)):
            undispatched.add_metric([queue], float(waiting.get(queue, 0)))
        yield undispatched
        yield from self._roles(roles, now)
        yield self._queue_depths()

    @staticmethod
    def _queue_waits(rows: Sequence[Any]) -> Metric:
        """Each started job's wait from being queued to its first start, by owner and priority (from the rows)."""
        waits: dict[tuple[str, str], list[float]] = {}
        for name, priority, queued_at, started_at in rows:
            wait = max(0.0, (as_utc(started_at) - as_utc(queued_at)).total_seconds())
            waits.setdefault((name, str(priority)), []).append(wait)
        family = HistogramMetricFamily(
            "epochal_queue_wait_seconds",
            "Time from being queued (submitted or retried) to starting, by user and priority (the job's plus its "
            "owner's), over every job that started.",
            labels=["user", "priority"],
        )
        for labels, values in sorted(waits.items()):
            buckets = [(str(le), float(sum(v <= le for v in values))) for le in WAIT_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            family.add_metric(list(labels), buckets, sum(values))
        return family

    @staticmethod
    def _oldest_waits(rows: Sequence[Any], now: datetime) -> Metric:
        """How long each user's longest-waiting job has waited so far: a user starved of slots shows here while
        they wait, where the histogram above only counts a wait once the job starts."""
        family = GaugeMetricFamily(
            "epochal_queue_oldest_wait_seconds",
            "Seconds since the user's oldest job still waiting for its start was queued (submitted or retried); no "
            "series for a user with none waiting.",
            labels=["user"],
        )
        for name, queued_at in sorted(rows):
            family.add_metric([name], max(0.0, (now - as_utc(queued_at)).total_seconds()))
        return family

    @staticmethod
    def _roles(rows: list[RoleLease], now: datetime) -> Iterator[Metric]:
        """Who holds each role (upkeep/keeper.py) and how old its last pass is: a stopped reaper shows here first."""
        age = GaugeMetricFamily(
            "epochal_role_last_pass_age_seconds",
            "Seconds since the role's last recorded pass (the reaper: one every EPOCHAL_REAPER_INTERVAL_S).",
            labels=["role"],
        )
        holder = GaugeMetricFamily(
            "epochal_role_holder",
            "1 for the process (name@host:pid) whose lease on the role is current; 0 once that lease ran out.",
            labels=["role", "holder"],
        )
        for row in rows:
            if row.last_pass_at is not None:
                age.add_metric([row.role], (now - as_utc(row.last_pass_at)).total_seconds())
            holder.add_metric([row.role, row.holder], 1.0 if as_utc(row.expires_at) >= now else 0.0)
        yield from (age, holder)

    @staticmethod
    def _queue_depths() -> Metric:
        from infra.events import redis_client

        depth = GaugeMetricFamily("epochal_queue_depth", "Messages waiting on each queue.", labels=["queue"])
        client: Any = redis_client()
        for queue in get_settings().known_queues:
            depth.add_metric([queue], float(client.llen(queue)))
        return depth


REGISTRY.register(StoredStateCollector())


def scrape_registry() -> CollectorRegistry:
    """What GET /metrics reads: this process's registry, or, with several API processes, all of their counts."""
    return _all_processes() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY


@lru_cache
def _all_processes() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)  # every process's REQUESTS and LATENCY, summed from their files
    registry.register(StoredStateCollector())
    return registry
