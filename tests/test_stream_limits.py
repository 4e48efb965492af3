"""Live event streams hold no database connection, are capped per user and per process, give their slot back
however they end, and close soon after their key is revoked.

Against a real uvicorn server (in a thread of this process, on the test database and broker): a stream
only shows what it holds while it is open, and an in-process test client waits for the whole response.
Streams are raw sockets, so holding many open costs no threads, and closing one is a real disconnect.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from api.main import app
from api.streams import access as stream_access
from api.streams.slots import PROCESS_STREAMS
from config import get_settings
from infra import events
from models import DatasetVersion
from models.accounts import find_key
from models.db import get_engine, session_scope
from tests.support import bearer, free_port, new_key

DEADLINE_S = 10  # every wait below; the starved pool made requests wait 30 s (its timeout)
STREAMER = "streamer"


@pytest.fixture
def live_api(client: TestClient) -> Iterator[str]:
    """The API on a real port; streams left open are cut when it stops (their slots given back)."""
    for key in events.redis_client().scan_iter("epochal:streams:user:*"):
        events.redis_client().delete(key)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=DEADLINE_S)


@dataclass
class Stream:
    """One GET of an event stream on its own connection: the answer's status, headers and what was read."""

    connection: socket.socket
    status: int = 0
    head: str = ""
    data: bytes = b""

    def read_head(self) -> Stream:
        while b"\r\n\r\n" not in self.data:
            chunk = self.connection.recv(65536)
            assert chunk, f"closed before answering: {self.data!r}"
            self.data += chunk
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        self.head = head.decode()
        self.status = int(self.head.split(" ", 2)[1])
        return self

    def header(self, name: str) -> str:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        raise AssertionError(f"no {name} header in {self.head!r}")

    def read_until(self, expected: bytes) -> None:
        while expected not in self.data:
            chunk = self.connection.recv(65536)
            assert chunk, f"closed before {expected!r}: {self.data!r}"
            self.data += chunk

    def read_to_end(self) -> bytes:
        """Everything until the server closes the connection (the request asked it to, after the answer)."""
        while chunk := self.connection.recv(65536):
            self.data += chunk
        return self.data

    def close(self) -> None:
        self.connection.close()


def send(url: str, path: str, key: str) -> Stream:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    connection = socket.create_connection((host, port), timeout=DEADLINE_S)
    request = f"GET {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    connection.sendall(request.encode())
    return Stream(connection)


def open_stream(url: str, path: str, key: str) -> Stream:
    return send(url, path, key).read_head()


def queued_experiment(url: str, key: str) -> int:
    response = httpx.post(f"{url}/experiments", json={"dataset": "mnist"}, headers=bearer(key), timeout=DEADLINE_S)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def queued_sweep(url: str, key: str) -> int:
    body = {"base": {"dataset": "mnist"}, "grid": {"epochs": [1]}}
    response = httpx.post(f"{url}/sweeps", json=body, headers=bearer(key), timeout=DEADLINE_S)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_more_streams_than_the_pool_holds_leave_other_users_served(live_api: str) -> None:
    key, other = new_key(STREAMER), new_key("bystander")
    paths = [f"/experiments/{queued_experiment(live_api, key)}/events", f"/sweeps/{queued_sweep(live_api, key)}/events"]
    pool = get_engine().pool
    holds = pool.size() + pool._max_overflow  # type: ignore[attr-defined]
    streams = [send(live_api, paths[i % 2], key) for i in range(holds + 1)]
    try:
        # Before the fix every stream held a connection: this waited the pool's 30 s timeout, then failed.
        me = httpx.get(f"{live_api}/me", headers=bearer(other), timeout=DEADLINE_S)
        assert me.status_code == 200, me.text
        assert me.json()["name"] == "bystander"
        assert [s.read_head().status for s in streams] == [200] * len(streams)
        for stream in streams:
            stream.read_until(b"retry: 2000")  # streaming: the first bytes of the body have come
        # Each stream takes a connection for a moment to check its job's status when it has caught up; none keeps one.
        wait_until(lambda: pool.checkedout() == 0, "open streams hold database connections")  # type: ignore[attr-defined]
    finally:
        for stream in streams:
            stream.close()


def test_the_per_user_cap_is_a_429_and_a_closed_stream_frees_its_slot(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_streams_per_user", 2)
    key, other = new_key(STREAMER), new_key("bystander")
    path = f"/experiments/{queued_experiment(live_api, key)}/events"
    first, second = open_stream(live_api, path, key), open_stream(live_api, path, key)
    assert (first.status, second.status) == (200, 200)
    refused = open_stream(live_api, path, key)
    assert refused.status == 429, refused.read_to_end()
    assert int(refused.header("Retry-After")) >= 1
    detail = refused.read_to_end().decode()
    assert "you have 2 live event streams open" in detail and "EPOCHAL_MAX_STREAMS_PER_USER=2" in detail
    assert "close one" in detail
    # The cap is the user's: someone else still gets a stream (of their own experiment).
    theirs = open_stream(live_api, f"/experiments/{queued_experiment(live_api, other)}/events", other)
    assert theirs.status == 200
    # A client that goes away gives its slot back: the next stream of that user is served again.
    first.close()
    reopened: list[Stream] = []

    def served_again() -> bool:
        attempt = open_stream(live_api, path, key)
        if attempt.status == 200:
            reopened.append(attempt)
            return True
        attempt.close()
        return False

    wait_until(served_again, "the slot of a closed stream was not given back")
    for stream in (second, theirs, *reopened):
        stream.close()
    wait_until(lambda: PROCESS_STREAMS.open == 0, f"{PROCESS_STREAMS.open} process slots still taken")
    assert not list(events.redis_client().scan_iter("epochal:streams:user:*")), "user slots still taken"


def test_the_per_process_cap_is_a_503_with_retry_after(live_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_streams_per_process", 2)
    key = new_key(STREAMER)
    path = f"/experiments/{queued_experiment(live_api, key)}/events"
    held = [open_stream(live_api, path, key) for _ in range(2)]
    assert [s.status for s in held] == [200, 200]
    refused = open_stream(live_api, path, key)
    assert refused.status == 503
    assert int(refused.header("Retry-After")) >= 1
    assert "EPOCHAL_MAX_STREAMS_PER_PROCESS" in refused.read_to_end().decode()
    for stream in held:
        stream.close()


def test_a_stream_closes_soon_after_its_key_is_revoked(
    live_api: str, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "stream_recheck_s", 0.2)
    key = new_key(STREAMER)
    stream = open_stream(live_api, f"/experiments/{queued_experiment(live_api, key)}/events", key)
    assert stream.status == 200
    with session_scope() as session:
        found = find_key(session, key)
        assert found is not None
        key_id = found.id
    assert client.post(f"/keys/{key_id}/revoke").status_code == 200
    started = time.monotonic()
    # Before the fix it kept streaming until the job ended or EPOCHAL_EVENTS_MAX_S (300 s): this read timed out.
    text = stream.read_to_end().decode()
    assert "revoked" in text, text
    print(f"\nclosed {time.monotonic() - started:.2f} s after the key was revoked")
    assert open_stream(live_api, "/experiments/1/events", key).status == 401


def test_the_event_routes_document_every_status_they_answer(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/experiments/{experiment_id}/events",
        "/sweeps/{sweep_id}/events",
        "/datasets/{name}/versions/{version}/events",
    ):
        documented = paths[path]["get"]["responses"]
        assert {"200", "401", "404", "422", "429", "503"} <= set(documented), path
        assert "EPOCHAL_MAX_STREAMS_PER_USER" in documented["429"]["description"]
        assert "EPOCHAL_MAX_STREAMS_PER_PROCESS" in documented["503"]["description"]


def test_a_dataset_versions_stream_takes_a_slot_follows_its_preparation_and_gives_the_slot_back(
    live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.upload_archives import class_files, write_zip
    from worker.datasets import prepare

    monkeypatch.setattr(get_settings(), "max_streams_per_user", 1)
    key = new_key(STREAMER)
    archive = write_zip(Path(tempfile.mkdtemp()) / "pets.zip", class_files({"cat": 20, "dog": 20}))
    created = httpx.post(
        f"{live_api}/datasets?name=pets", content=archive.read_bytes(), headers=bearer(key), timeout=DEADLINE_S
    )
    assert created.status_code == 202, created.text
    stream = open_stream(live_api, "/datasets/pets/versions/1/events", key)
    assert stream.status == 200
    stream.read_until(b'"status": "processing"')  # no worker serves the tests' queue: it waits, open
    refused = open_stream(live_api, f"/experiments/{queued_experiment(live_api, key)}/events", key)
    assert refused.status == 429, "the dataset's stream holds the user's one slot"
    refused.close()
    with session_scope() as session:
        dataset_id = session.scalars(select(DatasetVersion.id).where(DatasetVersion.name == "pets")).one()
    assert prepare(dataset_id) == "ready"  # the worker's step, here: the open stream relays it as it happens
    text = stream.read_to_end().decode()
    assert "event: progress" in text and '"status": "ready"' in text, text
    assert text.rindex('"final": true') > text.rindex("event: progress"), "it closes after the final status"
    wait_until(lambda: PROCESS_STREAMS.open == 0, "the slot of a finished dataset stream was not given back")
    assert open_stream(live_api, "/datasets/pets/versions/1/events", key).status == 200  # and it is free again


def test_a_stream_whose_key_cannot_be_checked_closes_saying_why(live_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "stream_recheck_s", 0.2)
    key = new_key(STREAMER)
    stream = open_stream(live_api, f"/experiments/{queued_experiment(live_api, key)}/events", key)
    assert stream.status == 200

    def database_down(*_args: object) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(stream_access, "find_key", database_down)  # the re-check's query, as a database outage ends it
    assert "the database is unavailable" in stream.read_to_end().decode()
    wait_until(lambda: PROCESS_STREAMS.open == 0, "the slot of a stream that ended on an error was not given back")
