"""A dependency that is down is a 503 that says so, from a real API process, never a 500 or a hang."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from epochal.commands import api_argv, with_this_python
from tests.support import ROOT, bearer, free_port

# Nothing listens on port 1 of the loopback: connections are refused at once.
DEAD_DATABASE = "postgresql+psycopg://epochal:s3cret-db-pw@127.0.0.1:1/epochal"


@pytest.fixture(scope="module")
def api_without_database(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os

    port = free_port()
    log = tmp_path_factory.mktemp("outage") / "api.log"
    env = {**os.environ, "EPOCHAL_DATABASE_URL": DEAD_DATABASE}
    with log.open("wb") as out:
        process = subprocess.Popen(
            with_this_python(api_argv("127.0.0.1", port)), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, Path(log).read_text(errors="replace")
                assert process.poll() is None, Path(log).read_text(errors="replace")
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_health_names_the_database_as_down(api_without_database: str) -> None:
    response = httpx.get(f"{api_without_database}/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is False
    assert body["broker"]["ok"] is True
    assert "s3cret-db-pw" not in response.text


@pytest.mark.parametrize(("method", "path"), [("GET", "/experiments"), ("GET", "/experiments/1"), ("GET", "/sweeps")])
def test_routes_answer_503_with_a_reason_while_the_database_is_down(
    api_without_database: str, method: str, path: str
) -> None:
    response = httpx.request(method, f"{api_without_database}{path}", headers=bearer("epk_any-key-at-all"), timeout=30)
    assert response.status_code == 503, response.text
    assert "database is unavailable" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"
    assert "s3cret-db-pw" not in response.text
