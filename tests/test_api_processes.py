"""Several API processes behind one port (EPOCHAL_API_WORKERS), started as production starts them.

Whichever process answers, a user has one prediction rate (counted in the broker's Redis) and `GET /metrics`
reports every request of every process (prometheus_client's multiprocess files).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.seed import png
from tests.support import Service, bearer, empty_all_tables, send_whole_then_read

LIMIT = 3  # predictions per second per user
PREDICT = "/datasets/mnist/predictions"  # nothing trained here: a 404, counted against the rate like any answer
PREDICT_ROUTE = "/datasets/{dataset}/predictions"


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def service(
    migrated_database: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory, metrics_dir: Path
) -> Iterator[Service]:
    env = {
        **os.environ,
        "EPOCHAL_API_WORKERS": "2",
        "EPOCHAL_PREDICTIONS_PER_SECOND": str(LIMIT),
        # The launcher makes a fresh folder of its own when none is named; naming one lets the test look inside.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    empty_all_tables()  # no experiment left by an earlier module: the burst's answers are 404s and 429s
    service = Service(tmp_path_factory.mktemp("api-processes"), "api-processes", env)
    try:
        service.start_api()
        yield service
    finally:
        service.stop()


def answered_by_each_process(metrics_dir: Path, route: str) -> dict[str, float]:
    """Requests to `route` (a template) that each API process answered so far, read from its counter file."""
    answered = {}
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        answered[path.name] = sum(value for key, value, *_ in values if f'"route": "{route}"' in key)
    return answered


def processes_that_answered(before: dict[str, float], after: dict[str, float]) -> int:
    return sum(1 for name, count in after.items() if count > before.get(name, 0.0))


def counted(metrics_text: str, route: str, status: str) -> float:
    pattern = rf'^epochal_http_requests_total\{{method="GET",route="{re.escape(route)}",status="{status}"\}} (\S+)$'
    found = re.search(pattern, metrics_text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_metrics_count_the_requests_of_every_process(service: Service, metrics_dir: Path) -> None:
    sent = 0
    # A new connection per request: the kernel hands connections to whichever process accepts first.
    while processes_that_answered({}, answered_by_each_process(metrics_dir, "/experiments")) < 2:
        assert sent < 200, "one API process answered every request: the test cannot tell the processes apart"
        assert httpx.get(f"{service.base_url}/experiments", headers=bearer(service.api_key)).status_code == 200
        sent += 1
    # Any process may answer the scrape; it must report both processes' requests.
    for _ in range(4):
        text = httpx.get(f"{service.base_url}/metrics", headers=bearer(service.api_key)).text
        assert counted(text, "/experiments", "200") == sent


def test_one_rate_limit_for_a_user_whichever_process_answers(service: Service, metrics_dir: Path) -> None:
    def predict(_: int) -> int:
        files = {"file": ("d.png", png(), "image/png")}
        return httpx.post(f"{service.base_url}{PREDICT}", files=files, headers=bearer(service.api_key)).status_code

    # A burst inside one window, answered by both processes: exactly LIMIT get through, not LIMIT per process.
    for _ in range(5):
        time.sleep(1.1)  # an empty window for this user
        before = answered_by_each_process(metrics_dir, PREDICT_ROUTE)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=4 * LIMIT) as pool:
            answers = list(pool.map(predict, range(4 * LIMIT)))
        in_one_window = time.monotonic() - started < 0.9
        if in_one_window and processes_that_answered(before, answered_by_each_process(metrics_dir, PREDICT_ROUTE)) == 2:
            break
    else:
        pytest.fail("no burst fell inside one window with both processes answering (machine too busy?)")
    assert sorted(answers) == [404] * LIMIT + [429] * (3 * LIMIT), answers


def test_a_body_over_the_cap_sent_whole_before_reading_gets_its_413_from_any_process(service: Service) -> None:
    # As `requests` and `urllib` send an upload: all of it, then read. Four connections, which the kernel spreads
    # over both processes; each must let the client read its answer instead of resetting the connection.
    total = 40 * 2**20  # over the 25 MiB default cap
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {service.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {total}\r\n\r\n"
    ).encode()
    for _ in range(4):
        chunks = [
            part,
            *(b"\0" * 2**20 for _ in range((total - len(part)) // 2**20)),
            b"\0" * ((total - len(part)) % 2**20),
        ]
        answer = send_whole_then_read(service.base_url, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"request bodies must be at most 25 MiB" in answer


def test_the_api_processes_end_with_a_launcher_killed_outright(
    migrated_database: str, broker_url: str, tmp_path: Path
) -> None:
    # Its own launcher: the module's is still needed. SIGKILL runs none of the launcher's cleanup.
    service = Service(tmp_path, "api-processes", {**os.environ, "EPOCHAL_API_WORKERS": "2"})
    try:
        service.start_api()
        launcher = psutil.Process(service.process("api").pid)
        children = launcher.children()  # the API processes, and multiprocessing's resource tracker
        assert len([c for c in children if "resource_tracker" not in " ".join(c.cmdline())]) == 2, children
        launcher.kill()
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], "processes outlived their launcher (API processes would hold the port)"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{service.base_url}/health", timeout=2)
    finally:
        service.stop()
