"""Fair-share dispatch on the real database and broker, one pass at a time: the order, caps, priorities, positions,
the estimate of a start, usage, and the fenced release. Real workers taking the released jobs, and a dispatcher
killed mid-run, are in tests/test_fair_share.py.

The in-process API takes no roles: each test runs the dispatcher's passes itself (`release_waiting`), as the holder
of its role, and plays the worker with `jobs.claim` and a finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from config import get_settings
from domain.dispatch import DISPATCHER_ROLE, decayed_seconds, mark_released
from models import Artifact, EpochMetric, Experiment
from models.base import utcnow
from models.db import session_scope
from models.roles import acquire_or_renew
from tests.support import bearer, new_key, release_waiting
from tests.test_metrics import scrape, value
from upkeep import reaper
from worker import jobs

TINY = {"dataset": "mnist", "epochs": 2}


@pytest.fixture
def users(client: TestClient) -> Iterator[dict[str, TestClient]]:
    """Three users who are not admins, each with a client of their own."""
    from api.main import app

    clients = {name: TestClient(app, headers=bearer(new_key(name))) for name in ("ada", "bob", "cy")}
    for each in clients.values():
        each.__enter__()
    yield clients
    for each in clients.values():
        each.__exit__(None, None, None)


@pytest.fixture
def slots(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set how many slots the API tests' queue has (the default is one)."""

    def set_slots(count: int) -> None:
        monkeypatch.setattr(get_settings(), "slots_per_queue", count)

    return set_slots


def submit(client: TestClient, **fields: Any) -> list[int]:
    response = client.post("/experiments", json={**TINY, **fields})
    assert response.status_code == 202, response.text
    body = response.json()
    if body["sweep_id"] is None:
        return [body["id"]]
    runs = client.get("/experiments", params={"sweep_id": body["sweep_id"]}).json()["items"]
    return sorted(run["id"] for run in runs)


def user_id(client: TestClient) -> int:
    return int(client.get("/me").json()["id"])


def run_and_finish(experiment_id: int, seconds: float = 0.0) -> None:
    """A worker takes the job and ends it, having used `seconds` of worker time."""
    job = jobs.claim(experiment_id, "w@host")
    assert job is not None
    if seconds:
        with session_scope() as session:
            from models import Attempt

            session.execute(
                update(Attempt)
                .where(Attempt.experiment_id == experiment_id)
                .values(started_at=utcnow() - timedelta(seconds=seconds))
            )
    jobs.finish_cancelled(job, None, None)


def position(client: TestClient, experiment_id: int) -> int | None:
    body = client.get(f"/experiments/{experiment_id}").json()
    return body["queue_position"]


def test_a_burst_from_one_user_waits_behind_the_first_job_of_everyone_else(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(1)
    burst = submit(users["ada"], repeats=4)
    (bob,) = submit(users["bob"])
    (cy,) = submit(users["cy"])
    assert release_waiting() == [burst[0]]  # the queue was empty: the first job goes at once
    assert release_waiting() == []  # its one slot is taken until that job ends
    # Where each stands: the released job first, then the others' first jobs, then the rest of the burst.
    expected = {burst[0]: 1, bob: 2, cy: 3, burst[1]: 4, burst[2]: 5, burst[3]: 6}
    assert {i: position(users["ada"] if i in burst else users["bob" if i == bob else "cy"], i) for i in expected} == (
        expected
    )
    # A list and a sweep answer the same places, worked out in one pass for the page.
    listed = client.get("/experiments", params={"status": "queued"}).json()["items"]
    assert {e["id"]: e["queue_position"] for e in listed} == expected
    sweep_id = users["ada"].get(f"/experiments/{burst[0]}").json()["sweep_id"]
    in_sweep = users["ada"].get(f"/sweeps/{sweep_id}").json()["experiments"]
    assert {e["id"]: e["queue_position"] for e in in_sweep} == {i: expected[i] for i in burst}
    [listed_sweep] = [each for each in users["ada"].get("/sweeps").json() if each["id"] == sweep_id]
    assert {e["id"]: e["queue_position"] for e in listed_sweep["experiments"]} == {i: expected[i] for i in burst}
    run_and_finish(burst[0], seconds=30)
    started = [burst[0]]
    for _ in range(5):
        (released,) = release_waiting()
        started.append(released)
        run_and_finish(released, seconds=30)
    assert started == [burst[0], bob, cy, burst[1], burst[2], burst[3]]
    assert position(users["ada"], burst[3]) is None  # finished: no position


def test_fair_share_counts_recent_worker_time_decayed(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(1)
    # Ada used an hour of worker time an hour ago, Bob five minutes just now: Ada's counts half (the half-life is an
    # hour), 1800 s against 300 s, so Bob still goes first.
    for owner, seconds, ago in ((users["ada"], 3600, 3600), (users["bob"], 300, 0)):
        (old,) = submit(owner)
        release_waiting()
        job = jobs.claim(old, "w@host")
        assert job is not None
        jobs.finish_cancelled(job, None, None)
        with session_scope() as session:
            from models import Attempt

            end = utcnow() - timedelta(seconds=ago)
            session.execute(
                update(Attempt)
                .where(Attempt.experiment_id == old)
                .values(started_at=end - timedelta(seconds=seconds), ended_at=end)
            )
    (heavy,) = submit(users["ada"])
    (light,) = submit(users["bob"])
    assert position(users["bob"], light) == 1 and position(users["ada"], heavy) == 2
    assert release_waiting() == [light]
    now = utcnow()
    assert decayed_seconds(now - timedelta(hours=2), now - timedelta(hours=1), now, 3600) == pytest.approx(
        1800 / 1.386, 0.01
    )


def test_a_user_at_their_running_cap_waits_while_others_fill_the_slots(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(3)
    ada = user_id(users["ada"])
    assert client.patch(f"/users/{ada}", json={"max_running_jobs": 1}).json()["max_running_jobs"] == 1
    mine = submit(users["ada"], repeats=3)
    (bob,) = submit(users["bob"])
    # Three free slots, but Ada may run one job at a time: her first and Bob's go, her others wait.
    assert sorted(release_waiting()) == sorted([mine[0], bob])
    assert release_waiting() == []
    usage = users["ada"].get(f"/users/{ada}/usage").json()
    assert (usage["queued"], usage["running"], usage["max_running_jobs"]) == (3, 0, 1)
    run_and_finish(mine[0])
    assert release_waiting() == [mine[1]]  # one of hers ended: the next may start


def test_priorities_set_by_an_admin_go_before_fair_share(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(1)
    (first,) = submit(users["ada"])
    release_waiting()
    later = submit(users["ada"], repeats=2)
    (bob,) = submit(users["bob"])
    (cy,) = submit(users["cy"])
    assert [position(users["bob"], bob), position(users["cy"], cy)] == [2, 3]
    # Cy's user priority puts Cy before Bob; a job priority puts Ada's last job before everyone's.
    assert client.patch(f"/users/{user_id(users['cy'])}", json={"priority": 5}).json()["priority"] == 5
    assert position(users["cy"], cy) == 2
    response = client.put(f"/experiments/{later[1]}/priority", json={"priority": 10})
    assert response.status_code == 200 and response.json()["priority"] == 10
    assert [position(users["ada"], later[1]), position(users["cy"], cy), position(users["bob"], bob)] == [2, 3, 4]
    run_and_finish(first)
    assert release_waiting() == [later[1]]
    # Only an admin sets priorities; a priority out of range says what the range is.
    refused = users["ada"].put(f"/experiments/{later[0]}/priority", json={"priority": 99})
    assert refused.status_code == 403
    assert client.put(f"/experiments/{later[0]}/priority", json={"priority": 10**6}).status_code == 422


def test_the_estimated_start_follows_the_running_jobs_progress_and_recent_epochs(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(1)
    (running,) = submit(users["ada"], epochs=3)
    (waiting,) = submit(users["bob"], epochs=2)
    release_waiting()
    body = users["bob"].get(f"/experiments/{waiting}").json()
    assert body["queue_position"] == 2 and body["estimated_start"] is None  # no epoch to measure by yet
    job = jobs.claim(running, "w@host")
    assert job is not None
    from training.results import EpochResult

    jobs.record_epoch(job, EpochResult(1, 0.5, 0.8, 0.5, 0.8, 10.0))
    asked = utcnow()
    body = users["bob"].get(f"/experiments/{waiting}").json()
    assert body["queue_position"] == 1
    start = datetime.fromisoformat(body["estimated_start"])
    # Two epochs of ten seconds left on the running job, less the moment since its first one ended.
    assert asked + timedelta(seconds=18) <= start <= asked + timedelta(seconds=21), (asked, start)
    assert users["ada"].get(f"/experiments/{running}").json()["queue_position"] is None


def finish_as_timed(experiment_id: int, began: datetime, queued: datetime | None = None) -> None:
    """Claim, train and finish a released job, then date its attempt as if it had run from `began`: 30 s of
    start-up, two epochs of 10 s, 20 s of wrap-up (and, given `queued`, as if it had waited since then)."""
    from models import Attempt
    from training.results import EpochResult

    job = jobs.claim(experiment_id, "w@host")
    assert job is not None
    for epoch in (1, 2):
        jobs.record_epoch(job, EpochResult(epoch, 0.5, 0.8, 0.5, 0.8, 10.0))
    jobs.finish_cancelled(job, None, None)
    with session_scope() as session:
        session.execute(
            update(Attempt)
            .where(Attempt.experiment_id == experiment_id)
            .values(outcome="succeeded", started_at=began, ended_at=began + timedelta(seconds=70))
        )
        for epoch, ended_s in ((1, 40), (2, 50)):
            session.execute(
                update(EpochMetric)
                .where(EpochMetric.experiment_id == experiment_id, EpochMetric.epoch == epoch)
                .values(created_at=began + timedelta(seconds=ended_s))
            )
        dated = {"status": "succeeded"} | ({"queued_at": queued} if queued is not None else {})
        session.execute(update(Experiment).where(Experiment.id == experiment_id).values(**dated))


def test_the_estimated_start_counts_the_start_up_and_wrap_up_recent_attempts_took(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    # Small jobs are mostly their start-up and wrap-up: counting epochs alone made the estimate ten times early.
    slots(1)
    (done,) = submit(users["ada"], epochs=2)
    (running,) = submit(users["bob"], epochs=2)
    (waiting,) = submit(users["cy"], epochs=2)
    assert release_waiting() == [done]
    finish_as_timed(done, utcnow() - timedelta(seconds=600))
    assert release_waiting() == [running]
    assert jobs.claim(running, "w@host") is not None  # started now, no epoch yet
    asked = utcnow()
    body = users["cy"].get(f"/experiments/{waiting}").json()
    assert body["queue_position"] == 1
    start = datetime.fromisoformat(body["estimated_start"])
    # The running job has all of it ahead: 30 + 2 x 10 + 20 seconds. No handover was measured: the running job
    # was submitted after the finished one ended, so it came to an idle slot.
    assert asked + timedelta(seconds=67) <= start <= asked + timedelta(seconds=71), (asked, start)


def test_the_estimated_start_counts_the_handover_from_a_freed_slot_to_the_next_start(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    # The dispatcher's pass, the broker and the worker's claim cost each turn of a slot a few seconds; on a queue of
    # small jobs that added up to most of the estimate's error.
    slots(1)
    (first,) = submit(users["ada"], epochs=2)
    (second,) = submit(users["bob"], epochs=2)
    (running,) = submit(users["cy"], epochs=2)
    (waiting,) = submit(client, epochs=2)
    began = utcnow() - timedelta(seconds=600)
    assert release_waiting() == [first]
    finish_as_timed(first, began)
    assert release_waiting() == [second]
    # The second was waiting all along, and started 3 s after the first ended (at 70 s).
    finish_as_timed(second, began + timedelta(seconds=73), queued=began)
    assert release_waiting() == [running]
    assert jobs.claim(running, "w@host") is not None
    asked = utcnow()
    body = client.get(f"/experiments/{waiting}").json()
    assert body["queue_position"] == 1
    start = datetime.fromisoformat(body["estimated_start"])
    # 70 s of the running job, then the 3 s handover before this one starts.
    assert asked + timedelta(seconds=71) <= start <= asked + timedelta(seconds=74.5), (asked, start)


def test_a_release_is_fenced_on_the_holder_and_on_the_job_still_waiting(client: TestClient, slots: Any) -> None:
    slots(2)
    first, second = submit(client, repeats=2)
    with session_scope() as session:
        assert acquire_or_renew(session, DISPATCHER_ROLE, "live@host:1", 30) is not None
    with session_scope() as session:
        # A dispatcher whose lease ran out (another holds the role) releases nothing.
        assert not mark_released(session, first, "stale@host:2", 60)
        # The holder marks the first and is killed before it publishes it.
        assert mark_released(session, first, "live@host:1", get_settings().republish_after_s)
        assert not mark_released(session, first, "live@host:1", 60)  # marked once only
    published: list[tuple[int, str]] = []
    # Started again, it releases only what was not released: no duplicate of the first.
    assert release_waiting(lambda i, q: published.append((i, q)), holder="live@host:1") == [second]
    assert published == [(second, "api-tests")]
    # The first has no message: the reaper publishes it once nobody claimed it in time, so it is not lost either.
    later = utcnow() + timedelta(seconds=get_settings().republish_after_s + 1)
    assert sorted(reaper.reap(lambda i, q: published.append((i, q)), now=later).published) == [first, second]


def test_usage_is_yours_or_an_admins_and_counts_worker_time_and_storage(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(1)
    (done,) = submit(users["ada"])
    submit(users["ada"])
    release_waiting()
    run_and_finish(done, seconds=120)
    with session_scope() as session:
        session.add(
            Artifact(experiment_id=done, name="best_model.h5", media_type="x", size=1234, sha256="0" * 64, content=b"x")
        )
        session.add(EpochMetric(experiment_id=done, epoch=1, seconds=1.0))
    ada = user_id(users["ada"])
    own = users["ada"].get(f"/users/{ada}/usage")
    assert own.status_code == 200, own.text
    usage = own.json()
    assert (usage["queued"], usage["running"], usage["storage_bytes"]) == (1, 0, 1234)
    assert 119 <= usage["worker_seconds"] <= 130 and 0 < usage["recent_worker_seconds"] <= usage["worker_seconds"]
    assert client.get(f"/users/{ada}/usage").json() == {
        **usage,
        "worker_seconds": pytest.approx(usage["worker_seconds"], abs=1),
        "recent_worker_seconds": pytest.approx(usage["recent_worker_seconds"], abs=1),
    }
    other = users["bob"].get(f"/users/{ada}/usage")
    assert other.status_code == 404
    # The same words as for a user that does not exist.
    missing = users["bob"].get("/users/999999/usage").json()["detail"]
    assert other.json()["detail"] == missing.replace("999999", str(ada))


def test_metrics_export_queue_waits_by_user_and_priority(
    client: TestClient, users: dict[str, TestClient], slots: Any
) -> None:
    slots(2)
    first, second = submit(users["ada"], repeats=2)
    client.put(f"/experiments/{second}/priority", json={"priority": 3})
    release_waiting()
    with session_scope() as session:
        session.execute(
            update(Experiment).where(Experiment.id == first).values(queued_at=utcnow() - timedelta(seconds=100))
        )
    assert jobs.claim(first, "w@host") is not None and jobs.claim(second, "w@host") is not None
    waits = scrape(client)["epochal_queue_wait_seconds"]
    assert value(waits, user="ada", priority="0", le="60.0") == 0
    assert value(waits, user="ada", priority="0", le="300.0") == 1
    assert value(waits, user="ada", priority="3", le="1.0") == 1
