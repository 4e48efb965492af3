"""Thin Celery tasks: claim the job, call `training`, persist what it returns."""

from __future__ import annotations

import logging
import tempfile
import traceback
from pathlib import Path

from celery import Task

from config import TRAIN_TASK_NAME, get_settings
from worker import jobs
from worker.celery_app import app

log = logging.getLogger(__name__)


def _error_text(exc: BaseException) -> str:
    # The first line is what a user reads; the traceback is what a maintainer needs.
    return f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"


@app.task(name=TRAIN_TASK_NAME, bind=True)
def train_experiment(self: Task, experiment_id: int) -> str:
    """Train experiment `experiment_id` if it is still queued; return its final status."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    spec = jobs.claim(experiment_id, worker=self.request.hostname or "unknown", redelivered=redelivered)
    if spec is None:
        log.info("experiment %s is not queued any more; nothing to do", experiment_id)
        return "skipped"
    log.info("experiment %s claimed by %s", experiment_id, self.request.hostname)
    try:
        # TensorFlow is imported here, in the job's own child process, never in the prefork parent.
        from training.device import setup_device
        from training.runner import run_experiment

        device = setup_device(spec.mixed_precision)
        jobs.record_device(experiment_id, device.name, device.warnings)
        with tempfile.TemporaryDirectory(prefix=f"epochal-{experiment_id}-") as workdir:
            result = run_experiment(
                spec,
                get_settings().data_dir,
                Path(workdir),
                on_epoch_end=lambda epoch: jobs.record_epoch(experiment_id, epoch),
                should_stop=lambda: jobs.cancel_requested(experiment_id),
            )
            if result.cancelled:
                jobs.finish_cancelled(experiment_id, result.best_epoch, result.best_val_accuracy)
                return "cancelled"
            assert result.evaluation is not None and result.checkpoint is not None and result.best_epoch is not None
            jobs.finish_succeeded(
                experiment_id,
                result.best_epoch,
                result.best_val_accuracy,
                result.evaluation,
                result.checkpoint,
            )
            return "succeeded"
    except Exception as exc:
        log.exception("experiment %s failed", experiment_id)
        jobs.finish_failed(experiment_id, _error_text(exc))
        return "failed"
