"""Two worker processes on one queue: every job runs exactly once, with complete, unduplicated history.

Lost, frozen, stopped and restarted workers are in test_reliability.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from config import TRAIN_TASK_NAME
from tests.support import Service, running_service, wait_until_finished

pytestmark = pytest.mark.e2e

QUEUE = "e2e-many"
WORKERS = ("alpha", "beta")
JOBS = 6
EPOCHS = 2


HEALTHY_LEASES = {"EPOCHAL_LEASE_S": "60", "EPOCHAL_HEARTBEAT_S": "2"}


@pytest.fixture(scope="module")
def two_workers(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # These tests are about claims, not recovery: a lease long enough that a heartbeat delayed on a loaded machine
    # (CI runs two suites at once) never hands a healthy job to the other worker, which "claimed once" would count
    # as a second claim. Recovery from a lost lease is tests/test_reliability.py's.
    workdir = tmp_path_factory.mktemp("many")
    with running_service(workdir, QUEUE, WORKERS, env=HEALTHY_LEASES) as running:
        yield running


def claims_in(service: Service, worker: str) -> list[int]:
    log = (service.workdir / f"{worker}.log").read_text(errors="replace")
    return [int(i) for i in re.findall(r"experiment (\d+) claimed by", log)]


def skips_in(service: Service) -> list[int]:
    logs = "".join((service.workdir / f"{w}.log").read_text(errors="replace") for w in WORKERS)
    return [int(i) for i in re.findall(r"experiment (\d+) is not queued any more", logs)]


def test_each_job_runs_on_exactly_one_worker(two_workers: Service) -> None:
    with two_workers.http() as http:
        body = {"dataset": "mnist", "epochs": EPOCHS, "batch_size": 64, "train_size": 300}
        ids = [http.post("/experiments", json={**body, "seed": seed}).json()["id"] for seed in range(JOBS)]
        finished = wait_until_finished(http, ids, timeout_s=600, service=two_workers)

        assert [b["status"] for b in finished] == ["succeeded"] * JOBS, [b["error"] for b in finished]
        claims = {worker: claims_in(two_workers, worker) for worker in WORKERS}
        all_claims = [i for worker_claims in claims.values() for i in worker_claims]
        assert sorted(all_claims) == sorted(ids), "every job claimed once, by one worker"
        for body_ in finished:
            recorded = str(body_["worker"]).split("@")[0]
            assert body_["id"] in claims[recorded], "the experiment records the worker that ran it"
            assert body_["device"] == "CPU"
            epochs = [m["epoch"] for m in http.get(f"/experiments/{body_['id']}/metrics").json()]
            assert epochs == list(range(1, EPOCHS + 1))


def test_a_redelivered_job_does_nothing(two_workers: Service) -> None:
    from infra.task_publisher import get_celery_client

    with two_workers.http() as http:
        body = {"dataset": "mnist", "epochs": 1, "batch_size": 64, "train_size": 200}
        experiment_id = http.post("/experiments", json=body).json()["id"]
        before = wait_until_finished(http, [experiment_id], timeout_s=300, service=two_workers)[0]
        history = http.get(f"/experiments/{experiment_id}/metrics").json()

        # The same message again, as Redis would redeliver it after a lost acknowledgement.
        get_celery_client().send_task(TRAIN_TASK_NAME, args=[experiment_id], queue=QUEUE)
        deadline = time.monotonic() + 60
        while experiment_id not in skips_in(two_workers):
            assert time.monotonic() < deadline, two_workers.logs()
            time.sleep(0.2)

        after = http.get(f"/experiments/{experiment_id}").json()
        assert (after["status"], after["finished_at"], after["worker"]) == (
            before["status"],
            before["finished_at"],
            before["worker"],
        )
        assert http.get(f"/experiments/{experiment_id}/metrics").json() == history
