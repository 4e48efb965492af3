"""Caps on open event streams: per user, all API processes together (in Redis), and per process (in memory).

An open stream holds no database connection, but it holds a Redis connection, a file descriptor and a
share of the event loop for up to EPOCHAL_EVENTS_MAX_S: one user's loop of stream requests (or a
dashboard in many tabs) must not use up what every other user needs.

Per user: one sorted set per user in the broker's Redis, a member per open stream, scored by when its
lease runs out. A stream renews its lease at each re-check of its key, and removes its member when it
ends however it ends; a process killed with streams open leaves members that lapse within one lease,
so a crash never locks a user out for good. Per process: a counter, since it bounds this process alone.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import redis
from fastapi import HTTPException

from config import Settings
from infra import events

# Asking again sooner than this rarely finds a slot free: streams last minutes.
RETRY_AFTER_S = 5
_PREFIX = "epochal:streams:user:"

# KEYS: the user's set. ARGV: now (ms), lease end (ms), cap, member, key lifetime (ms). Drops lapsed leases, then
# adds the member if fewer than `cap` are open: -1 when it was added, otherwise how many are open.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local open = redis.call('ZCARD', KEYS[1])
if open >= tonumber(ARGV[3]) then return open end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return -1
"""


def lease_s(settings: Settings) -> float:
    """How long a stream's slot outlives its last renewal: several re-checks, so one slow one loses nothing."""
    return max(30.0, 4 * settings.stream_recheck_s)


class ProcessStreams:
    """How many streams this process relays, against its cap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def take(self, cap: int) -> bool:
        with self._lock:
            if self.open >= cap:
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


PROCESS_STREAMS = ProcessStreams()


@lru_cache
def _acquire_script() -> Any:
    return events.redis_client().register_script(_ACQUIRE)


def _user_key(user_id: int) -> str:
    return f"{_PREFIX}{user_id}"


@dataclass
class StreamSlot:
    """One open stream's place under both caps; `release` gives both back, once, however often it is called."""

    user_id: int
    lease_s: float
    member: str = field(default_factory=lambda: uuid.uuid4().hex)
    released: bool = False

    def renew(self) -> None:
        """Push the lease out by another `lease_s` (blocking: one Redis round trip)."""
        until_ms = int((time.time() + self.lease_s) * 1000)
        pipeline = events.redis_client().pipeline(transaction=False)
        pipeline.zadd(_user_key(self.user_id), {self.member: until_ms})
        pipeline.pexpire(_user_key(self.user_id), int(self.lease_s * 1000))
        pipeline.execute()

    def release(self) -> None:
        """Give both places back (blocking: one Redis round trip)."""
        if self.released:
            return
        self.released = True
        PROCESS_STREAMS.give_back()
        with contextlib.suppress(redis.RedisError, OSError):  # Redis unreachable: the member lapses with its lease
            events.redis_client().zrem(_user_key(self.user_id), self.member)


def acquire(settings: Settings, user_id: int) -> StreamSlot:
    """A slot for one more stream of `user_id`; 429 over the user's cap, 503 over this process's (blocking)."""
    cap = settings.max_streams_per_user
    slot = StreamSlot(user_id, lease_s(settings))
    now_ms = int(time.time() * 1000)
    lease_ms = int(slot.lease_s * 1000)
    script = _acquire_script()
    open_now = int(script(keys=[_user_key(user_id)], args=[now_ms, now_ms + lease_ms, cap, slot.member, lease_ms]))
    if open_now >= 0:
        raise HTTPException(
            status_code=429,
            detail=(
                f"you have {open_now} live event streams open, the most one user may have "
                f"(EPOCHAL_MAX_STREAMS_PER_USER={cap}); close one (a dashboard tab, a `--watch`) to free its slot, "
                "or poll what you follow (GET /experiments/{id}, GET /datasets/{name}) instead"
            ),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if not PROCESS_STREAMS.take(settings.max_streams_per_process):
        events.redis_client().zrem(_user_key(user_id), slot.member)
        raise HTTPException(
            status_code=503,
            detail=(
                f"this API process already relays {settings.max_streams_per_process} live event streams "
                "(EPOCHAL_MAX_STREAMS_PER_PROCESS); try again in a few seconds, or poll what you follow "
                "(GET /experiments/{id}, GET /datasets/{name})"
            ),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return slot
