"""The decoded image memory one API process holds at once, all requests together (EPOCHAL_MAX_DECODING_BYTES).

Each request's images are bounded on their own (EPOCHAL_MAX_IMAGE_DECODED_BYTES, and per request
EPOCHAL_MAX_BATCH_DECODED_BYTES), but many requests decode at once, one per worker thread: a flood
of large images would add up to gigabytes. An image reserves what it costs decoded (read from its
header) while it is decoded; past the budget the request is a 503 at once rather than a wait, since
a waiting request would hold a worker thread that every other route needs too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException

MiB = 2**20


class DecodeBudget:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_use = 0

    @contextmanager
    def reserve(self, cost: int, capacity: int) -> Iterator[None]:
        """Hold `cost` bytes of `capacity` while the block runs; 503 with Retry-After when they are not free.

        An image that alone costs more than `capacity` (within its own cap) is decoded when nothing else is.
        """
        with self._lock:
            if self.in_use and self.in_use + cost > capacity:
                raise HTTPException(
                    status_code=503,
                    detail=(
                        f"this API process is decoding {self.in_use / MiB:.0f} MiB of images for other requests, "
                        f"and holds at most {capacity / MiB:g} MiB at once (EPOCHAL_MAX_DECODING_BYTES); "
                        "try again in a second, or send smaller images"
                    ),
                    headers={"Retry-After": "1"},
                )
            self.in_use += cost
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= cost


DECODING = DecodeBudget()
