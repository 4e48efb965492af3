"""The worker's main process takes the service's roles (the reaper) while it is up: upkeep/keeper.py does the work.

Started when the worker is ready and stopped (the role given up) when it shuts down. The keeper runs in the
prefork parent, which forks a child per job while the keeper's thread may be mid-query: the child must never
touch the parent's pooled connections, so it drops them first thing (`forget_parent_connections`). The broker
side is Celery's: a forked child discards the parent's producer pool without closing it.
"""

from __future__ import annotations

import logging
from typing import Any

from config import TRAIN_TASK_NAME, get_settings
from models.db import get_engine
from upkeep.keeper import RoleKeeper
from upkeep.reaper import reaper_keeper

log = logging.getLogger(__name__)

_keepers: list[RoleKeeper] = []


def start_role_keepers(sender: Any = None, **_kwargs: Any) -> None:
    """worker_ready: in the main process, once it consumes; the holder is named after the worker's node."""
    if not get_settings().take_roles or sender is None:
        return
    app = sender.app

    def publish(experiment_id: int, queue: str) -> None:
        app.send_task(TRAIN_TASK_NAME, args=[experiment_id], queue=queue)

    _keepers.append(reaper_keeper(publish, sender.hostname or "worker").start())


def stop_role_keepers(**_kwargs: Any) -> None:
    """worker_shutdown: give the roles up, so another process takes them now rather than a lease later."""
    while _keepers:
        _keepers.pop().stop()


def forget_parent_connections(**_kwargs: Any) -> None:
    """worker_process_init, first: drop the pool inherited from the parent without closing its connections.

    Closing them would end the parent's sessions on the server (PostgreSQL) or its SQLite handles; a pool lock the
    keeper's thread held at the fork is dropped with the pool.
    """
    get_engine().dispose(close=False)
