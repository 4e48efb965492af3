"""Each API process takes the service's roles (the reaper, the dispatcher) while it runs.

It also listens for the changes its serving caches must hear of (infra/invalidation.py), for as long as it runs:
until the listener has subscribed, those caches stay empty and every prediction reads the database.

The keeper (upkeep/keeper.py) is a daemon thread of its own: a pass is blocking database work and never runs on
the event loop. It starts with the app's lifespan and gives the roles up when the process stops. Jobs it must
publish go out by task name (infra/task_publisher.py): the API never imports the worker's code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from config import get_settings
from infra import invalidation
from infra.task_publisher import enqueue_dataset, enqueue_training
from models.base import utcnow
from upkeep.dispatcher import dispatcher_keeper
from upkeep.keeper import RoleKeeper
from upkeep.reaper import reaper_keeper


@asynccontextmanager
async def take_roles(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan: note when this process started (the grace /health gives passes), keep the roles while it runs."""
    app.state.started_at = utcnow()
    changes = invalidation.listener().start()
    keepers: list[RoleKeeper] = []
    if get_settings().take_roles:
        keepers = [
            reaper_keeper(enqueue_training, "api", enqueue_dataset).start(),
            dispatcher_keeper(enqueue_training, "api").start(),
        ]
    try:
        yield
    finally:
        for keeper in keepers:
            await asyncio.to_thread(keeper.stop)  # joins the thread: off the loop
        await asyncio.to_thread(changes.stop)
