"""The reaper role survives the death of whichever process holds it: real API and worker processes, kill -9.

The service runs with the short settings of tests/support.py (a reaper pass every second, so a lease of a second
on the role). The holder is found through the role's row, as an operator would, and killed outright; the other
process must take the role within about an interval and settle a job whose attempt's lease had expired. Then the
killed one comes back, the new holder is killed in turn, and the role goes back the other way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import psutil
import pytest
from sqlalchemy import update

from domain.lifecycle import Status
from models import Experiment
from models.base import utcnow
from models.db import session_scope
from models.roles import RoleState, read_role
from tests.support import FAST_RECOVERY, Service, running_service
from upkeep.keeper import pid_of
from upkeep.reaper import REAPER_ROLE
from worker import jobs

pytestmark = pytest.mark.e2e

QUEUE = "e2e-roles"
NOBODY = "e2e-roles-nobody"  # the stranded jobs' queue: no worker takes them, so only the reaper moves them
INTERVAL_S = float(FAST_RECOVERY["EPOCHAL_REAPER_INTERVAL_S"])
# About one interval (the lease) plus a tick, with room for a busy machine; the measured time is printed.
TAKEOVER_DEADLINE_S = INTERVAL_S + 8


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("roles"), QUEUE, ["keeper"], queues=[NOBODY]) as running:
        yield running


def role() -> RoleState | None:
    with session_scope() as session:
        return read_role(session, REAPER_ROLE)


def wait_for(what: str, check: object, deadline_s: float, service: Service) -> object:
    assert callable(check)
    deadline = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}\n{service.logs()}")
        time.sleep(0.05)


def running_job(service: Service) -> int:
    """A job claimed by a worker that no process of this service runs (it is about to vanish)."""
    with service.http() as http:
        response = http.post("/experiments", json={"dataset": "mnist", "epochs": 2, "queue": NOBODY})
    assert response.status_code == 202, response.text
    experiment_id = int(response.json()["id"])
    assert jobs.claim(experiment_id, "vanished@host") is not None
    return experiment_id


def strand(experiment_id: int) -> None:
    """Its worker died without a word: nobody renews the lease, which has now expired."""
    with session_scope() as session:
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def status_of(experiment_id: int) -> Status:
    with session_scope() as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None
        return experiment.status


def kill_holder(service: Service) -> tuple[str, str]:
    """kill -9 the process the role's row names (and its pool child, if it is a worker); (holder, its name here)."""
    state = wait_for("a holder with a pass", lambda: (s := role()) and s.last_pass_at and s, 30, service)
    assert isinstance(state, RoleState)
    pid = pid_of(state.holder)
    name = next(name for name, process in service.processes if process.pid == pid and process.poll() is None)
    victim = psutil.Process(pid)
    for process in [victim, *victim.children(recursive=True)]:
        process.kill()
    service.process(name).wait(timeout=10)
    return state.holder, name


def test_the_role_passes_on_when_its_holder_is_killed_and_back_when_the_other_is(service: Service) -> None:
    takers = []
    for round_number in (1, 2):
        experiment_id = running_job(service)
        holder, name = kill_holder(service)
        killed_at = time.monotonic()
        strand(experiment_id)

        def taken_over(old: str = holder) -> RoleState | None:
            state = role()
            return state if state and state.last_pass_by and state.last_pass_by != old else None

        state = wait_for("another process to take the role", taken_over, TAKEOVER_DEADLINE_S, service)
        assert isinstance(state, RoleState)
        takeover_s = time.monotonic() - killed_at
        wait_for(
            "the stranded job to be settled",
            lambda job=experiment_id: status_of(job) is Status.QUEUED,
            TAKEOVER_DEADLINE_S,
            service,
        )
        settled_s = time.monotonic() - killed_at
        print(f"round {round_number}: killed {holder}; {state.holder} took over in {takeover_s:.1f} s, "
              f"settled the stranded job {settled_s:.1f} s after the kill (interval {INTERVAL_S:g} s)")  # fmt: skip
        assert state.holder != holder and state.expires_at > utcnow() - timedelta(seconds=INTERVAL_S)
        takers.append(state.holder.split("@")[0])
        # The killed process comes back (serve or Compose would start it again) and is a candidate once more.
        if round_number == 2:
            break
        if name == "api":
            service.start_api()
        else:
            service.start_worker(name)
            service.wait_for_workers(1)
    assert sorted(takers) == ["api", "keeper"]  # the API's keeper and the worker's each took it over once
