"""Small in-process caches for what every prediction would otherwise read from the database: fail closed.

An entry is served only while the process's invalidation listener is live (infra/invalidation.py) and for at
most `ttl_s` after it was read from the database; any invalidation message, and the loss of the channel, empties
every cache at once. An entry read from the database before a change but stored after its message arrived is
not kept: `put` takes the generation the reader saw before its query, and any message moves the generation on.
Bounded by entries, from a byte budget and the size one entry is counted at (small fixed records: a key's
caller, an experiment's checkpoint reference).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from config import get_settings
from infra.invalidation import Listener, listener

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class HotCache(Generic[K, V]):
    """Least-recently-used entries that expire `ttl_s` after their database read; see the module docstring."""

    def __init__(
        self,
        listener: Listener,
        ttl_s: float,
        max_bytes: int,
        entry_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self.ttl_s = ttl_s
        self.capacity = max(0, max_bytes // entry_bytes)
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0
        listener.on_message(lambda _message: self.clear())

    @classmethod
    def configured(cls, entry_bytes: int) -> HotCache[K, V]:
        """A cache on the process's invalidation listener, sized and timed by EPOCHAL_SERVING_CACHE_*."""
        settings = get_settings()
        return cls(listener(), settings.serving_cache_ttl_s, settings.serving_cache_bytes, entry_bytes)

    def get(self, key: K) -> V | None:
        if not self._listener.live():
            return None
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            expires_at, value = found
            if self._clock() >= expires_at:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V, generation: int) -> None:
        """Keep `value`, read from the database when the cache's generation was `generation`."""
        if self.capacity == 0 or self.ttl_s <= 0 or not self._listener.live():
            return
        with self._lock:
            if generation != self.generation:
                return  # a change was announced while it was being read: it may predate it
            self._items[key] = (self._clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
