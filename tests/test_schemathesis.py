"""The served API against its own OpenAPI document, with Schemathesis: generated valid and invalid requests
(examples, coverage and fuzzing phases) to a real API process with a real key, database and broker.

Three checks: no 5xx, no status the document does not list, no body that breaks its schema. Bounded
by a fixed number of examples per operation (about half a minute here). No worker consumes the queue,
so the experiments it submits stay queued (until the active-jobs quota answers 429, as documented).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.support import Service, running_service

pytestmark = [pytest.mark.e2e, pytest.mark.schemathesis]

QUEUE = "schemathesis-nobody-consumes"
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
EXAMPLES_PER_OPERATION = int(os.environ.get("EPOCHAL_SCHEMATHESIS_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def service(migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("schemathesis"), QUEUE, []) as running:
        yield running


def test_the_api_keeps_its_openapi_contract(service: Service, tmp_path: Path) -> None:
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
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    # In the temporary folder: Schemathesis keeps a cache of examples in its working directory.
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:] + service.logs()
    # Every operation was exercised: a run that reached nothing would pass too.
    report = ElementTree.parse(next(tmp_path.glob("*.xml"))).getroot()
    tested = {case.get("name") for case in report.iter("testcase")}
    assert len(tested) >= 25, sorted(tested)
