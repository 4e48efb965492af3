"""The dispatcher's wake-up: a subscription to the broker's DISPATCH_CHANNEL, waited on between its keeper's ticks.

Anything that queues a job or frees a slot publishes there (infra/events.py `status`, the task publisher's
`nudge_dispatcher`); the holder of the dispatcher role then runs a pass at once instead of at its next interval.
A lost subscription is made again at the next wait; until then the keeper simply ticks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from infra.events import DISPATCH_CHANNEL, channel, subscriber_client

log = logging.getLogger(__name__)

# After the first nudge, how long to gather the others of a burst (a sweep's submissions) into one pass.
GATHER_S = 0.05
# Longest single read of the subscription: below the client's socket timeout.
READ_S = 1.0


class Nudges:
    """`wait(seconds)`: block up to `seconds`; True as soon as a nudge arrived (and the burst it began is read)."""

    def __init__(self) -> None:
        self._pubsub: Any = None
        self._client: Any = None

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        try:
            if self._pubsub is None:
                self._client = subscriber_client()  # never the shared pool: see subscriber_client
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(channel(DISPATCH_CHANNEL))
            while (left := deadline - time.monotonic()) > 0:
                if self._pubsub.get_message(timeout=min(left, READ_S)) is not None:
                    gather_until = time.monotonic() + GATHER_S
                    while time.monotonic() < gather_until and self._pubsub.get_message(timeout=GATHER_S):
                        pass
                    return True
            return False
        except (redis.RedisError, OSError) as exc:
            log.warning("dispatch nudges unavailable (%s); passes run on the interval", type(exc).__name__)
            self.close()
            time.sleep(max(0.0, deadline - time.monotonic()))
            return False

    def close(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._pubsub.close()
            self._pubsub = None
        if self._client is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._client.close()
            self._client = None
