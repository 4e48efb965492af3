"""Live events on Redis streams: published by the worker, the reaper and the API; relayed by the API as SSE.

One stream per experiment and one per sweep (an experiment's events go to both), and one per uploaded dataset
version (its `progress` while a worker prepares it, and its `status`), in the broker's
Redis, each entry an event name and a JSON payload. A stream entry id is the SSE event id, so a
client that reconnects with `Last-Event-ID` continues exactly after the last event it saw. Streams
are capped in length, and expire a day after the last terminal event.

Order: events of one stream arrive in the order they were published. An `epoch` event is published
once the epoch is stored (GET .../metrics has it), which overlaps the next epoch's start, so the
next epoch's first `progress` may come before it; a terminal `status` always comes last.

Publishing is best effort: an event that cannot be published is logged and dropped, never allowed
to fail the job. The database stays the truth (GET /experiments/{id}); events are the live view.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from config import get_settings

log = logging.getLogger(__name__)

STREAM_MAXLEN = 5000  # approximate: a long job's progress events trim its oldest ones, never its last ones
KEEP_FINISHED_S = 24 * 3600
# The lifecycle's FINISHED, as the events spell them (infra knows no models; tests/test_lifecycle.py compares them).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# A dataset version's settled statuses (models/datasets.py DatasetStatus, but `processing`).
DATASET_TERMINAL_STATUSES = frozenset({"ready", "duplicate", "failed"})
# Pub/sub channel that wakes the dispatcher (upkeep/dispatcher.py): a job was queued or a slot freed. Best effort:
# a lost nudge only waits for the dispatcher's next regular pass.
DISPATCH_CHANNEL = "epochal:dispatch"


def experiment_stream(experiment_id: int) -> str:
    return f"epochal:events:experiment:{experiment_id}"


def sweep_stream(sweep_id: int) -> str:
    return f"epochal:events:sweep:{sweep_id}"


def dataset_stream(dataset_id: int) -> str:
    """The stream of one dataset version (by its row id: a name's versions are rows of their own)."""
    return f"epochal:events:dataset:{dataset_id}"


def redis_url(broker_url: str) -> str:
    """The broker URL as redis-py reads it: the embedded broker's redis+socket:// becomes unix://."""
    parsed = urlparse(broker_url)
    return f"unix://{parsed.path}" if parsed.scheme == "redis+socket" else broker_url


def channel(name: str) -> str:
    """This deployment's name for the pub/sub channel `name`. Redis pub/sub ignores database numbers, so
    deployments that share one Redis server, a database each, would otherwise hear each other: a dispatcher woken by
    another's jobs, caches emptied by another's changes, and an invalidation's publisher waiting for confirmations
    that other deployments' listeners write into their own database."""
    return f"{name}:{_database(get_settings().broker_url)}"


@lru_cache
def _database(broker_url: str) -> int:
    return int(parse_url(redis_url(broker_url)).get("db") or 0)


def one_retry() -> Retry:
    """What a broker client retries: once, at once, which replaces a pooled connection the broker closed.

    Not redis-py's default of ten retries with backoff: while the broker is away, that held each request publishing
    an event (a submission, a cancel) for seconds, or for ten connect timeouts where packets are dropped.
    """
    return Retry(NoBackoff(), 1)


@lru_cache
def redis_client() -> redis.Redis:
    """The process's client of the broker's Redis (one connection pool), for events, the prediction rate limit and
    reading queue depths."""
    return redis.Redis.from_url(
        redis_url(get_settings().broker_url), socket_timeout=2, socket_connect_timeout=2, retry=one_retry()
    )


def subscriber_client() -> redis.Redis:
    """A client with a connection pool of its own, for one subscriber (a pub/sub listener): a subscribed connection
    must never go back to the pool of `redis_client()`, whose other users would read its pongs and messages as the
    answers to their commands (submissions failed with "Bad response from PING health check")."""
    return redis.Redis.from_url(
        redis_url(get_settings().broker_url), socket_timeout=5, socket_connect_timeout=2, retry=one_retry()
    )


def _append(pipeline: Any, experiment_id: int, sweep_id: int | None, event: str, data: dict[str, Any]) -> None:
    payload = json.dumps({"experiment_id": experiment_id, **data}, allow_nan=False, default=str)
    streams = [experiment_stream(experiment_id)] + ([sweep_stream(sweep_id)] if sweep_id is not None else [])
    final = event == "status" and data.get("status") in TERMINAL_STATUSES
    for stream in streams:
        pipeline.xadd(stream, {"event": event, "data": payload}, maxlen=STREAM_MAXLEN, approximate=True)
        if final:
            pipeline.expire(stream, KEEP_FINISHED_S)


def publish(experiment_id: int, sweep_id: int | None, event: str, data: dict[str, Any]) -> None:
    """Append one event to the experiment's stream (and its sweep's); a terminal status starts their expiry."""
    try:
        pipeline = redis_client().pipeline(transaction=False)
        _append(pipeline, experiment_id, sweep_id, event, data)
        pipeline.execute()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("experiment %s: %s event not published (%s)", experiment_id, event, type(exc).__name__)


def queued_afresh(experiments: list[tuple[int, int | None]], new_sweep_id: int | None = None) -> None:
    """Experiments starting afresh (new rows, or a retry from scratch), as (experiment id, sweep id): drop their
    streams (and a new sweep's), then publish their `queued` status, in one round trip to Redis.

    An id can come back (a database restored or reset under the same broker, SQLite reusing the
    highest id): a stream left over under it must not be replayed as this job's history. Called before the
    jobs are enqueued, so a worker's `running` always comes after `queued`.
    """
    keys = [experiment_stream(i) for i, _ in experiments] + ([sweep_stream(new_sweep_id)] if new_sweep_id else [])
    try:
        pipeline = redis_client().pipeline(transaction=False)
        if keys:
            pipeline.delete(*keys)
        for experiment_id, sweep_id in experiments:
            _append(pipeline, experiment_id, sweep_id, "status", {"status": "queued"})
        pipeline.execute()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("queued events not published (%s)", type(exc).__name__)


def status(experiment_id: int, sweep_id: int | None, new_status: str, **details: Any) -> None:
    """Publish a status change (queued, running, succeeded, failed, cancelled); any but `running` nudges the
    dispatcher, since a job came back to the queue or freed a slot."""
    try:
        pipeline = redis_client().pipeline(transaction=False)
        _append(pipeline, experiment_id, sweep_id, "status", {"status": new_status, **details})
        if new_status != "running":
            pipeline.publish(channel(DISPATCH_CHANNEL), new_status)
        pipeline.execute()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("experiment %s: status event not published (%s)", experiment_id, type(exc).__name__)


def _dataset_append(pipeline: Any, dataset_id: int, event: str, data: dict[str, Any]) -> None:
    payload = json.dumps({"dataset_id": dataset_id, **data}, allow_nan=False, default=str)
    stream = dataset_stream(dataset_id)
    pipeline.xadd(stream, {"event": event, "data": payload}, maxlen=STREAM_MAXLEN, approximate=True)
    if event == "status" and data.get("status") in DATASET_TERMINAL_STATUSES:
        pipeline.expire(stream, KEEP_FINISHED_S)


def dataset_processing(dataset_id: int, data: dict[str, Any]) -> None:
    """A new version is `processing` (`data`, its status event): drop a stream left over under its id (a database
    reset under the same broker reuses ids), then publish it. Called before its preparation is queued, so that the
    worker's events come after it."""
    try:
        pipeline = redis_client().pipeline(transaction=False)
        pipeline.delete(dataset_stream(dataset_id))
        _dataset_append(pipeline, dataset_id, "status", data)
        pipeline.execute()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("dataset version %s: processing event not published (%s)", dataset_id, type(exc).__name__)


def dataset_event(dataset_id: int, event: str, data: dict[str, Any]) -> bool:
    """Append one event (`progress`, or a `status`: a settled one starts the stream's expiry); whether it was."""
    try:
        pipeline = redis_client().pipeline(transaction=False)
        _dataset_append(pipeline, dataset_id, event, data)
        pipeline.execute()
    except (redis.RedisError, OSError, ValueError) as exc:
        log.warning("dataset version %s: %s event not published (%s)", dataset_id, event, type(exc).__name__)
        return False
    return True
