"""A moving-window rate limiter in process memory: at most `limit` units per key in any `window_s` seconds.

Our own rather than the `limits` library's in-memory storage: that one expired its entries from a
`threading.Timer` which it started anew whenever the last one had run, about once per request at the
prediction route's rates (7 % of the API's busy samples). Here expiry happens inline, under the lock, on
the key being counted; keys nobody used for a window are dropped by a sweep that runs at most once a window,
so memory holds only the keys of the last two windows.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


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
