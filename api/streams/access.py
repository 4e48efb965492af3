"""Who may follow an event stream: decided before the stream starts, and re-checked while it runs.

The event routes (api/routers/events.py) take `FollowedExperiment`, `FollowedSweep` or `FollowedDatasetVersion`, a
dependency that in one short session (one worker-thread hop) verifies the key (401), finds the row through
domain/access.py or domain/datasets.py (404) and takes a stream slot (429 or 503, api/streams/slots.py), and
closes that session before the first byte is streamed. A `SessionDep` would hold its connection until the stream
ends (FastAPI exits dependencies after the response is sent): 15 open streams emptied the pool of 5 + 10 and every
other request waited for it. The slot is given back when the request ends, however it ends: the job finished,
the client went away, an error.

While a stream is open, `Follower.still_allowed` runs every EPOCHAL_STREAM_RECHECK_S in a session of
its own: one indexed query for the key (a revoked key, or one whose user was removed, ends the stream)
and a renewal of the slot's lease.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
import redis
from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.http.auth import BearerKey, authenticate
from api.http.deps import SettingsDep
from api.http.params import DatasetName, DatasetVersionNumber, ExperimentId, SweepId
from api.streams.slots import StreamSlot, acquire
from config import Settings
from domain.access import visible_experiment, visible_sweep
from domain.datasets import visible_version
from models.accounts import find_key
from models.db import get_sessionmaker
from models.users import User

log = logging.getLogger(__name__)

# Finds the followed row for the caller (or raises its 404): its id.
Locate = Callable[[Session, User], int]


@dataclass
class Follower:
    """The caller of one open stream, as it was authorised: what the stream re-checks, without a session."""

    user_id: int
    key: str  # the bearer key, kept to check it again with the one rule (find_key) every request uses
    slot: StreamSlot
    row_id: int  # the followed row's (a dataset version is named by name and number, its stream by its row)

    def still_allowed(self) -> bool:
        """Whether the key is still valid (not revoked, its user not removed); renews the slot. Blocking."""
        with get_sessionmaker()() as session:
            allowed = find_key(session, self.key) is not None
        if allowed:
            try:
                self.slot.renew()
            except (redis.RedisError, OSError) as exc:
                log.warning("stream slot of user %s not renewed (%s)", self.user_id, type(exc).__name__)
        return allowed


def _broker_unavailable() -> HTTPException:
    return HTTPException(
        status_code=503,
        detail="the broker (Redis) that carries live events is unavailable right now; try again in a few seconds, "
        "or poll what you follow (GET /experiments/{id}, GET /datasets/{name}; GET /health shows the state of each "
        "dependency)",
        headers={"Retry-After": "5"},
    )


@asynccontextmanager
async def _following(request: Request, key: str, settings: Settings, locate: Locate) -> AsyncIterator[Follower]:
    def authorise() -> Follower:
        with get_sessionmaker()() as session:
            user = authenticate(session, request, key)
            row_id = locate(session, user)
            user_id = user.id
        # The session is closed: the slot (Redis) is taken without a database connection held.
        try:
            slot = acquire(settings, user_id)
        except (redis.RedisError, OSError) as exc:
            raise _broker_unavailable() from exc
        return Follower(user_id, key, slot, row_id)

    follower = await run_in_threadpool(authorise)
    try:
        yield follower
    finally:
        # Shielded: when the client went away this runs inside a cancelled scope, where an await would be cut short.
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(follower.slot.release)


async def follow_experiment(
    experiment_id: ExperimentId, request: Request, key: BearerKey, settings: SettingsDep
) -> AsyncIterator[Follower]:
    locate: Locate = lambda s, u: visible_experiment(s, u, experiment_id).id  # noqa: E731
    async with _following(request, key, settings, locate) as follower:
        yield follower


async def follow_sweep(
    sweep_id: SweepId, request: Request, key: BearerKey, settings: SettingsDep
) -> AsyncIterator[Follower]:
    locate: Locate = lambda s, u: visible_sweep(s, u, sweep_id, with_runs=False).id  # noqa: E731
    async with _following(request, key, settings, locate) as follower:
        yield follower


async def follow_dataset_version(
    name: DatasetName, version: DatasetVersionNumber, request: Request, key: BearerKey, settings: SettingsDep
) -> AsyncIterator[Follower]:
    """The rule of GET /datasets/{name}: another user's private dataset is a 404 in the words of a missing one."""
    locate: Locate = lambda s, u: visible_version(s, u, name, version).id  # noqa: E731
    async with _following(request, key, settings, locate) as follower:
        yield follower


FollowedExperiment = Annotated[Follower, Depends(follow_experiment)]
FollowedSweep = Annotated[Follower, Depends(follow_sweep)]
FollowedDatasetVersion = Annotated[Follower, Depends(follow_dataset_version)]
