"""Every accepted job ends exactly once, with real worker processes killed, frozen, stopped and restarted.

The service here runs with short leases (tests/support.py FAST_RECOVERY: lease 4 s, heartbeat 0.5 s,
reaper every second), so a lost attempt is noticed in seconds. Every fault waits until the job has
finished at least one epoch and checks afterwards that the fault really hit a running attempt, so a
job that finishes first fails the test instead of passing it by luck. Every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.support import FAST_RECOVERY, Service, running_service, wait_until_finished

pytestmark = pytest.mark.e2e

QUEUE = "e2e-reliability"
SHORT_QUEUE = "e2e-short-limit"  # served by a worker with a short time limit
WORKERS = ("alpha", "beta")
LEASE_S = float(FAST_RECOVERY["EPOCHAL_LEASE_S"])
REAPER_S = float(FAST_RECOVERY["EPOCHAL_REAPER_INTERVAL_S"])
# A deterministic job long enough for a fault to land mid-run: about a second per epoch here.
JOB = {"dataset": "mnist", "batch_size": 32, "train_size": 3000, "deterministic": True}


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("reliability"), QUEUE, WORKERS, queues=[SHORT_QUEUE]) as running:
        yield running


@pytest.fixture(scope="module")
def http(service: Service) -> Iterator[httpx.Client]:
    with service.http() as client:
        yield client


def submit(http: httpx.Client, **fields: Any) -> int:
    response = http.post("/experiments", json={**JOB, **fields})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def wait_for(what: str, check: Callable[[], Any], service: Service, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{service.logs()}")
        time.sleep(0.05)


def read(http: httpx.Client, experiment_id: int) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/experiments/{experiment_id}").json()
    return body


def running_with_epochs(http: httpx.Client, experiment_id: int, epochs: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        body = read(http, experiment_id)
        running = body["status"] == "running" and body["summary"]["epochs_done"] >= epochs
        return body if running else None

    return check


def worker_of(body: dict[str, Any]) -> str:
    return str(body["worker"]).split("@")[0]


def training_child(service: Service, worker: str) -> psutil.Process:
    children = psutil.Process(service.process(worker).pid).children()
    assert len(children) == 1, children
    return children[0]


def metrics(http: httpx.Client, experiment_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = http.get(f"/experiments/{experiment_id}/metrics").json()
    return rows


def history(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(m["epoch"], m["loss"], m["accuracy"], m["val_loss"], m["val_accuracy"]) for m in rows]


def test_a_killed_child_resumes_at_the_next_epoch_with_the_history_of_an_uninterrupted_run(
    http: httpx.Client, service: Service
) -> None:
    epochs = 6
    killed = submit(http, epochs=epochs)
    reference = submit(http, epochs=epochs)  # the same spec, never interrupted, on the other worker
    body = wait_for("two finished epochs", running_with_epochs(http, killed, 2), service)
    before = metrics(http, killed)
    # What an out-of-memory kill does: the child dies mid-epoch without a word.
    training_child(service, worker_of(body)).kill()

    finished = wait_until_finished(http, [killed, reference], timeout_s=300, service=service)
    assert [b["status"] for b in finished] == ["succeeded", "succeeded"], [b["error"] for b in finished]
    attempts = finished[0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["lost", "succeeded"], "the kill landed on a running attempt"
    resumed_after = attempts[1]["resumed_from_epoch"]
    assert resumed_after >= 2
    after = metrics(http, killed)
    assert [m["epoch"] for m in after] == list(range(1, epochs + 1))
    # The epochs finished before the kill are untouched, and none was trained twice.
    assert after[: len(before)] == before
    assert [m["attempt"] for m in after] == [1] * resumed_after + [2] * (epochs - resumed_after)
    # With deterministic ops, losing a process costs time, never a different result.
    assert history(after) == history(metrics(http, reference))
    evaluations = [http.get(f"/experiments/{i}/evaluation").json() for i in (killed, reference)]
    assert evaluations[0]["test_accuracy"] == evaluations[1]["test_accuracy"]
    assert evaluations[0]["confusion_matrix"] == evaluations[1]["confusion_matrix"]


def test_a_frozen_attempt_that_wakes_after_being_replaced_writes_nothing(http: httpx.Client, service: Service) -> None:
    # A stopped process is what a partition, a swap storm or Redis redelivering a running job looks like:
    # the attempt is alive but silent, so the reaper hands the job to another worker.
    epochs = 5
    experiment_id = submit(http, epochs=epochs)
    body = wait_for("a finished epoch", running_with_epochs(http, experiment_id, 1), service)
    first = worker_of(body)
    child = training_child(service, first)
    child.suspend()
    try:
        wait_for(
            "a second attempt on the other worker",
            lambda: (
                len(read(http, experiment_id)["attempts"]) == 2 and read(http, experiment_id)["status"] == "running"
            ),
            service,
            timeout_s=LEASE_S + 60,
        )
    finally:
        child.resume()
    finished = wait_until_finished(http, [experiment_id], timeout_s=300, service=service)[0]
    assert finished["status"] == "succeeded", finished["error"]
    assert [a["outcome"] for a in finished["attempts"]] == ["lost", "succeeded"]
    assert worker_of({"worker": finished["attempts"][1]["worker"]}) != first
    taken_over_at = finished["attempts"][1]["resumed_from_epoch"]
    rows = metrics(http, experiment_id)
    assert [m["epoch"] for m in rows] == list(range(1, epochs + 1))
    assert all(m["attempt"] == (1 if m["epoch"] <= taken_over_at else 2) for m in rows)
    log = (service.workdir / f"{first}.log").read_text(errors="replace")
    wait_for("the woken attempt to stop", lambda: "stops without writing" in log or "superseded" in log, service)


def test_the_whole_worker_killed_and_started_again_recovers_the_job_within_lease_and_reaper(
    http: httpx.Client, service: Service
) -> None:
    epochs = 5
    experiment_id = submit(http, epochs=epochs)
    body = wait_for("a finished epoch", running_with_epochs(http, experiment_id, 1), service)
    victim = worker_of(body)
    other = next(w for w in WORKERS if w != victim)
    # Every worker process goes (a power cut of the workers' host); the job can only come back through the
    # restarted worker, once the reaper (now the API's role, or the restarted worker's) has found its lease expired.
    for name in (victim, other):
        parent = psutil.Process(service.process(name).pid)
        for process in [*parent.children(), parent]:
            process.kill()
    killed_at = time.monotonic()
    service.start_worker(victim)
    service.wait_for_workers(1)
    second = wait_for(
        "a second attempt", lambda: len(read(http, experiment_id)["attempts"]) == 2, service, LEASE_S + 60
    )
    recovery_s = time.monotonic() - killed_at
    print(f"recovered {recovery_s:.1f} s after the kill (lease {LEASE_S:g} s, reaper every {REAPER_S:g} s)")
    # Liveness, with a wide margin for a busy machine: the bound is lease + reaper interval + a worker start.
    assert recovery_s < LEASE_S + REAPER_S + 30, second
    finished = wait_until_finished(http, [experiment_id], timeout_s=300, service=service)[0]
    service.start_worker(other)
    assert finished["status"] == "succeeded", finished["error"]
    assert [a["outcome"] for a in finished["attempts"]] == ["lost", "succeeded"]
    assert [m["epoch"] for m in metrics(http, experiment_id)] == list(range(1, epochs + 1))


def test_a_job_that_kills_its_worker_every_time_fails_after_the_attempt_cap(
    http: httpx.Client, service: Service
) -> None:
    experiment_id = submit(http, epochs=50)
    cap = 3  # EPOCHAL_MAX_ATTEMPTS' default
    for attempt in range(1, cap + 1):

        def training(n: int = attempt) -> dict[str, Any] | None:
            body = read(http, experiment_id)
            return body if body["status"] == "running" and len(body["attempts"]) == n else None

        body = wait_for(
            f"attempt {attempt} training",
            training,
            service,
            timeout_s=LEASE_S + 120,
        )
        training_child(service, worker_of(body)).kill()
    finished = wait_until_finished(http, [experiment_id], timeout_s=LEASE_S + 60, service=service)[0]
    assert finished["status"] == "failed"
    assert finished["error"].startswith(f"AttemptsExhausted: {cap} attempts were lost")
    assert [a["outcome"] for a in finished["attempts"]] == ["lost"] * cap


def test_a_job_past_its_time_limit_ends_failed_saying_so(http: httpx.Client, service: Service) -> None:
    # The limit counts from the attempt's start, TensorFlow's start-up in the child included, which took over 25 s on
    # a loaded CI machine: 40 s leaves room for it and for a few of these short epochs, and 1000 of them need far more.
    service.start_worker("short", queue=SHORT_QUEUE, env={"EPOCHAL_TASK_TIME_LIMIT_S": "40"})
    experiment_id = submit(http, epochs=1000, train_size=300, queue=SHORT_QUEUE)
    finished = wait_until_finished(http, [experiment_id], timeout_s=180, service=service)[0]
    assert finished["status"] == "failed"
    assert finished["error"].startswith("TimeLimitExceeded:")
    assert "EPOCHAL_TASK_TIME_LIMIT_S" in finished["error"]
    assert finished["attempts"][-1]["outcome"] == "timed_out"
    assert 1 <= finished["summary"]["epochs_done"] < 1000


def test_a_stopped_worker_gives_its_job_back_and_the_next_one_resumes_it(http: httpx.Client, service: Service) -> None:
    epochs = 30
    experiment_id = submit(http, epochs=epochs)
    body = wait_for("a finished epoch", running_with_epochs(http, experiment_id, 1), service)
    name = worker_of(body)
    others = [w for w in WORKERS if w != name]
    for other in others:  # nobody else may pick the job up: it waits for the restarted worker
        service.process(other).send_signal(signal.SIGTERM)
        service.process(other).wait(timeout=60)
    worker = service.process(name)
    worker.send_signal(signal.SIGTERM)  # what `docker compose stop` and Ctrl-C do
    worker.wait(timeout=60)
    given_back = read(http, experiment_id)
    assert given_back["status"] == "queued", f"{given_back}\n{service.logs()}"
    assert given_back["attempts"][-1]["outcome"] == "interrupted"
    done = given_back["summary"]["epochs_done"]
    assert 1 <= done < epochs, "the stop landed mid-run"

    for restarted in WORKERS:
        service.start_worker(restarted)
    finished = wait_until_finished(http, [experiment_id], timeout_s=300, service=service)[0]
    assert finished["status"] == "succeeded", finished["error"]
    assert [a["outcome"] for a in finished["attempts"]] == ["interrupted", "succeeded"]
    assert finished["attempts"][1]["resumed_from_epoch"] == done
    assert [m["epoch"] for m in metrics(http, experiment_id)] == list(range(1, epochs + 1))


def test_cancelling_a_job_whose_worker_is_gone_ends_it(http: httpx.Client, service: Service) -> None:
    experiment_id = submit(http, epochs=50)
    body = wait_for("a finished epoch", running_with_epochs(http, experiment_id, 1), service)
    name = worker_of(body)
    parent = psutil.Process(service.process(name).pid)
    for process in [*parent.children(), parent]:
        os.kill(process.pid, signal.SIGKILL)
    assert http.post(f"/experiments/{experiment_id}/cancel").status_code == 200
    finished = wait_until_finished(http, [experiment_id], timeout_s=LEASE_S + 60, service=service)[0]
    assert finished["status"] == "cancelled"
    assert finished["attempts"][-1]["outcome"] == "lost"
    service.start_worker(name)
