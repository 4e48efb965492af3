"""The lease of a dataset version's preparation (domain/preparations.py), renewed from a thread of the process that
prepares it, like a training attempt's (worker/heartbeat.py): it stops being renewed exactly when that process stops
(killed, hung, out of memory), and then the reaper publishes the version again.
"""

from __future__ import annotations

import logging
import threading

from domain import preparations
from models.base import utcnow
from models.db import session_scope

log = logging.getLogger(__name__)


class PreparationLease:
    def __init__(self, dataset_id: int, attempt: int, interval_s: float) -> None:
        self.dataset_id, self.attempt, self.interval_s = dataset_id, attempt, interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"preparation-{dataset_id}", daemon=True)

    def __enter__(self) -> PreparationLease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 5)
        # A settled version is left alone; one left processing (the process is being stopped: the exception is on
        # its way up) is given back at once rather than when its lease runs out.
        try:
            with session_scope() as session:
                preparations.give_back(session, self.dataset_id, self.attempt)
        except Exception as exc:
            log.warning("dataset version %s: lease not given back (%s); it expires", self.dataset_id, exc)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                with session_scope() as session:
                    if not preparations.renew(session, self.dataset_id, self.attempt, utcnow()):
                        return  # settled, or presumed lost and claimed again: the finish is idempotent either way
            except Exception as exc:
                # A database restart: keep preparing and try again; the lease outlasts several missed beats.
                log.warning("dataset version %s: could not renew the lease (%s)", self.dataset_id, type(exc).__name__)
