"""The reaper as a role: its lease on the real database, the keeper that holds it, and what /health and /metrics say.

The lease (models/roles.py) must never be held by two processes at once and must pass on when its holder goes
silent; the keeper (upkeep/keeper.py) runs one pass per interval and survives every failure; /health turns 503 once
no pass ran for three intervals; the container healthcheck stops its process then. The real processes taking the
role over from a killed holder are in tests/test_role_takeover.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE
from epochal import healthcheck
from models import RoleLease
from models.base import utcnow
from models.db import session_scope
from models.roles import PASS_HISTORY, acquire_or_renew, read_role, recent_passes, record_pass, release
from tests.support import ROOT
from tests.test_metrics import scrape, value
from upkeep.keeper import RoleKeeper, holder_name, pid_of
from upkeep.reaper import REAPER_ROLE
from upkeep.watch import STALLED_AFTER_INTERVALS, watched_roles

ROLE = "test-role"


def hold(holder: str, ttl_s: float = 5, now_offset_s: float = 0) -> bool:
    with session_scope() as session:
        now = utcnow() + timedelta(seconds=now_offset_s)
        return acquire_or_renew(session, ROLE, holder, ttl_s, now) is not None


def test_two_holders_never_both_hold_the_role_and_an_expired_lease_is_taken_over(db: str) -> None:
    assert hold("a@host:1")
    assert not hold("b@host:2")  # a's lease runs
    assert hold("a@host:1")  # a renews it
    # a goes silent: once its lease ran out, b takes the role, and a does not get it back until b's runs out.
    assert hold("b@host:2", now_offset_s=6)
    assert not hold("a@host:1", now_offset_s=6)
    with session_scope() as session:
        state = read_role(session, ROLE)
    assert state is not None and state.holder == "b@host:2"


def test_a_holder_cut_off_inside_its_renewal_keeps_the_role_from_nobody_for_long(db: str) -> None:
    # Its host's link went down between the renewal's statements: the transaction stays open on the server, holding
    # the row. Unbounded, every other keeper waited behind it for as long as the server kept the session (minutes).
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from models.db import get_engine

    if get_engine().dialect.name != "postgresql":
        pytest.skip("SQLite has no row locks for a cut-off holder to keep")
    lease_s = 1.0
    assert hold("a@host:1", ttl_s=lease_s)
    cut_off = Session(get_engine())
    assert acquire_or_renew(cut_off, ROLE, "a@host:1", lease_s) is not None  # never committed, never closed
    taken: list[str] = []

    def take_over() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not taken:
            try:
                if hold("b@host:2", ttl_s=lease_s):
                    taken.append("b@host:2")
            except DBAPIError:  # the row was still locked for a lease: the keeper's next tick tries again
                time.sleep(0.2)

    began = time.monotonic()
    contender = threading.Thread(target=take_over, daemon=True)
    contender.start()
    contender.join(20)
    assert taken == ["b@host:2"], "the other keeper never got past the cut-off holder's open transaction"
    assert time.monotonic() - began < 10  # within a few leases (the server ends the idle session after one)
    with contextlib.suppress(DBAPIError):
        cut_off.rollback()
    cut_off.close()


def test_a_released_role_is_taken_at_once(db: str) -> None:
    assert hold("a@host:1")
    with session_scope() as session:
        assert release(session, ROLE, "a@host:1")
        assert not release(session, ROLE, "b@host:2")  # only the holder gives it up
    assert hold("b@host:2")


def test_of_many_racing_for_a_new_role_exactly_one_holds_it(db: str) -> None:
    # The first calls for a role race to create its row: the losers must get "not yours", never an error.
    start, won, errors = threading.Barrier(8), [], []

    def race(n: int) -> None:
        start.wait(timeout=10)
        try:
            if hold(f"racer@host:{n}"):
                won.append(n)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and len(won) == 1, (won, errors)


def test_passes_are_recorded_on_the_row_and_in_a_short_history(db: str) -> None:
    assert hold("a@host:1")
    began = utcnow()
    with session_scope() as session:
        for n in range(PASS_HISTORY + 5):
            record_pass(session, ROLE, "a@host:1", began, began + timedelta(seconds=n), f"pass {n}")
    with session_scope() as session:
        state = read_role(session, ROLE)
        history = recent_passes(session, ROLE)
    assert state is not None and state.passes == PASS_HISTORY + 5 and state.last_pass_by == "a@host:1"
    assert state.last_pass_at == began + timedelta(seconds=PASS_HISTORY + 4)
    assert [p.summary for p in history] == [f"pass {n}" for n in range(PASS_HISTORY + 4, 4, -1)]


def test_the_keeper_runs_one_pass_per_interval_and_only_while_it_holds_the_role(db: str) -> None:
    ran: list[str] = []

    def duty(name: str) -> Callable[[], str]:
        def run() -> str:
            ran.append(name)
            return f"{name} did it"

        return run

    keeper = RoleKeeper(ROLE, duty("pass"), 10, holder_name("first"))
    other = RoleKeeper(ROLE, duty("other"), 10, holder_name("second@elsewhere"))
    now = utcnow()
    assert keeper.tick(now) and ran == ["pass"]
    assert not keeper.tick(now + timedelta(seconds=3))  # held, but the pass is not due yet
    assert not other.tick(now + timedelta(seconds=5))  # not its role
    assert keeper.tick(now + timedelta(seconds=10)) and ran == ["pass", "pass"]
    # The holder went silent: its lease (one interval) ran out and the other takes the role and its passes.
    assert other.tick(now + timedelta(seconds=21)) and ran == ["pass", "pass", "other"]
    with session_scope() as session:
        state = read_role(session, ROLE)
    assert state is not None and state.last_pass_by == other.holder and pid_of(other.holder) > 0
    assert other.holder.startswith("second@elsewhere:")


def test_the_keeper_survives_a_failing_pass_and_a_database_that_fails(db: str) -> None:
    calls: list[float] = []

    def failing() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("the database went away mid-pass")
        return "fine again"

    keeper = RoleKeeper(ROLE, failing, 0.3, holder_name("flaky")).start()
    try:
        deadline = time.monotonic() + 20
        while len(calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        keeper.stop()
    assert len(calls) >= 4, calls  # it kept ticking after two failed passes
    with session_scope() as session:
        state = read_role(session, ROLE)
    assert state is not None and state.last_pass_by == keeper.holder
    assert state.expires_at <= utcnow()  # stopping gave the role up


def record_pass_of(role: str, age_s: float) -> None:
    when = utcnow() - timedelta(seconds=age_s)
    with session_scope() as session:
        assert acquire_or_renew(session, role, "api@testhost:4242", 60, when) is not None
        record_pass(session, role, "api@testhost:4242", when, when)


def record_reaper_pass(age_s: float) -> None:
    record_pass_of(REAPER_ROLE, age_s)


@pytest.mark.parametrize("role", [REAPER_ROLE, DISPATCHER_ROLE])
def test_health_is_503_when_a_roles_passes_stopped_for_three_intervals(client: TestClient, role: str) -> None:
    watched = {w.role: w for w in watched_roles()}
    limit_s = STALLED_AFTER_INTERVALS * watched[role].interval_s
    # Just started, no pass yet: the grace.
    assert client.get("/health").status_code == 200
    app = client.app
    longest = max(w.interval_s for w in watched.values())
    app.state.started_at = utcnow() - timedelta(seconds=STALLED_AFTER_INTERVALS * longest + 1)  # type: ignore[attr-defined]
    for other in set(watched) - {role}:
        record_pass_of(other, age_s=1)
    never = client.get("/health")
    assert never.status_code == 503 and never.json()["status"] == "degraded"
    assert never.json()[role]["ok"] is False and "ever recorded" in never.json()[role]["detail"]
    assert watched[role].setting in never.json()[role]["detail"]  # what to look at
    record_pass_of(role, age_s=1)
    fresh = client.get("/health")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()[role] == {"ok": True, "detail": fresh.json()[role]["detail"]}
    assert "api@testhost:4242" in fresh.json()[role]["detail"]
    record_pass_of(role, age_s=limit_s + 5)
    stale = client.get("/health")
    assert stale.status_code == 503 and stale.json()[role]["ok"] is False
    assert f"no {role} pass for" in stale.json()[role]["detail"]
    assert all(stale.json()[other]["ok"] for other in set(watched) - {role})
    assert stale.json()["database"]["ok"] is True and stale.json()["broker"]["ok"] is True
    documented = client.get("/openapi.json").json()["paths"]["/health"]["get"]["responses"]
    assert role in documented["503"]["description"]


def test_metrics_export_the_age_of_the_last_pass_and_who_holds_the_role(client: TestClient) -> None:
    record_reaper_pass(age_s=7)
    families = scrape(client)
    age = value(families["epochal_role_last_pass_age_seconds"], role=REAPER_ROLE)
    assert 7 <= age < 60
    assert value(families["epochal_role_holder"], role=REAPER_ROLE, holder="api@testhost:4242") == 1.0
    with session_scope() as session:  # the holder's lease ran out: it holds nothing any more
        session.execute(update(RoleLease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert value(scrape(client)["epochal_role_holder"], role=REAPER_ROLE, holder="api@testhost:4242") == 0.0


@pytest.fixture
def container_main(monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for a container's main process, which the healthcheck may stop: a sleeping child, started longer
    ago than the grace of a short reaper interval."""
    monkeypatch.setattr(get_settings(), "reaper_interval_s", 0.2)
    process = subprocess.Popen(["sleep", "60"])
    time.sleep(STALLED_AFTER_INTERVALS * 0.2 + 0.3)
    yield process
    process.kill()
    process.wait(timeout=10)


def test_the_healthcheck_stops_the_container_main_when_passes_stopped(
    db: str, container_main: subprocess.Popen[bytes]
) -> None:
    record_reaper_pass(age_s=0)
    assert healthcheck.main(["--restart-on-stall", "--pid", str(container_main.pid)]) == 0
    assert container_main.poll() is None
    record_reaper_pass(age_s=600)
    assert healthcheck.main(["--restart-on-stall", "--pid", str(container_main.pid)]) == 1
    assert container_main.wait(timeout=10) == -15  # SIGTERM: the container exits and `restart` starts it again


def test_the_healthcheck_stops_the_container_main_when_dispatching_stopped(
    db: str, container_main: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reaping goes on but nothing releases queued jobs to the workers: as stuck a service, restarted the same way.
    monkeypatch.setattr(get_settings(), "dispatch_interval_s", 0.2)
    record_pass_of(REAPER_ROLE, age_s=0)
    record_pass_of(DISPATCHER_ROLE, age_s=0)
    assert healthcheck.main(["--restart-on-stall", "--pid", str(container_main.pid)]) == 0
    assert container_main.poll() is None
    record_pass_of(DISPATCHER_ROLE, age_s=600)
    assert healthcheck.main(["--restart-on-stall", "--pid", str(container_main.pid)]) == 1
    assert container_main.wait(timeout=10) == -15


FORK_MID_TICK = """
import os, sys, threading, time
from sqlalchemy import event, text
from models.db import get_engine, own_engine_after_fork, session_scope
from upkeep.keeper import RoleKeeper
from worker.roles import never_fork_mid_tick

never_fork_mid_tick()  # what a worker's main does before its keeper starts
open_connections = []
event.listen(get_engine(), "checkout", lambda *_: open_connections.append(1))
event.listen(get_engine(), "checkin", lambda *_: open_connections.pop())
in_pass, pass_done = threading.Event(), threading.Event()

def slow_pass():
    with session_scope() as session:  # a connection open in the middle of the tick
        session.execute(text("SELECT 1"))
        in_pass.set()
        time.sleep(0.5)
    pass_done.set()
    return "slow"

keeper = RoleKeeper("fork-test", slow_pass, 3.0, "fork-test@here:1")
threading.Thread(target=keeper.tick).start()
assert in_pass.wait(20), "the pass never started"
read, write = os.pipe()
if os.fork() == 0:  # as billiard forks a training child, from the main thread while the keeper ticks
    inherited = f"{len(open_connections)} {int(pass_done.is_set())}"
    own_engine_after_fork()
    with session_scope() as session:
        usable = session.execute(text("SELECT 1")).scalar_one()
    os.write(write, f"{inherited} {usable}".encode())
    os._exit(0)
os.close(write)
print(os.read(read, 100).decode())
"""


def test_a_worker_main_never_forks_a_child_while_its_keeper_has_a_connection_open(db: str) -> None:
    # SQLite forbids carrying an open connection across fork(), and a server's socket shared by two processes mixes
    # their statements: the prefork parent, whose keeper thread uses the database, must fork only between ticks.
    env = {**os.environ, "EPOCHAL_DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", FORK_MID_TICK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    open_at_fork, pass_done_at_fork, usable = run.stdout.split()
    assert (open_at_fork, pass_done_at_fork) == ("0", "1"), "the child was forked in the middle of a tick"
    assert usable == "1", "the child's own engine answers"
