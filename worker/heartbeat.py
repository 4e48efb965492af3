"""The lease of a running attempt, renewed from a thread of the training process itself.

A thread, not the Celery parent: the lease must stop being renewed exactly when the process that
trains stops (killed, hung, out of memory), and must keep being renewed through an epoch of any
length. A renewal that finds the attempt superseded sets `lost`, and training stops at the next batch.
"""

from __future__ import annotations

import logging
import threading

from worker import jobs

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, job: jobs.ClaimedJob, interval_s: float) -> None:
        self.job = job
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.experiment_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                if not jobs.renew_lease(self.job):
                    log.warning(
                        "experiment %s: attempt %s was superseded; stopping without writing",
                        self.job.experiment_id,
                        self.job.attempt,
                    )
                    self.lost.set()
                    return
            except Exception as exc:
                # A database restart: keep training and try again; the lease outlasts several missed beats.
                log.warning("experiment %s: could not renew the lease (%s)", self.job.experiment_id, type(exc).__name__)
