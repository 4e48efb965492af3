"""Thin Celery tasks: claim an attempt, call `training`, persist what it returns; prepare an uploaded dataset."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

from billiard.common import terminate_handler_fired
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Task

from config import DATASET_TASK_NAME, TRAIN_TASK_NAME, get_settings
from domain.lifecycle import Outcome
from infra import events
from infra.blob_cache import BlobCache
from models.blob_store import DatabaseBlobStore
from training.results import StopReason
from training.spec import DatasetInfo
from worker import jobs
from worker.celery_app import app
from worker.epoch_writer import EpochWriter
from worker.heartbeat import Heartbeat
from worker.shutdown import stop_requested

log = logging.getLogger(__name__)


def _error_text(exc: BaseException) -> str:
    # The first line is what a user reads; the traceback is what a maintainer needs.
    return f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"


@app.task(name=TRAIN_TASK_NAME, bind=True)
def train_experiment(self: Task, experiment_id: int) -> str:
    """Train experiment `experiment_id` if it is queued; return how this attempt ended."""
    job = jobs.claim(experiment_id, worker=self.request.hostname or "unknown", pid=os.getpid())
    if job is None:
        log.info("experiment %s is not queued any more; nothing to do", experiment_id)
        return "skipped"
    log.info("experiment %s claimed by %s (attempt %s)", experiment_id, self.request.hostname, job.attempt)
    settings = get_settings()
    try:
        with Heartbeat(job, settings.heartbeat_s) as heartbeat:
            return _train(job, heartbeat, self.request.hostname or "unknown")
    except jobs.Superseded as exc:
        log.warning("experiment %s: %s; this attempt stops without writing", experiment_id, exc)
        return "superseded"
    except SoftTimeLimitExceeded:
        limit = f"{settings.task_time_limit_s:g} s"
        message = f"TimeLimitExceeded: training ran past the time limit of {limit} (EPOCHAL_TASK_TIME_LIMIT_S)"
        _fail(job, message, Outcome.TIMED_OUT)
        return "failed"
    except Exception as exc:
        if terminate_handler_fired():
            # This child was told to terminate (Celery cancels a running task whose broker connection was lost) and
            # the SystemExit raised for it came out as another error: TensorFlow turns what is raised inside its
            # calls into errors of its own. The job did not fail; the process is on its way out.
            _give_back_on_termination(job)
            raise
        log.exception("experiment %s failed", experiment_id)
        _fail(job, _error_text(exc), Outcome.FAILED)
        return "failed"


def _give_back_on_termination(job: jobs.ClaimedJob) -> None:
    """Queue a job whose child is terminating for the reaper to publish; if even that fails, its lease runs out."""
    log.warning("experiment %s: its process is terminating; giving the job back", job.experiment_id)
    try:
        jobs.give_back(job, "its process was terminated; the next attempt resumes after the last finished epoch")
    except Exception as exc:
        log.warning("experiment %s: not given back (%s); settled once its lease expires", job.experiment_id, exc)


def _fail(job: jobs.ClaimedJob, error: str, outcome: str) -> None:
    try:
        jobs.finish_failed(job, error, outcome)
    except jobs.Superseded:
        log.warning(
            "experiment %s: attempt %s was superseded; its failure is not recorded", job.experiment_id, job.attempt
        )


@contextlib.contextmanager
def packed_dataset(info: DatasetInfo) -> Iterator[Path | None]:
    """An uploaded dataset's packed arrays as a local file, from this host's blob cache (fetched from the database
    once, checked against its hash), kept while the job trains on it; None for a built-in (the data folder's)."""
    if info.packed_sha256 is None:
        yield None
        return
    with BlobCache.configured(DatabaseBlobStore()).fetch(info.packed_sha256) as path:
        yield path


def _train(job: jobs.ClaimedJob, heartbeat: Heartbeat, host: str) -> str:
    # TensorFlow is imported here, in the job's own child process, never in the prefork parent.
    from training.device import setup_device
    from training.runner import run_experiment
    from training.runtime import library_versions

    device = setup_device(job.spec.mixed_precision)
    jobs.record_device(job, device.name, device.warnings, library_versions())
    with (
        tempfile.TemporaryDirectory(prefix=f"epochal-{job.experiment_id}-") as workdir,
        packed_dataset(job.spec.info) as packed,
        EpochWriter(job) as epochs,
    ):
        result = run_experiment(
            job.spec,
            get_settings().data_dir,
            Path(workdir),
            packed=packed,
            on_epoch_end=epochs.write,
            should_stop=lambda: jobs.cancel_requested(job.experiment_id),
            interrupted=lambda: stop_requested.is_set() or heartbeat.lost.is_set(),
            resume=job.resume,
            on_split=lambda train_count, validation_count: jobs.record_split(job, train_count, validation_count),
            on_content_hash=lambda sha256: jobs.record_content_hash(job, sha256, host),
            on_progress=lambda epoch, batch, batches, loss, accuracy: events.publish(
                job.experiment_id,
                job.sweep_id,
                "progress",
                {"epoch": epoch, "batch": batch, "batches": batches, "loss": loss, "accuracy": accuracy},
            ),
            progress_every_s=get_settings().progress_interval_s,
        )
        epochs.flush()  # every finished epoch is stored before the job's final state is
        if heartbeat.lost.is_set():
            raise jobs.Superseded(f"experiment {job.experiment_id}: attempt {job.attempt} lost its lease")
        if result.stopped is StopReason.INTERRUPTED:
            # Back to waiting: its `queued` event nudges the dispatcher, which releases it to a free slot.
            jobs.give_back(job, "its worker was shutting down; the next attempt resumes after the last finished epoch")
            return "interrupted"
        if result.stopped is StopReason.CANCELLED:
            jobs.finish_cancelled(job, result.best_epoch, result.best_val_accuracy)
            return "cancelled"
        assert result.evaluation is not None and result.checkpoint is not None and result.best_epoch is not None
        jobs.finish_succeeded(
            job,
            result.best_epoch,
            result.best_val_accuracy,
            result.evaluation,
            result.checkpoint,
            stopped_early_at=result.stopped_early_at,
        )
        return "succeeded"


@app.task(name=DATASET_TASK_NAME)
def prepare_dataset(dataset_id: int) -> str:
    """Prepare uploaded dataset version `dataset_id` if it is `processing` (worker/datasets.py); how it ended."""
    # Imported in the child that runs it: the prefork parent stays free of the image decoders.
    from worker.datasets import prepare

    outcome = prepare(dataset_id)
    log.info("dataset version %s: %s", dataset_id, outcome)
    return outcome
