"""The role keeper: a daemon thread that takes a role when it is free, holds it, and runs its pass once per interval.

Every tick (a third of the interval) it takes or renews the role's lease (models/roles.py) for one interval; the
holder runs the role's pass when the last one recorded is an interval old, and records it. When the holder dies,
its lease runs out within an interval and the next keeper to tick takes the role, so passes go on after about
one interval and a third. Nothing stops the thread but `stop()`: an exception (the database down, a pass that
failed) is logged and the next tick tries again.

The thread only ever touches the database and the broker: never TensorFlow, which a worker's prefork parent must
not load. A tick holds `TICKING` from start to end; a process that forks while its keeper runs (a worker's main)
takes it around every fork and keeps no connection open between sessions, so no child is ever forked with a
connection of the keeper's open (worker/roles.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from models import roles
from models.base import utcnow
from models.db import session_scope

log = logging.getLogger(__name__)

# Ticks per interval: the lease (one interval) survives two missed ticks, and a free role is taken a third of an
# interval after its lease ran out at worst.
TICKS_PER_INTERVAL = 3

# Held for the whole of a tick, by whichever keeper of this process ticks: see worker/roles.py for who waits on it.
TICKING = threading.Lock()

Pass = Callable[[], str]  # runs one pass; returns what it did, in a few words, for the record
# Blocks up to the given seconds between ticks; True when something asked for a pass now (the dispatcher's nudges).
Wake = Callable[[float], bool]


def holder_name(name: str) -> str:
    """`<name>@<host>:<pid>`: unique among live processes, and what an operator needs to find the holder."""
    host = name if "@" in name else f"{name}@{socket.gethostname()}"
    return f"{host}:{os.getpid()}"


def pid_of(holder: str) -> int:
    """The process id in a holder name (see holder_name)."""
    return int(holder.rsplit(":", 1)[1])


class RoleKeeper:
    """Holds `role` whenever it is free and runs `duty` once per `interval_s` while holding it.

    With `wake`, the wait between ticks is `wake`'s: when it says so, the next tick runs a pass even if none is due.
    """

    def __init__(self, role: str, duty: Pass, interval_s: float, holder: str, wake: Wake | None = None) -> None:
        self.role, self.duty, self.interval_s, self.holder = role, duty, interval_s, holder
        self.wake = wake
        self.tick_s = interval_s / TICKS_PER_INTERVAL
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.holding = False

    def tick(self, now: datetime | None = None, *, force: bool = False) -> bool:
        """Take or renew the role; run and record a pass if one is due (or `force`d). True when a pass ran."""
        with TICKING:
            return self._tick(now or utcnow(), force)

    def _tick(self, now: datetime, force: bool = False) -> bool:
        with session_scope() as session:
            state = roles.acquire_or_renew(session, self.role, self.holder, self.interval_s, now)
        if (state is not None) != self.holding:
            log.warning("%s %s the %s role", self.holder, "took" if state else "lost", self.role)
        self.holding = state is not None
        if state is None:
            return False
        # Due a little early rather than late: ticks land anywhere within their third of an interval.
        early = timedelta(seconds=self.interval_s - self.tick_s / 2)
        if not force and state.last_pass_at is not None and now < state.last_pass_at + early:
            return False
        started = utcnow()
        summary = self.duty()
        with session_scope() as session:
            roles.bound_role_transaction(session, self.interval_s)
            roles.record_pass(session, self.role, self.holder, started, utcnow(), summary[:200])
        return True

    def run(self) -> None:
        """Tick until stopped; nothing that goes wrong in a tick ends the loop."""
        woken = False
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                self.tick(force=woken)
            except Exception:
                log.exception("the %s keeper's tick failed; the next one tries again", self.role)
            woken = self._wait(max(0.0, self.tick_s - (time.monotonic() - began)))

    def _wait(self, seconds: float) -> bool:
        if self.wake is None:
            self._stopping.wait(seconds)
            return False
        return self.wake(seconds) and not self._stopping.is_set()

    def start(self) -> RoleKeeper:
        self._thread = threading.Thread(target=self.run, name=f"{self.role}-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10) -> None:
        """End the loop and give the role up at once, so another process need not wait for the lease to run out."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        try:
            with TICKING, session_scope() as session:
                roles.bound_role_transaction(session, self.interval_s)
                roles.release(session, self.role, self.holder)
        except Exception as exc:  # the lease then simply runs out
            log.warning("could not give the %s role up (%s); it is free once its lease runs out", self.role, exc)
