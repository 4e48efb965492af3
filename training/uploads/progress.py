"""How far `ingest` has got, told to a callback now and then: pure (the caller decides where it goes).

`on_progress(stage, done, total)` is called for each stage when it starts (done 0), then when about
REPORT_EVERY_S has passed since its last call or another REPORT_SHARE of it is done, and once when it ends (done ==
total). Within a stage `done` only grows. The stages, in order:

- `checking`: the archive's entries checked, each image's header read; `total` is the number of entries when the
  archive says it before it is read (a zip's central directory), None until the last call otherwise (a tar is a
  stream); the last call gives the count. An .npz reports its arrays.
- `train`, then or meanwhile `test`: the images of that split decoded and fitted into its arrays (an archive is read
  in its own order, so the two splits advance together); `total` is the split's image count.

Without a callback nothing is counted or timed: the reading is what it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# stage, done, total (None while the total is unknown)
ProgressCallback = Callable[[str, int, int | None], None]

CHECKING = "checking"
REPORT_EVERY_S = 0.5
REPORT_SHARE = 0.05  # at most ~20 calls per stage from the share alone, however small the upload


class StageProgress:
    """One stage's count, reported to `callback` as the module says (a no-op without one)."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        stage: str,
        total: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.callback, self.stage, self.total, self.clock = callback, stage, total, clock
        self.done = 0
        self._reported: tuple[int, int | None] | None = None  # the last call's done and total
        self._reported_at = 0.0
        if callback is not None:
            self._report()

    def step(self, total: int | None = None) -> None:
        """One more item done; `total`, when the stage learns it on the way (a zip's entry count)."""
        if self.callback is None:
            return
        self.done += 1
        if total is not None and self.total is None:
            self.total = total
        share = self.total * REPORT_SHARE if self.total else None
        last_done = self._reported[0] if self._reported else 0
        if (share is not None and self.done - last_done >= share) or (
            self.clock() - self._reported_at >= REPORT_EVERY_S
        ):
            self._report()

    def end(self) -> None:
        """The stage is over: its last call, with done == total (the count, when it was not known), unless the last
        call said that already."""
        if self.callback is None:
            return
        if self.total is None:
            self.total = self.done
        if self._reported != (self.done, self.total):
            self._report()

    def _report(self) -> None:
        assert self.callback is not None
        self._reported, self._reported_at = (self.done, self.total), self.clock()
        self.callback(self.stage, self.done, self.total)
