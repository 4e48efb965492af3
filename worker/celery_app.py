"""The Celery app, configured for long training jobs.

Start a worker with:  celery -A worker.celery_app worker --queues training --concurrency 1

Nothing here imports TensorFlow: the prefork parent must stay free of it (TensorFlow is not
fork-safe), so each job's child process imports it inside the task.
"""

from __future__ import annotations

from celery import Celery, signals

from config import get_settings
from worker.lifecycle import exit_unless_dependencies_answer, import_tensorflow_while_idle, pin_child_to_one_gpu
from worker.roles import forget_parent_connections, start_role_keepers, stop_role_keepers
from worker.shutdown import install_child_handler, tell_children_to_stop

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
    # Acknowledge after the job, and requeue it if the child dies (OOM kill, power loss). A redelivered
    # message only ever claims a *queued* job: who runs a job is decided by the attempt fence and the
    # lease in the database (worker/jobs.py, upkeep/reaper.py), never by the broker's delivery flags.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=settings.task_time_limit_s,
    task_soft_time_limit=settings.task_soft_time_limit_s,
    # On Redis, a lost broker connection requeues every unacked message while its task may still run:
    # cancel such tasks instead of letting two copies train. Correctness does not depend on it (fencing).
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # Redis redelivers unacknowledged messages after this; it must outlast the longest job.
    broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

signals.worker_init.connect(exit_unless_dependencies_answer)
# The reaper runs as a role in the main process (worker/roles.py), not as a task: no beat, no queue of its own.
signals.worker_ready.connect(start_role_keepers)
signals.worker_shutdown.connect(stop_role_keepers)
signals.worker_process_init.connect(forget_parent_connections)  # first: the child's own connections from here
signals.worker_process_init.connect(pin_child_to_one_gpu)  # before TensorFlow is imported, below
signals.worker_process_init.connect(import_tensorflow_while_idle)
signals.worker_process_init.connect(install_child_handler)
signals.worker_shutting_down.connect(tell_children_to_stop)
