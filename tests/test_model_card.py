"""A model card's training record is what the worker process really ran, not what the API process runs."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, Service, service_env, wait_until_finished

pytestmark = pytest.mark.e2e

QUEUE = "e2e-model-card"
WORKER_VERSION = f"worker-build-{uuid.uuid4().hex[:8]}"
API_VERSION = f"api-build-{uuid.uuid4().hex[:8]}"
VERSIONS_OF_THIS_INTERPRETER = (
    "import json; from dataclasses import asdict; from training.runtime import library_versions; "
    "print(json.dumps(asdict(library_versions())))"
)


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # The API and the worker started as two builds of the service: the card must say the worker's.
    service = Service(tmp_path_factory.mktemp("card"), QUEUE, {**service_env(QUEUE), "EPOCHAL_VERSION": API_VERSION})
    try:
        service.start_worker("worker", env={"EPOCHAL_VERSION": WORKER_VERSION})
        service.start_api()
        service.wait_for_workers(1)
        yield service
    finally:
        service.stop()


def test_the_cards_versions_are_those_the_worker_ran(service: Service, tmp_path: Path) -> None:
    spec = {"dataset": "mnist", "train_size": 200, "epochs": 1, "batch_size": 64, "seed": 11}
    with service.http() as http:
        created = http.post("/experiments", json=spec)
        assert created.status_code == 202, created.text
        experiment_id = created.json()["id"]
        [done] = wait_until_finished(http, [experiment_id], 240, service)
        assert done["status"] == "succeeded", done["error"]
        assert http.post("/models", json={"name": "card-digits"}).status_code == 201
        registered = http.post("/models/card-digits/versions", json={"experiment_id": experiment_id})
        assert registered.status_code == 201, registered.text
        card = http.get("/models/card-digits/versions/1/card").json()

    # What the worker's interpreter (the one it was started with, tests/support.py with_this_python) runs.
    ran = json.loads(
        subprocess.run(
            [sys.executable, "-c", VERSIONS_OF_THIS_INTERPRETER],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
        ).stdout.splitlines()[-1]
    )
    training = card["training"]
    assert {k: training[k] for k in ("python", "tensorflow", "keras", "numpy")} == ran
    assert training["service_version"] == WORKER_VERSION != API_VERSION
    assert training["seed"] == 11 and training["device"] == done["device"] and training["device"]
    [attempt] = training["attempts"]
    assert attempt["outcome"] == "succeeded" and attempt["service_version"] == WORKER_VERSION
    assert attempt["device"] == done["device"] and attempt["python"] == ran["python"]
    assert attempt["started_at"] <= attempt["ended_at"]
    assert card["figures"]["test_accuracy"] == done["summary"]["test_accuracy"]
    assert card["figures"]["validation_count"] == done["validation_count"]
    assert card["spec"]["train_size"] == 200 and card["input"]["input_shape"] == [None, 28, 28]
