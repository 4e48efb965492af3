"""Live events as Server-Sent Events: a job's status changes, finished epochs and progress within an epoch, and a
dataset version's progress while a worker prepares it and its final status.

The worker, the reaper and the API append events to Redis streams (infra/events.py); these routes
relay them. Each event's `id` is its stream entry id: a client that reconnects with `Last-Event-ID`
continues right after the last event it saw, without gaps or repeats. The stream closes after the
terminal status (of the experiment, of the sweep's last experiment, or of the dataset version), and in any case
after EPOCHAL_EVENTS_MAX_S, when a client reconnects (EventSource does so by itself), and within
EPOCHAL_STREAM_RECHECK_S of its key being revoked. Plain HTTP clients can poll GET /experiments/{id} (or
GET /datasets/{name}) instead. An open stream holds no database connection; each user, and each process, may have
only so many open (api/streams/slots.py).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from typing import Annotated, Any

import anyio
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.http.auth import KeyVerifiedRoute
from api.http.deps import SettingsDep
from api.http.errors import responses
from api.http.params import DatasetName, DatasetVersionNumber, ExperimentId, SweepId
from api.streams.access import FollowedDatasetVersion, FollowedExperiment, FollowedSweep, Follower
from config import Settings
from infra.events import (
    DATASET_TERMINAL_STATUSES,
    TERMINAL_STATUSES,
    dataset_stream,
    experiment_stream,
    redis_url,
    sweep_stream,
)
from models import DatasetStatus, DatasetVersion, Experiment, Sweep
from models.base import as_utc, utcnow
from models.datasets import status_event
from models.db import session_scope

# The key is verified by the routes' own dependency (api/streams/access.py), in a session closed before streaming;
# KeyVerifiedRoute keeps an invalid key's 401 ahead of a 422, as on every other route.
router = APIRouter(tags=["events"], route_class=KeyVerifiedRoute)

# Stream entry ids: milliseconds-sequence. Anything else in Last-Event-ID starts from the beginning.
ENTRY_ID = r"^\d{1,20}-\d{1,20}$"


# The body is text in the Server-Sent Events format, not one JSON object. `itemSchema` (OpenAPI 3.2's word for it,
# which Schemathesis reads) describes one event, and `schema` the whole body, left open: a generator that took
# `schema` for one event decoded the stream as JSON and crashed on its first line; given no type, it returns text.
def event_stream_doc(kinds: list[str], example: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of an event route: a text/event-stream of the events `kinds`."""
    named = ", ".join(f"`{kind}`" for kind in kinds[:-1]) + f" and `{kinds[-1]}`"
    return {
        200: {
            "description": f"A text/event-stream (Server-Sent Events) of {named} events. Each "
            "event is an `id:` line (its stream entry id, for Last-Event-ID), an `event:` line and a `data:` line "
            "holding a JSON object, then a blank line; a `: keep-alive` comment comes every 10 s of silence.",
            "content": {
                "text/event-stream": {
                    "schema": {"description": "The whole stream, as text: one event after another."},
                    "itemSchema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string", "enum": kinds},
                            "id": {"type": "string", "pattern": ENTRY_ID},
                            "data": {"type": "string", "contentMediaType": "application/json"},
                        },
                        "required": ["event", "data"],
                    },
                    "example": example,
                }
            },
        }
    }


EVENT_STREAM = event_stream_doc(
    ["status", "epoch", "progress"],
    'id: 1764612000000-0\nevent: status\ndata: {"experiment_id": 1, "status": "running"}\n\n',
)
DATASET_EVENT_STREAM = event_stream_doc(
    ["status", "progress"],
    'id: 1764612000000-0\nevent: progress\ndata: {"dataset_id": 4, "stage": "train", "done": 480, "total": 1200}\n\n',
)
KEEP_ALIVE_MS = 10_000
FINAL_EVENT_GRACE_S = 2.0
SETTLED_AT = "_settled_at"  # in an `ended()` answer, when its end was committed; never sent to the client
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="Continue after this event id (sent by EventSource on reconnect)."),
]
AfterQuery = Annotated[
    str | None,
    Query(pattern=ENTRY_ID, description="Continue after this event id, for clients that cannot set headers."),
]


def _sse(event: str, data: str, entry_id: str | None = None) -> str:
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def _start(last_event_id: str | None, after: str | None) -> str:
    for candidate in (last_event_id, after):
        if candidate and re.fullmatch(ENTRY_ID, candidate):
            return candidate
    return "0-0"


async def _relay(
    stream: str,
    cursor: str,
    ended: Callable[[], dict[str, Any] | None],
    follower: Follower,
    settings: Settings,
    terminal: frozenset[str] = TERMINAL_STATUSES,
) -> AsyncIterator[str]:
    """Replay `stream` after `cursor`, then follow it until `ended()` gives the final status, or max_s passes,
    or the follower's key stops being valid (checked every EPOCHAL_STREAM_RECHECK_S). `terminal` are the statuses
    its final `status` event can have (a job's, or a dataset version's)."""
    client = aioredis.Redis.from_url(redis_url(settings.broker_url), socket_timeout=KEEP_ALIVE_MS / 1000 + 5)
    deadline = time.monotonic() + settings.events_max_s
    recheck_s = settings.stream_recheck_s
    # The first re-check comes at a random point of the first interval: streams opened together (a dashboard's
    # tabs, a script's loop) then spread their checks out instead of making them all in the same instant.
    next_check = time.monotonic() + recheck_s * random.uniform(0.5, 1.0)
    unchecked = True  # events were relayed (or none yet) since the job's status was last read
    try:
        yield "retry: 2000\n\n"
        while True:
            if time.monotonic() >= next_check:
                # On a clock, not only when idle: a job publishing progress every second never is.
                try:
                    allowed, final = await run_in_threadpool(_recheck, follower, ended)
                except SQLAlchemyError:
                    # The key cannot be checked: close, rather than stream on unchecked. The client reconnects, and is
                    # answered 503 while the database is down.
                    yield ": closed: the database is unavailable; reconnect in a few seconds\n\n"
                    return
                if not allowed:
                    yield ": closed: the API key of this stream was revoked (or its user removed)\n\n"
                    return
                if final is not None:
                    async for line in _closing(client, stream, cursor, final, terminal):
                        yield line
                    return
                next_check, unchecked = time.monotonic() + recheck_s, False
            entries = await client.xread({stream: cursor}, count=500)
            if not entries:
                if unchecked:
                    # Caught up. The job may be over: its final event was relayed, or expired with its stream.
                    final = await run_in_threadpool(ended)
                    if final is not None:
                        async for line in _closing(client, stream, cursor, final, terminal):
                            yield line
                        return
                    unchecked = False
                now = time.monotonic()
                remaining_ms = int((deadline - now) * 1000)
                if remaining_ms <= 0:
                    return
                block_ms = max(1, min(KEEP_ALIVE_MS, remaining_ms, int((next_check - now) * 1000)))
                entries = await client.xread({stream: cursor}, count=500, block=block_ms)
                if not entries:
                    yield ": keep-alive\n\n"
                    continue
            unchecked = True
            for entry_id, event, data in _decoded(entries):
                cursor = entry_id
                yield _sse(event, data, entry_id)
    finally:
        with anyio.CancelScope(shield=True):  # the client may be gone: this runs in a cancelled scope then
            await client.aclose()


async def _closing(
    client: aioredis.Redis,
    stream: str,
    cursor: str,
    final: dict[str, Any],
    terminal: frozenset[str] = TERMINAL_STATUSES,
) -> AsyncIterator[str]:
    """The job (or dataset version) is over in the database: relay what is left of its stream, then the final
    status.

    A terminal status is published just after it is committed, so the database can say "over" a moment before the
    stream holds that event. Waiting up to FINAL_EVENT_GRACE_S after the end was committed (`final`'s SETTLED_AT)
    for it keeps a live client's events (and their ids) the same as a replay's; past that the event is taken as lost
    (publishing is best effort), and the final status from the database ends the stream alone. So a stream opened
    on a job long over never waits.
    """
    final = dict(final)
    deadline = time.monotonic() + _grace_left(final.pop(SETTLED_AT, None))
    block_ms: int | None = None  # the first read does not wait
    while True:
        for entry_id, event, data in _decoded(await client.xread({stream: cursor}, count=500, block=block_ms)):
            cursor = entry_id
            yield _sse(event, data, entry_id)
        latest: Any = await client.xrevrange(stream, count=1)
        if not latest or (latest[0][0].decode() == cursor and _is_terminal(latest[0][1], terminal)):
            break
        block_ms = int((deadline - time.monotonic()) * 1000)
        if block_ms <= 0:
            break
    yield _sse("status", json.dumps(final))


def _grace_left(settled_at: datetime | None) -> float:
    """How much of FINAL_EVENT_GRACE_S is left since the end was committed (all of it when that time is unknown)."""
    if settled_at is None:
        return FINAL_EVENT_GRACE_S
    since = (utcnow() - as_utc(settled_at)).total_seconds()
    return min(FINAL_EVENT_GRACE_S, max(0.0, FINAL_EVENT_GRACE_S - since))


def _is_terminal(fields: dict[bytes, bytes], terminal: frozenset[str]) -> bool:
    if fields.get(b"event") != b"status":
        return False
    try:
        return json.loads(fields.get(b"data", b"{}")).get("status") in terminal
    except (ValueError, AttributeError):
        return False


def _recheck(follower: Follower, ended: Callable[[], dict[str, Any] | None]) -> tuple[bool, dict[str, Any] | None]:
    """Whether the follower's key is still valid, and the job's final status if it is over: in one hop to a thread.

    The status is read here too, not only after events arrive: publishing is best effort, a final event can be lost.
    """
    if not follower.still_allowed():
        return False, None
    return True, ended()


def _decoded(entries: Any) -> list[tuple[str, str, str]]:
    """XREAD's answer, [(stream, [(id, {field: value})])] in bytes, as (id, event, data) strings."""
    return [
        (entry_id.decode(), fields[b"event"].decode(), fields[b"data"].decode())
        for _stream, items in entries
        for entry_id, fields in items
    ]


def _experiment_ended(experiment_id: int) -> Callable[[], dict[str, Any] | None]:
    def ended() -> dict[str, Any] | None:
        with session_scope() as session:
            experiment = session.get(Experiment, experiment_id)
            if experiment is None or not experiment.status.finished:
                return None
            final = {"experiment_id": experiment_id, "status": str(experiment.status), "final": True}
            return {**final, SETTLED_AT: experiment.finished_at}

    return ended


def _sweep_ended(sweep_id: int) -> Callable[[], dict[str, Any] | None]:
    def ended() -> dict[str, Any] | None:
        with session_scope() as session:
            sweep = session.get(Sweep, sweep_id)
            if sweep is None or not all(e.status.finished for e in sweep.experiments):
                return None
            statuses = {e.id: str(e.status) for e in sweep.experiments}
            final = {"sweep_id": sweep_id, "status": "finished", "experiments": statuses, "final": True}
            return {**final, SETTLED_AT: _latest(e.finished_at for e in sweep.experiments)}

    return ended


def _dataset_version_ended(dataset_id: int) -> Callable[[], dict[str, Any] | None]:
    def ended() -> dict[str, Any] | None:
        with session_scope() as session:
            row = session.get(DatasetVersion, dataset_id)
            if row is None:  # not even a tombstone (a database reset): nothing more will happen to it
                return {"dataset_id": dataset_id, "status": "deleted", "deleted": True, "final": True}
            if row.status == DatasetStatus.PROCESSING and row.deleted_at is None:
                return None
            # Settled, or deleted while it was being prepared (then it stays `processing`, with `deleted`).
            settled_at = row.deleted_at or row.finished_at
            return {"dataset_id": dataset_id, **status_event(row), "final": True, SETTLED_AT: settled_at}

    return ended


def _latest(times: Iterable[datetime | None]) -> datetime | None:
    """The latest of `times`; None when any is unknown (the grace is then waited in full)."""
    known = list(times)
    if not known or any(t is None for t in known):
        return None
    return max(as_utc(t) for t in known if t is not None)


def _event_stream(
    stream: str,
    ended: Callable[[], dict[str, Any] | None],
    follower: Follower,
    settings: Settings,
    last_event_id: str | None,
    after: str | None,
    terminal: frozenset[str] = TERMINAL_STATUSES,
) -> StreamingResponse:
    body = _relay(stream, _start(last_event_id, after), ended, follower, settings, terminal)
    # No caching, and no buffering in a reverse proxy: each event must reach the client as it happens.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def stream_errors(poll: str) -> dict[int | str, dict[str, Any]]:
    """The errors of an event route, whose plain-HTTP alternative is polling `poll`."""
    return {
        **responses(401, 404, 422),
        429: {
            **responses(429)[429],
            "description": "You have EPOCHAL_MAX_STREAMS_PER_USER live event streams open already: close one "
            f"(`Retry-After` says when to try again), or poll {poll}.",
        },
        503: {
            **responses(503)[503],
            "description": "The database or the broker is unavailable, or this API process relays "
            "EPOCHAL_MAX_STREAMS_PER_PROCESS streams already; try again after `Retry-After` seconds.",
        },
    }


STREAM_ERRORS = stream_errors("GET /experiments/{id}")


@router.get(
    "/experiments/{experiment_id}/events",
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, **STREAM_ERRORS},
)
async def experiment_events(
    experiment_id: ExperimentId,
    follower: FollowedExperiment,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> StreamingResponse:
    """Follow one experiment live: `status` changes, every finished `epoch` with its metrics, and `progress`
    within an epoch (batch i of n, running loss and accuracy, about once a second)."""
    ended = _experiment_ended(experiment_id)
    return _event_stream(experiment_stream(experiment_id), ended, follower, settings, last_event_id, after)


@router.get(
    "/sweeps/{sweep_id}/events",
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, **STREAM_ERRORS},
)
async def sweep_events(
    sweep_id: SweepId,
    follower: FollowedSweep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> StreamingResponse:
    """Follow every experiment of a sweep live (each event names its `experiment_id`); ends when all have ended."""
    return _event_stream(sweep_stream(sweep_id), _sweep_ended(sweep_id), follower, settings, last_event_id, after)


@router.get(
    "/datasets/{name}/versions/{version}/events",
    response_class=StreamingResponse,
    responses={**DATASET_EVENT_STREAM, **stream_errors("GET /datasets/{name}")},
)
async def dataset_version_events(
    name: DatasetName,
    version: DatasetVersionNumber,
    follower: FollowedDatasetVersion,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> StreamingResponse:
    """Follow one dataset version while a worker prepares it: its `status` (`processing` when it was uploaded),
    `progress` (`stage` checking, then train and test, with `done` of `total`: entries checked, then images decoded
    and fitted; `total` is null while a streamed archive's entries are being counted), and the final `status`:
    `ready` or `duplicate` (with `images`, and `duplicate_of`) or `failed` with its `errors` (each `entry` and
    `reason`), after which the stream closes. A version settled already answers its final status at once; one
    deleted meanwhile closes with `deleted: true`. Another user's private dataset is a 404, as a missing one."""
    ended = _dataset_version_ended(follower.row_id)
    return _event_stream(
        dataset_stream(follower.row_id), ended, follower, settings, last_event_id, after, DATASET_TERMINAL_STATUSES
    )
