"""The worker's main process takes the service's roles (the reaper, the dispatcher) while it is up.

upkeep/keeper.py does the work.

Started when the worker is ready and stopped (the role given up) when it shuts down. The keeper runs in the
prefork parent, which forks a child per job while the keeper's thread works: no child may be forked with one of
the keeper's connections open (SQLite forbids carrying one across fork(); a server's socket shared by two
processes mixes their statements). So the parent keeps no connection open between sessions, every fork waits
for a tick in progress to end (`upkeep.keeper.TICKING`), and the child starts an engine of its own
(`forget_parent_connections`). The broker side is Celery's: a forked child discards the parent's producer pool
without closing it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from config import DATASET_TASK_NAME, TRAIN_TASK_NAME, get_settings
from models.db import hold_no_idle_connections, own_engine_after_fork
from upkeep.dispatcher import dispatcher_keeper
from upkeep.keeper import TICKING, RoleKeeper
from upkeep.reaper import reaper_keeper

log = logging.getLogger(__name__)

_keepers: list[RoleKeeper] = []


def start_role_keepers(sender: Any = None, **_kwargs: Any) -> None:
    """worker_ready: in the main process, once it consumes; the holder is named after the worker's node."""
    if not get_settings().take_roles or sender is None:
        return
    app = sender.app
    never_fork_mid_tick()

    def publish(experiment_id: int, queue: str) -> None:
        # Explicit None: this app has the task registered, and Celery would otherwise write this worker's time limits
        # into the message, which the worker that runs it obeys over its own (EPOCHAL_TASK_TIME_LIMIT_S is per worker).
        app.send_task(TRAIN_TASK_NAME, args=[experiment_id], queue=queue, time_limit=None, soft_time_limit=None)

    def publish_dataset(dataset_id: int, queue: str) -> None:
        app.send_task(DATASET_TASK_NAME, args=[dataset_id], queue=queue, time_limit=None, soft_time_limit=None)

    name = sender.hostname or "worker"
    _keepers.extend([reaper_keeper(publish, name, publish_dataset).start(), dispatcher_keeper(publish, name).start()])


def stop_role_keepers(**_kwargs: Any) -> None:
    """worker_shutdown: give the roles up, so another process takes them now rather than a lease later."""
    while _keepers:
        _keepers.pop().stop()


def never_fork_mid_tick() -> None:
    """Before this process's keeper starts: no idle connections, and every fork from here on waits out a tick."""
    global _fork_guarded
    hold_no_idle_connections()
    if not _fork_guarded:  # a hook cannot be unregistered: once per process
        os.register_at_fork(before=TICKING.acquire, after_in_parent=TICKING.release, after_in_child=TICKING.release)
        _fork_guarded = True


_fork_guarded = False


def forget_parent_connections(**_kwargs: Any) -> None:
    """worker_process_init, first: an engine of the child's own, the parent's left alone (never closed from here)."""
    own_engine_after_fork()
