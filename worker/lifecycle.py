"""Worker start-up: check the dependencies before taking jobs, and give each child process one GPU."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Any

from celery import Celery
from sqlalchemy import text

from config import get_settings
from infra.redaction import install_log_redaction, redact_secrets, redact_url
from infra.version import service_version
from models.db import get_engine

log = logging.getLogger(__name__)
# Loaded by the worker's Celery app: every record the worker (and Flower) logs from here on is redacted.
install_log_redaction()


def check_dependencies(app: Celery) -> list[str]:
    """What is wrong with the database and broker settings, as messages naming each variable; empty if fine."""
    settings = get_settings()
    problems = []
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        problem = f"cannot reach {redact_url(settings.database_url)} ({type(exc).__name__}: {exc})"
        problems.append(f"EPOCHAL_DATABASE_URL: {redact_secrets(problem)}")
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5, timeout=3)
    except Exception as exc:
        problem = f"cannot reach {redact_url(settings.broker_url)} ({type(exc).__name__}: {exc})"
        problems.append(f"EPOCHAL_BROKER_URL: {redact_secrets(problem)}")
    return problems


def exit_unless_dependencies_answer(sender: Any = None, **_kwargs: Any) -> None:
    """Exit with a clear message instead of hanging while the database or broker is unreachable."""
    app = sender.app if sender is not None else None
    if app is None:
        return
    problems = check_dependencies(app)
    if problems:
        for problem in problems:
            log.critical(problem)
        print("epochal worker: cannot start:\n  " + "\n  ".join(problems), file=sys.stderr, flush=True)
        # os._exit: Celery would otherwise catch SystemExit here and keep retrying the broker forever.
        os._exit(1)
    get_engine().dispose()  # children must open their own connections, never share the parent's
    service_version()  # worked out at start, before the pool forks: each child inherits what the worker started as


def gpu_for_child(index: int, gpus: list[str]) -> str | None:
    """The GPU id child number `index` gets: round-robin over `gpus`, None when no list is set."""
    return gpus[index % len(gpus)] if gpus else None


def worker_gpu_ids() -> list[str]:
    """The GPUs this worker may use: EPOCHAL_WORKER_GPUS, else CUDA_VISIBLE_DEVICES, else what nvidia-smi lists.

    Asking nvidia-smi instead of TensorFlow keeps TensorFlow out of the process until a job runs.
    """
    configured = get_settings().gpu_ids
    if configured:
        return configured
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [gpu.strip() for gpu in inherited.split(",") if gpu.strip()]
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []  # no NVIDIA driver: a CPU worker
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def pin_child_to_one_gpu(**_kwargs: Any) -> None:
    """Show a prefork child exactly one of the worker's GPUs, chosen round-robin by its process index."""
    from billiard.process import current_process

    gpu = gpu_for_child(getattr(current_process(), "index", 0) or 0, worker_gpu_ids())
    if gpu is not None:
        # Set before the task imports TensorFlow, which reads it once at start-up.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu


def import_tensorflow_while_idle(**_kwargs: Any) -> None:
    """In a training child (worker_process_init): import TensorFlow now, so the next job does not wait for it.

    Safe after the fork (the parent stays TensorFlow-free); a thread, so the child is ready for work at once
    (a job that arrives first simply waits on the import lock). Importing starts no device: GPU settings
    still apply when the job calls training.device.setup_device.
    """
    threading.Thread(target=_import_tensorflow, name="import-tensorflow", daemon=True).start()


def _import_tensorflow() -> None:
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except Exception:  # the job's own import reports it properly
        log.exception("importing TensorFlow ahead of the next job failed")
