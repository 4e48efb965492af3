"""Moving-window rate limits: at most `limit` units per key in any `window_s` seconds.

`MovingWindow` counts in process memory. Our own rather than the `limits` library's in-memory storage: that
one expired its entries from a `threading.Timer` which it started anew whenever the last one had run, about
once per request at the prediction route's rates (7 % of the API's busy samples). Here expiry happens inline,
under the lock, on the key being counted; keys nobody used for a window are dropped by a sweep that runs at
most once a window, so memory holds only the keys of the last two windows.

`SharedMovingWindow` is the same window in Redis (the broker's), for several API processes: one script call per
hit counts and checks atomically, whichever process makes it. `FallbackWindow` uses it, and counts in process
while Redis does not answer (serving predictions must not depend on the broker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Window(Protocol):
    def hit(self, key: str, limit: int, cost: int = 1) -> float: ...


@dataclass
class _Log:
    hits: deque[tuple[float, int]] = field(default_factory=deque)  # (when, units), oldest first
    used: int = 0  # the sum of the units in `hits`


class MovingWindow:
    def __init__(self, window_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock  # monotonic: a wall-clock step must not reopen or block a window
        self._lock = threading.Lock()
        self._logs: dict[str, _Log] = {}
        self._next_sweep = clock() + window_s

    def hit(self, key: str, limit: int, cost: int = 1) -> float:
        """Count `cost` units for `key` and return 0 if they fit under `limit` in the window ending now.

        If they do not, nothing is counted and the answer is the seconds until they would fit (more than 0,
        at most the window; `cost` above `limit` never fits: the caller refuses that first).
        """
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = _Log()
            start = now - self.window_s
            while log.hits and log.hits[0][0] <= start:
                log.used -= log.hits.popleft()[1]
            if log.used + cost <= limit:
                log.hits.append((now, cost))
                log.used += cost
                return 0.0
            # The oldest hits leave the window first: wait until enough of them have left.
            excess = log.used + cost - limit
            for when, units in log.hits:
                excess -= units
                if excess <= 0:
                    return when + self.window_s - now
            return self.window_s

    def __len__(self) -> int:
        """How many keys are held (what the sweep bounds)."""
        with self._lock:
            return len(self._logs)

    def _sweep(self, now: float) -> None:
        # Called with the lock held. A key whose newest hit left the window has nothing left to count.
        start = now - self.window_s
        for key in [k for k, log in self._logs.items() if not log.hits or log.hits[-1][0] <= start]:
            del self._logs[key]
        self._next_sweep = now + self.window_s


# KEYS: the key's hits, a list of "<microseconds>:<units>" oldest first, and the sum of their units. ARGV: now (µs),
# window (µs), limit, cost. Answers 0 (counted) or the microseconds until the cost would fit (nothing counted), as
# MovingWindow.hit does. A hit pops only the hits that left the window and reads the sum, so it costs the same
# however high the limit; only a refusal reads the whole list (at most `limit` entries), to say how long to wait.
# Times are the callers' clocks (wall clocks, so processes on several hosts agree as far as their clocks do);
# `now` is stored as the string it came as, since Lua's tostring would round a 16-digit number.
_HIT_SCRIPT = """
local hits, total = KEYS[1], KEYS[2]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = math.ceil(window / 1000) + 1
local used = tonumber(redis.call('GET', total) or '0')
while true do
  local oldest = redis.call('LINDEX', hits, 0)
  if not oldest then used = 0 break end
  local sep = string.find(oldest, ':', 1, true)
  if tonumber(string.sub(oldest, 1, sep - 1)) > now - window then break end
  redis.call('LPOP', hits)
  used = used - tonumber(string.sub(oldest, sep + 1))
end
if used + cost <= limit then
  redis.call('RPUSH', hits, ARGV[1] .. ':' .. ARGV[4])
  redis.call('PEXPIRE', hits, ttl)
  redis.call('SET', total, used + cost, 'PX', ttl)
  return 0
end
redis.call('SET', total, used, 'KEEPTTL')
local excess = used + cost - limit
for _, hit in ipairs(redis.call('LRANGE', hits, 0, -1)) do
  local sep = string.find(hit, ':', 1, true)
  excess = excess - tonumber(string.sub(hit, sep + 1))
  if excess <= 0 then return math.max(1, tonumber(string.sub(hit, 1, sep - 1)) + window - now) end
end
return window
"""


class SharedMovingWindow:
    """MovingWindow's rule, kept in Redis so every API process counts against one window per key.

    A key's hits are at most `limit` list entries (each hit is at least one unit), popped as they leave the window;
    both keys expire a window after the last counted hit, so Redis holds only recently used keys.
    """

    PREFIX = "epochal:rate:"

    def __init__(self, client: Any, window_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self._clock = clock
        self._script = client.register_script(_HIT_SCRIPT)  # EVALSHA, loading the script again if Redis lost it

    def keys(self, key: str) -> list[str]:
        # One hash tag, {key}: a Redis Cluster keeps both keys on one node, as a script needs.
        return [f"{self.PREFIX}{{{key}}}:hits", f"{self.PREFIX}{{{key}}}:used"]

    def hit(self, key: str, limit: int, cost: int = 1) -> float:
        now_us = int(self._clock() * 1_000_000)
        window_us = int(self.window_s * 1_000_000)
        wait_us = self._script(keys=self.keys(key), args=[now_us, window_us, limit, cost])
        return int(wait_us) / 1_000_000


class FallbackWindow:
    """Count in `shared`; while it fails (Redis down or unreachable), count in `local` and retry `shared` later.

    A limit per process is weaker than a shared one (N processes let a user through N times) but keeps predictions
    served during a broker outage; `retry_s` keeps a dead broker from costing every request a connection attempt.
    """

    def __init__(self, shared: Window, local: Window, errors: tuple[type[BaseException], ...], retry_s: float = 5.0):
        self._shared, self._local, self._errors, self._retry_s = shared, local, errors, retry_s
        self._shared_after = 0.0  # monotonic time before which `local` counts

    def hit(self, key: str, limit: int, cost: int = 1) -> float:
        if time.monotonic() >= self._shared_after:
            try:
                return self._shared.hit(key, limit, cost)
            except self._errors as exc:
                self._shared_after = time.monotonic() + self._retry_s
                log.warning("rate limits counted per process for %.0f s: Redis did not answer (%s)", self._retry_s, exc)
        return self._local.hit(key, limit, cost)
