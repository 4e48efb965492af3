"""Live events as Server-Sent Events: status changes, finished epochs and progress within an epoch.

The worker, the reaper and the API append events to Redis streams (epochal/events.py); these routes
relay them. Each event's `id` is its stream entry id: a client that reconnects with `Last-Event-ID`
continues right after the last event it saw, without gaps or repeats. The stream closes after the
terminal status (of the experiment, or of the sweep's last experiment), and in any case after
EPOCHAL_EVENTS_MAX_S, when a client reconnects (EventSource does so by itself). Plain HTTP clients
can poll GET /experiments/{id} instead.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.access import ExperimentId, SweepId, visible_experiment, visible_sweep
from api.auth import CurrentUser
from api.deps import SessionDep, SettingsDep
from api.errors import responses
from config import Settings
from epochal.events import TERMINAL_STATUSES, experiment_stream, redis_url, sweep_stream
from models import Experiment, Sweep
from models.db import session_scope

router = APIRouter(tags=["events"])

# Stream entry ids: milliseconds-sequence. Anything else in Last-Event-ID starts from the beginning.
ENTRY_ID = r"^\d{1,20}-\d{1,20}$"
# The body is text in the Server-Sent Events format, not one JSON object. `itemSchema` (OpenAPI 3.2's word for it,
# which Schemathesis reads) describes one event, and `schema` the whole body, left open: a generator that took
# `schema` for one event decoded the stream as JSON and crashed on its first line; given no type, it returns text.
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream (Server-Sent Events) of `status`, `epoch` and `progress` events. Each "
        "event is an `id:` line (its stream entry id, for Last-Event-ID), an `event:` line and a `data:` line "
        "holding a JSON object, then a blank line; a `: keep-alive` comment comes every 10 s of silence.",
        "content": {
            "text/event-stream": {
                "schema": {"description": "The whole stream, as text: one event after another."},
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": ["status", "epoch", "progress"]},
                        "id": {"type": "string", "pattern": ENTRY_ID},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                    },
                    "required": ["event", "data"],
                },
                "example": 'id: 1764612000000-0\nevent: status\ndata: {"experiment_id": 1, "status": "running"}\n\n',
            }
        },
    }
}
KEEP_ALIVE_MS = 10_000
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
    stream: str, cursor: str, ended: Callable[[], dict[str, Any] | None], max_s: float, url: str
) -> AsyncIterator[str]:
    """Replay `stream` after `cursor`, then follow it until `ended()` gives the final status, or max_s passes."""
    client = aioredis.Redis.from_url(url, socket_timeout=KEEP_ALIVE_MS / 1000 + 5)
    deadline = time.monotonic() + max_s
    try:
        yield "retry: 2000\n\n"
        while True:
            entries = await client.xread({stream: cursor}, count=500)
            if not entries:
                # Caught up. The job may be over: its final event was relayed, or expired with its stream.
                final = await run_in_threadpool(ended)
                if final is not None:
                    yield _sse("status", json.dumps(final))
                    return
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    return
                entries = await client.xread({stream: cursor}, count=500, block=min(KEEP_ALIVE_MS, remaining_ms))
                if not entries:
                    yield ": keep-alive\n\n"
                    continue
            for entry_id, event, data in _decoded(entries):
                cursor = entry_id
                yield _sse(event, data, entry_id)
    finally:
        await client.aclose()


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
            if experiment is None or str(experiment.status) not in TERMINAL_STATUSES:
                return None
            return {"experiment_id": experiment_id, "status": str(experiment.status), "final": True}

    return ended


def _sweep_ended(sweep_id: int) -> Callable[[], dict[str, Any] | None]:
    def ended() -> dict[str, Any] | None:
        with session_scope() as session:
            sweep = session.get(Sweep, sweep_id)
            if sweep is None or any(str(e.status) not in TERMINAL_STATUSES for e in sweep.experiments):
                return None
            statuses = {e.id: str(e.status) for e in sweep.experiments}
            return {"sweep_id": sweep_id, "status": "finished", "experiments": statuses, "final": True}

    return ended


def _event_stream(
    stream: str,
    ended: Callable[[], dict[str, Any] | None],
    settings: Settings,
    last_event_id: str | None,
    after: str | None,
) -> StreamingResponse:
    body = _relay(stream, _start(last_event_id, after), ended, settings.events_max_s, redis_url(settings.broker_url))
    # No caching, and no buffering in a reverse proxy: each event must reach the client as it happens.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


@router.get(
    "/experiments/{experiment_id}/events",
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, **responses(401, 404, 422, 503)},
)
def experiment_events(
    experiment_id: ExperimentId,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> StreamingResponse:
    """Follow one experiment live: `status` changes, every finished `epoch` with its metrics, and `progress`
    within an epoch (batch i of n, running loss and accuracy, about once a second)."""
    visible_experiment(session, user, experiment_id)
    return _event_stream(
        experiment_stream(experiment_id), _experiment_ended(experiment_id), settings, last_event_id, after
    )


@router.get(
    "/sweeps/{sweep_id}/events",
    response_class=StreamingResponse,
    responses={**EVENT_STREAM, **responses(401, 404, 422, 503)},
)
def sweep_events(
    sweep_id: SweepId,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    last_event_id: LastEventId = None,
    after: AfterQuery = None,
) -> StreamingResponse:
    """Follow every experiment of a sweep live (each event names its `experiment_id`); ends when all have ended."""
    visible_sweep(session, user, sweep_id)
    return _event_stream(sweep_stream(sweep_id), _sweep_ended(sweep_id), settings, last_event_id, after)
