"""A dataset version's events while a worker prepares it (infra/events.py): its `progress`, then its settled
`status`. Best effort, like a job's: an event that cannot be published is dropped, never failing the preparation;
the row stays the truth (GET /datasets/{name}), and a stream that finds it settled closes with its status anyway."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from infra import events
from models import DatasetStatus, DatasetVersion
from models.datasets import status_event
from models.db import session_scope

log = logging.getLogger(__name__)

# After a progress event the broker did not take, the next ones are not tried for this long: each try can wait out
# Redis's timeouts, and a preparation must not crawl while the broker is away.
PAUSE_S = 10.0


class ProgressPublisher:
    """`ingest`'s `on_progress` for one version: each call one `progress` event (stage, images done, total)."""

    def __init__(self, dataset_id: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.dataset_id, self.clock = dataset_id, clock
        self._paused_until = float("-inf")

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.clock() < self._paused_until:
            return
        if not events.dataset_event(self.dataset_id, "progress", {"stage": stage, "done": done, "total": total}):
            self._paused_until = self.clock() + PAUSE_S


def publish_settled(dataset_id: int) -> None:
    """The version's `status` once its row is settled, in the words read back from the row."""
    try:
        with session_scope() as session:
            row = session.get(DatasetVersion, dataset_id)
            if row is None or row.status == DatasetStatus.PROCESSING:
                return
            data = status_event(row)
    except SQLAlchemyError as exc:
        log.warning("dataset version %s: status event not published (%s)", dataset_id, type(exc).__name__)
        return
    events.dataset_event(dataset_id, "status", data)
