"""The Celery app, configured for long training jobs.

Start a worker with:  celery -A worker.celery_app worker --queues training --concurrency 1

Nothing here imports TensorFlow: the prefork parent must stay free of it (TensorFlow is not
fork-safe), so each job's child process imports it inside the task.
"""

from __future__ import annotations

from celery import Celery, signals

from config import get_settings
from worker.lifecycle import exit_unless_dependencies_answer, pin_child_to_one_gpu

settings = get_settings()

app = Celery("epochal", broker=settings.broker_url, include=["worker.tasks"])
app.conf.update(
    # JSON only: a message can never smuggle a pickled object into a worker.
    task_serializer="json",
    accept_content=["json"],
    # The database row is the source of truth for a job's state; no result backend.
    task_ignore_result=True,
    task_default_queue=settings.default_queue,
    # One job per child process, fetched one at a time: a long job never holds another hostage.
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=1,
    # Acknowledge after the job, and requeue it if the child dies (OOM kill, power loss).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=settings.task_time_limit_s,
    task_soft_time_limit=settings.task_time_limit_s - 60,
    # Redis redelivers unacknowledged messages after this; it must outlast the longest job.
    broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

signals.worker_init.connect(exit_unless_dependencies_answer)
signals.worker_process_init.connect(pin_child_to_one_gpu)
