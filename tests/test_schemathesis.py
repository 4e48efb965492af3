"""The served API against its own OpenAPI document, with Schemathesis: generated valid and invalid requests
(examples, coverage and fuzzing phases) to a real API process with a real key, database and broker.

Three checks: no 5xx, no status the document does not list, no body that breaks its schema. And every
operation is reached: each gets at least one 2xx answer, which needs the seeded data (a run that only met
404s for want of ids, or 422s for want of a valid body, would pass the checks and test nothing). Bounded by
a fixed number of examples per operation (EPOCHAL_SCHEMATHESIS_EXAMPLES, default 15). No worker consumes
the queue, so the experiments it submits stay queued (until the active-jobs quota answers 429, as
documented).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.seed import finish, fresh_database, small_network_h5
from tests.support import ROOT, Service, migrate_to_head, service_env
from tests.test_dataset_rows import zip_bytes
from tests.upload_archives import class_files

pytestmark = [pytest.mark.e2e, pytest.mark.schemathesis]

QUEUE = "schemathesis-nobody-consumes"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
EXAMPLES_PER_OPERATION = int(os.environ.get("EPOCHAL_SCHEMATHESIS_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The API (which takes the reaper role) on a database of its own, whose ids start at 1 like the examples."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    with fresh_database(workdir) as url:
        migrate_to_head(url)
        # Event streams of jobs nobody runs stay open until EPOCHAL_EVENTS_MAX_S: a fifth of a second is plenty here.
        env = {**service_env(QUEUE), "EPOCHAL_DATABASE_URL": url, "EPOCHAL_EVENTS_MAX_S": "0.2"}
        # Predictions come in bursts here; the rate limit has tests of its own, and a 429 reaches nothing.
        env["EPOCHAL_PREDICTIONS_PER_SECOND"] = "100000"
        service = Service(workdir, QUEUE, env)
        try:
            service.start_api()
            yield service
        finally:
            service.stop()


def seed(service: Service, folder: Path) -> None:
    """A succeeded experiment with a loadable checkpoint and a sweep with epochs, so that the ids in the
    document's examples (1) reach plots, exports and predictions instead of a 404."""
    network = small_network_h5(folder)
    url = service.env["EPOCHAL_DATABASE_URL"]
    with service.http() as http:
        created = http.post("/experiments", json={"dataset": "mnist", "epochs": 2})
        assert created.status_code == 202, created.text
        assert created.json()["id"] == 1
        finish(1, checkpoint=network, database_url=url)
        sweep = http.post("/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"optimizer": ["adam", "sgd"]}})
        assert sweep.status_code == 202, sweep.text
        assert sweep.json()["id"] == 1
        for row in sweep.json()["experiments"]:
            finish(row["id"], checkpoint=network, database_url=url)
    seed_models(service)


def seed_models(service: Service) -> None:
    """The models the document's examples name, made again where a run deleted them: digits (version 1,
    @production, and @retired for the alias delete's example), scratch (the model delete's example), mnist's
    default model; and the uploaded dataset flowers."""
    with service.http() as http:
        for name in ("digits", "scratch"):
            assert http.post("/models", json={"name": name}).status_code in (201, 409)  # 409: still there
        if not http.get("/models/digits/versions").json():
            assert http.post("/models/digits/versions", json={"experiment_id": 1}).status_code == 201
        for alias in ("production", "retired"):
            assert http.put(f"/models/digits/aliases/{alias}", json={"version": 1}).status_code == 200
        assert http.put("/datasets/mnist/default-model", json={"model": "digits"}).status_code == 200
        # The uploaded dataset the examples of its image routes and of the delete name (version 1), prepared here
        # (no worker consumes the queue) so that its images are there to read.
        if http.get("/datasets/flowers").status_code == 404:
            body = zip_bytes(class_files({"daisy": 3, "rose": 4}, size=(8, 8)))
            created = http.post("/datasets?name=flowers", content=body, headers={"Content-Type": "application/zip"})
            assert created.status_code == 202, created.text
            prepared = subprocess.run(
                [sys.executable, "-c", PREPARE, "flowers"],
                env=service.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert prepared.stdout.split() == ["ready"], prepared.stdout + prepared.stderr
        # flowers shared with a second user, the shares' example (user 2, made by the first seed, before any run):
        # their delete has one to remove.
        assert http.post("/users", json={"name": "classmate"}).status_code in (201, 409)
        assert http.put(f"/datasets/flowers/shares/{SHARE_EXAMPLE}").status_code == 204


SHARE_EXAMPLE = 2  # the user id in the shares routes' examples (api/routers/datasets.py)
# The worker's preparation of version 1 of a dataset, in a process on the service's database.
PREPARE = """
import sys
from sqlalchemy import select
from models import DatasetVersion
from models.db import session_scope
from worker.datasets import prepare
with session_scope() as session:
    named = (DatasetVersion.name == sys.argv[1], DatasetVersion.version == 1)
    row_id = session.scalars(select(DatasetVersion.id).where(*named)).one()
print(prepare(row_id))
"""


def test_the_api_keeps_its_openapi_contract(service: Service, tmp_path: Path) -> None:
    seed(service, tmp_path)
    # Every operation but the deletes, then the deletes on data seeded again: a delete run among the others takes
    # away what their examples name (the model `digits`, its aliases), and they would reach nothing but 404s.
    hars = [run_schemathesis(service, tmp_path / "all-but-deletes", "--exclude-method", "DELETE")]
    seed_models(service)
    hars.append(run_schemathesis(service, tmp_path / "deletes", "--include-method", "DELETE"))
    document = httpx.get(f"{service.base_url}/openapi.json").json()
    answers = answers_by_operation(document, hars)
    print("\n".join(f"{operation}: {dict(sorted(statuses.items()))}" for operation, statuses in answers.items()))
    unreached = [operation for operation, statuses in answers.items() if not any(200 <= s < 300 for s in statuses)]
    assert not unreached, f"{len(unreached)} of {len(answers)} operations never got a 2xx: {unreached}"


def run_schemathesis(service: Service, folder: Path, *selection: str) -> Path:
    """One Schemathesis run over the operations `selection` picks; its HAR file (every request and its answer)."""
    folder.mkdir()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{service.base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {service.api_key}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",  # positive and negative data
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        os.environ.get("EPOCHAL_SCHEMATHESIS_SEED", "1"),
        "--no-shrink",
        "--request-timeout",
        "60",
        "--report",
        "har",  # every request and its answer, to count what each operation was answered
        "--report-dir",
        str(folder),
        *selection,
    ]
    # In the temporary folder: Schemathesis keeps a cache of examples in its working directory.
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    print(output[-4000:])  # the summary, for `pytest -rP`
    assert result.returncode == 0, output[-20000:] + service.logs()
    return next(folder.glob("har-*"))


def answers_by_operation(document: dict[str, Any], hars: list[Path]) -> dict[str, Counter[int]]:
    """The statuses each operation of the document was answered, from the runs' HAR files."""
    operations = [
        (method.upper(), path, re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$"))
        for path, item in document["paths"].items()
        for method in item
    ]
    operations.sort(key=lambda operation: operation[1].count("{"))  # /sweeps/{id}/tensorboard before /sweeps/{id}/{x}
    answers: dict[str, Counter[int]] = defaultdict(Counter)
    for method, path, _pattern in operations:
        answers[f"{method} {path}"] = Counter()
    for entry in [entry for har in hars for entry in json.loads(har.read_text())["log"]["entries"]]:
        request_path = urlsplit(entry["request"]["url"]).path
        for method, path, pattern in operations:
            if entry["request"]["method"] == method and pattern.match(request_path):
                answers[f"{method} {path}"][entry["response"]["status"]] += 1
                break
    return answers
