"""Fair-share dispatch with the real broker and real worker processes: who starts first, running caps, and a
dispatcher killed outright (kill -9) and started again, which must lose and duplicate nothing.

One service for the module: an API and two workers, each worker serving both test queues. The queues' slots are
set (EPOCHAL_QUEUE_SLOTS): FAIR has one, so its jobs run one at a time in the dispatcher's order; CAP has two.
Only the API takes the roles, so killing the dispatcher's holder kills no training. Jobs are tiny (one epoch of
200 generated images); the order and the overlaps are read from the jobs' own start and end times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import psutil
import pytest
import redis

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE
from infra.events import redis_url
from models.db import session_scope
from models.roles import RoleState, read_role
from tests.support import Service, bearer, new_key, service_env, wait_until_finished
from upkeep.keeper import pid_of

pytestmark = pytest.mark.e2e

FAIR, CAP, KILL = "e2e-fair", "e2e-cap", "e2e-kill"
SLOTS = {FAIR: 1, CAP: 2, KILL: 1}
TINY = {"dataset": "mnist", "epochs": 1, "batch_size": 64, "train_size": 200}
WORKERS = ("alpha", "beta")


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {
        **service_env(FAIR, [CAP, KILL]),
        "EPOCHAL_QUEUE_SLOTS": ",".join(f"{queue}={count}" for queue, count in SLOTS.items()),
        # A released job is claimed in seconds here; a slow child start must not look like a lost message.
        "EPOCHAL_REPUBLISH_AFTER_S": "120",
    }
    running = Service(tmp_path_factory.mktemp("fair"), FAIR, env)
    try:
        for name in WORKERS:
            running.start_worker(name, queue=",".join(SLOTS), env={"EPOCHAL_TAKE_ROLES": "0"})
        running.start_api()
        running.wait_for_workers(len(WORKERS))
        yield running
    finally:
        running.stop()


class DepthWatch:
    """Samples the broker's queue lengths while a test runs: the most messages each queue ever held."""

    def __init__(self, queues: list[str]) -> None:
        self.client = redis.Redis.from_url(redis_url(get_settings().broker_url))
        self.queues, self.most = queues, dict.fromkeys(queues, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for queue in self.queues:
                self.most[queue] = max(self.most[queue], int(self.client.llen(queue)))

    def __enter__(self) -> DepthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def submit(service: Service, key: str, queue: str, repeats: int = 1, **fields: Any) -> list[int]:
    with service.http(key=key) as http:
        response = http.post("/experiments", json={**TINY, "queue": queue, "repeats": repeats, **fields})
        assert response.status_code == 202, response.text
        body = response.json()
        if body["sweep_id"] is None:
            return [body["id"]]
        runs = http.get("/experiments", params={"sweep_id": body["sweep_id"]}).json()["items"]
    return sorted(run["id"] for run in runs)


def finished(service: Service, ids: list[int]) -> dict[int, dict[str, Any]]:
    with service.http() as http:
        bodies = wait_until_finished(http, ids, timeout_s=600, service=service)
    assert [b["status"] for b in bodies] == ["succeeded"] * len(ids), [b["error"] for b in bodies]
    return {b["id"]: b for b in bodies}


def span(body: dict[str, Any]) -> tuple[datetime, datetime]:
    (attempt,) = body["attempts"]  # one attempt each: nothing was run twice
    return datetime.fromisoformat(attempt["started_at"]), datetime.fromisoformat(attempt["ended_at"])


def overlapping(bodies: list[dict[str, Any]]) -> bool:
    spans = sorted(span(b) for b in bodies)
    return any(later[0] < earlier[1] for earlier, later in pairwise(spans))


def claims(service: Service) -> list[int]:
    """Every experiment a worker claimed, and every message that found its job no longer queued (a duplicate)."""
    import re

    logs = "".join((service.workdir / f"{w}.log").read_text(errors="replace") for w in WORKERS)
    return [int(i) for i in re.findall(r"experiment (\d+) (?:claimed by|is not queued any more)", logs)]


def test_a_burst_from_one_user_starts_after_the_first_job_of_each_other_user(service: Service) -> None:
    keys = {name: new_key(name) for name in ("fair-ada", "fair-bob", "fair-cy")}
    with DepthWatch([FAIR]) as depth:
        burst = submit(service, keys["fair-ada"], FAIR, repeats=4)
        (bob,) = submit(service, keys["fair-bob"], FAIR)
        (cy,) = submit(service, keys["fair-cy"], FAIR)
        with service.http(key=keys["fair-cy"]) as http:
            waiting = http.get(f"/experiments/{cy}").json()
        jobs = finished(service, [*burst, bob, cy])
    starts = sorted(jobs, key=lambda i: span(jobs[i])[0])
    print(f"start order: {starts} (burst {burst}, bob {bob}, cy {cy}); most on the broker: {depth.most}")
    # Ada's first job may have started before the others were even submitted; none of her later ones before theirs.
    assert max(starts.index(bob), starts.index(cy)) < min(starts.index(i) for i in burst[1:]), starts
    assert not overlapping(list(jobs.values())), "one slot: one job at a time"
    assert depth.most[FAIR] <= SLOTS[FAIR], "the broker never held more than the slots"
    if waiting["status"] == "queued":
        assert 1 <= waiting["queue_position"] <= 3, waiting
    # Nothing was delivered twice.
    assert sorted(i for i in claims(service) if i in jobs) == sorted(jobs)


def test_a_user_at_their_running_cap_leaves_the_other_slot_to_someone_else(service: Service) -> None:
    ada, bob = new_key("cap-ada"), new_key("cap-bob")
    with service.http(key=ada) as http:
        ada_id = http.get("/me").json()["id"]
    with service.http() as admin:
        assert admin.patch(f"/users/{ada_id}", json={"max_running_jobs": 1}).status_code == 200
    # Ada's first job is long enough for Bob's submission to land while it runs, however slow the API is to answer;
    # her next two are as short as Bob's.
    mine = submit(service, ada, CAP, epochs=25) + submit(service, ada, CAP, repeats=2)
    (theirs,) = submit(service, bob, CAP)
    jobs = finished(service, [*mine, theirs])
    assert not overlapping([jobs[i] for i in mine]), "at most one of Ada's jobs ran at a time"
    created = datetime.fromisoformat(jobs[theirs]["created_at"])
    assert created < span(jobs[mine[0]])[1], "Bob's job was submitted while Ada's first ran: what is tested here"
    # Bob's job took the second slot while Ada's waited for her first to end.
    assert span(jobs[theirs])[0] < span(jobs[mine[1]])[0], {i: span(b) for i, b in jobs.items()}


def holder() -> RoleState | None:
    with session_scope() as session:
        return read_role(session, DISPATCHER_ROLE)


def test_a_dispatcher_killed_mid_run_and_started_again_loses_and_duplicates_nothing(service: Service) -> None:
    key = new_key("kill-ada")
    deadline = time.monotonic() + 30
    while not ((state := holder()) and state.last_pass_at):
        assert time.monotonic() < deadline, service.logs()
        time.sleep(0.1)
    with DepthWatch([KILL]) as depth:
        ids = submit(service, key, KILL, repeats=5)
        # Killed right after the submission's nudge, while its pass releases the first job.
        victim = psutil.Process(pid_of(state.holder))
        for process in [victim, *victim.children(recursive=True)]:
            process.kill()
        service.process("api").wait(timeout=10)
        time.sleep(2)  # past the role's lease: the API started again takes the role over, as serve would start it
        service.start_api()
        jobs = finished(service, ids)
    after = holder()
    assert after is not None and after.holder != state.holder
    assert all(len(body["attempts"]) == 1 for body in jobs.values()), "no job ran twice"
    assert sorted(i for i in claims(service) if i in jobs) == sorted(ids), "each delivered once: no duplicate"
    assert not overlapping(list(jobs.values())) and depth.most[KILL] <= SLOTS[KILL]
    print(f"killed {state.holder}; {after.holder} took over; most on the broker: {depth.most}")


def test_only_an_admin_sets_a_priority_and_a_user_reads_only_their_own_usage(service: Service) -> None:
    key = new_key("usage-dee")
    with service.http(key=key) as http:
        me = http.get("/me").json()["id"]
        (job,) = submit(service, key, FAIR)
        assert http.put(f"/experiments/{job}/priority", json={"priority": 1}).status_code == 403
        assert http.get(f"/users/{me}/usage").json()["queued"] + http.get(f"/users/{me}/usage").json()["running"] == 1
        assert http.get(f"/users/{me + 1000}/usage").status_code == 404
    finished(service, [job])
    with service.http() as admin:
        usage = admin.get(f"/users/{me}/usage", headers=bearer(service.api_key)).json()
    assert usage["worker_seconds"] > 0 and usage["storage_bytes"] > 0, usage
