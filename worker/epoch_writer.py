"""Epoch rows and resume state written while the next epoch trains.

The write of an epoch (its row and its resume state, one fenced transaction) takes from milliseconds
on SQLite to most of a second for a convnet's 40 MB of state on PostgreSQL. Done in a thread, it
overlaps the next epoch instead of adding to it. At most one write is in flight: the next epoch end
waits for it, and its failure (Superseded, a database that stayed down) is raised there, so an epoch
is never reported out of order, and the job's final write always comes after its last epoch's.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from training.results import EpochResult, ResumePoint
from worker import jobs


class EpochWriter:
    def __init__(self, job: jobs.ClaimedJob) -> None:
        self.job = job
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"epochs-{job.experiment_id}")
        self._pending: Future[None] | None = None

    def __enter__(self) -> EpochWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        # On an error path the pending write may fail too; the first error is the one that counts.
        self._executor.shutdown(wait=True)

    def write(self, result: EpochResult, point: ResumePoint) -> None:
        """Queue this epoch's write after the previous one has landed (raising its error, if it failed)."""
        self.flush()
        self._pending = self._executor.submit(jobs.record_epoch, self.job, result, point)

    def flush(self) -> None:
        """Wait until every epoch reported so far is in the database."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()
