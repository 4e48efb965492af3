"""Graceful stop: a worker told to stop (SIGTERM, Ctrl-C) gives its running job back instead of losing it.

Celery's warm shutdown (SIGTERM, or SIGINT from Ctrl-C) waits for the running task, which may train
for hours. So the parent, when it starts shutting down, sends SIGUSR2 to its pool children; a child
training a job then stops after the current batch, drops that unfinished epoch, and gives the job
back to the queue, where the next attempt resumes after the last finished epoch. SIGUSR2 because
billiard sets SIGINT to "ignore" in its children after every initializer, and uses SIGUSR1 for the
soft time limit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

# Set in a pool child when its worker is shutting down.
stop_requested = threading.Event()


STOP_SIGNAL = signal.SIGUSR2


def _on_stop_signal(_signum: int, _frame: FrameType | None) -> None:
    stop_requested.set()


def install_child_handler(**_kwargs: Any) -> None:
    """In each pool child (worker_process_init): SIGUSR2 means 'give the job back at the next batch'."""
    signal.signal(STOP_SIGNAL, _on_stop_signal)


def tell_children_to_stop(**_kwargs: Any) -> None:
    """In the worker's main process (worker_shutting_down): pass the stop on to every pool child."""
    from billiard.process import active_children

    children = active_children()
    log.warning("worker shutting down: asking %d pool processes to give their jobs back", len(children))
    for child in children:
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(child.pid, STOP_SIGNAL)
