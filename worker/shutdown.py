"""Graceful stop: a worker told to stop (SIGTERM, Ctrl-C) gives its running job back instead of losing it.

Celery's warm shutdown waits for the running task, which may train for hours. So the parent, when it
starts shutting down, sends SIGINT to its pool children (which Celery makes them ignore, and which we
handle instead); a child training a job then stops after the current batch, drops that unfinished
epoch, and gives the job back to the queue, where the next attempt resumes after the last finished
epoch. Ctrl-C in a terminal sends SIGINT to the children directly, with the same effect.
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


def _on_sigint(_signum: int, _frame: FrameType | None) -> None:
    stop_requested.set()


def install_child_handler(**_kwargs: Any) -> None:
    """In each pool child (worker_process_init): SIGINT means 'give the job back at the next batch'."""
    signal.signal(signal.SIGINT, _on_sigint)


def tell_children_to_stop(**_kwargs: Any) -> None:
    """In the worker's main process (worker_shutting_down): pass the stop on to every pool child."""
    from billiard.process import active_children

    for child in active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.kill(child.pid, signal.SIGINT)
