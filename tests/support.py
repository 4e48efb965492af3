"""Helpers the tests share: database setup, and the service's real processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import delete, event, text, update
from sqlalchemy.orm import Session

from config import get_settings
from epochal.commands import api_argv, with_this_python, worker_argv
from models import Base
from models.accounts import key_for
from models.db import get_engine, make_engine, session_scope
from tests.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
FINISHED = {"succeeded", "failed", "cancelled"}
ADMIN = "admin"  # the admin every test client calls as
OTHER = "someone-else"  # a second user, not an admin, for ownership tests


def new_key(name: str, *, admin: bool = False, database_url: str | None = None) -> str:
    """A new API key for user `name`, created (admin or not) if missing: what `python -m epochal keys create` does.

    In the test database unless `database_url` names another one.
    """
    if database_url is None or database_url == get_settings().database_url:
        with session_scope() as session:
            return key_for(session, name, admin=admin).token
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            return key_for(session, name, admin=admin).token
    finally:
        engine.dispose()


def release_waiting(publish: Callable[[int, str], None] | None = None, holder: str = "tests@host:1") -> list[int]:
    """One dispatcher pass in the test process, holding the role as `holder`: the ids it released to the broker
    (through `publish`, by default the API's own task publisher)."""
    from domain.dispatch import DISPATCHER_ROLE
    from infra.task_publisher import enqueue_training
    from models.roles import acquire_or_renew
    from upkeep.dispatcher import dispatch

    with session_scope() as session:
        assert acquire_or_renew(session, DISPATCHER_ROLE, holder, 30) is not None, "another process dispatches"
    return dispatch(publish or enqueue_training, holder).released


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def migrate_to_head(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


def reset_database(url: str) -> None:
    """Drop everything in a server database, so a run never depends on what the last one left."""
    engine = make_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        else:
            Base.metadata.drop_all(connection)
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def empty_all_tables() -> None:
    """Every row a test may have made gone; the rows the migrations seed (the built-in datasets) kept as seeded (no
    content hash, which a worker records when it first reads one)."""
    with get_engine().begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name == "dataset_version":
                connection.execute(delete(table).where(table.c.owner_id.is_not(None)))
                connection.execute(update(table).values(content_sha256=None))
            else:
                connection.execute(delete(table))


def send_whole_then_read(base_url: str, head: bytes, body_chunks: Iterable[bytes]) -> bytes:
    """Send a request head and its whole body, and only then read the answer to its end, as `requests` does.

    A server that answers early and closes with the body unread resets the connection: the send or the read
    raises ConnectionResetError (or BrokenPipeError), which fails the calling test.
    """
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    assert port is not None
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(head)
        for chunk in body_chunks:
            connection.sendall(chunk)
        answer = b""
        while data := connection.recv(65536):
            answer += data
    return answer


@dataclass
class Service:
    """The API and its workers as real processes, started with the same commands as production."""

    workdir: Path
    queue: str
    env: dict[str, str] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    base_url: str = ""
    api_key: str = ""  # an admin's key, made when the API starts; http() sends it

    def http(self, timeout: float = 60, key: str | None = None) -> httpx.Client:
        """An HTTP client for the running API that authenticates with `key` (default: the admin key)."""
        return httpx.Client(base_url=self.base_url, timeout=timeout, headers=bearer(key or self.api_key))

    def _spawn(self, name: str, command_line: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("ab")  # appended: a restarted process keeps one log
        process = subprocess.Popen(
            command_line, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append((name, process))

    def start_worker(self, name: str, queue: str | None = None, env: dict[str, str] | None = None) -> None:
        self._spawn(name, with_this_python(worker_argv(queue or self.queue, hostname=f"{name}@%h")), env)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        """The latest process started under `name` (a restarted worker replaces its predecessor)."""
        return [process for process_name, process in self.processes if process_name == name][-1]

    def start_api(self) -> None:
        if not self.api_key:
            self.api_key = new_key(ADMIN, admin=True, database_url=self.env.get("EPOCHAL_DATABASE_URL"))
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self._spawn("api", with_this_python(api_argv("127.0.0.1", port)))
        try:
            wait_healthy(self.base_url, self.process("api"), timeout_s=60)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{self.logs()}") from None

    def wait_for_workers(self, count: int, timeout_s: float = 60) -> None:
        """Block until `count` workers answer a ping, so a submitted job is not waiting on a cold start."""
        from worker.celery_app import app

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # On a connection of its own, closed after: a ping's reply consumer leaves a BRPOP pending on its
            # connection, which must not go back to the broker pool this process's API publishes through.
            with app.connection_for_write() as connection:
                replies = app.control.ping(timeout=1.0, connection=connection) or []
            if len(replies) >= count:
                return
        raise RuntimeError(f"only some of {count} workers started:\n{self.logs()}")

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.workdir / f'{name}.log').read_text(errors='replace')[-tail:]}"
            for name in dict.fromkeys(name for name, _ in self.processes)
        )

    def stop(self) -> None:
        for _, process in self.processes:
            process.terminate()
        for _, process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


# Leases short enough that recovery from a lost worker takes seconds in the tests, not minutes.
FAST_RECOVERY = {
    "EPOCHAL_LEASE_S": "4",
    "EPOCHAL_HEARTBEAT_S": "0.5",
    "EPOCHAL_REAPER_INTERVAL_S": "1",
    "EPOCHAL_REPUBLISH_AFTER_S": "10",
    "EPOCHAL_PREPARE_GRACE_S": "2",
    "EPOCHAL_DISPATCH_INTERVAL_S": "1",
    # As many slots as the tests' workers could ever take: the dispatcher then releases at once, as submission
    # used to publish at once. The dispatch tests set their own.
    "EPOCHAL_SLOTS_PER_QUEUE": "8",
    # The in-process test API (conftest.py) takes no roles; the service's own processes do, as in production.
    "EPOCHAL_TAKE_ROLES": "1",
}


def service_env(queue: str, queues: Sequence[str] = ()) -> dict[str, str]:
    return {
        **os.environ,
        **FAST_RECOVERY,
        "EPOCHAL_DEFAULT_QUEUE": queue,
        "EPOCHAL_QUEUES": ",".join([queue, *queues]),
    }


@contextmanager
def running_service(
    workdir: Path, queue: str, workers: Sequence[str], *, queues: Sequence[str] = (), env: Mapping[str, str] = {}
) -> Iterator[Service]:
    """The API and one worker process per name in `workers`, all on `queue`; stopped on exit. Each takes the reaper
    role when it is free (upkeep/keeper.py).

    `queues` are further queues the API accepts (tests start their workers themselves); `env` adds or overrides
    settings of every process.
    """
    service = Service(workdir, queue, {**service_env(queue, queues), **env})
    try:
        for name in workers:
            service.start_worker(name)
        service.start_api()
        service.wait_for_workers(len(workers))
        yield service
    finally:
        service.stop()


def start_serve(
    tmp_path: Path, data_dir: Path, port: int, log_name: str, env: Mapping[str, str] = {}
) -> subprocess.Popen[bytes]:
    """`python -m epochal serve` on its embedded defaults, state in `tmp_path / "state"`, once /health answers 200.

    In a session of its own, so that a test can end the whole tree with `os.killpg(serve.pid, ...)`; `env` adds
    settings (EPOCHAL_*) to the defaults.
    """
    serve_env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    serve_env |= {"EPOCHAL_STATE_DIR": str(tmp_path / "state"), "EPOCHAL_DATA_DIR": str(data_dir), **env}
    log = (tmp_path / log_name).open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "epochal", "serve", "--port", str(port)],
        cwd=ROOT,
        env=serve_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", serve, timeout_s=90)
    except RuntimeError as exc:
        with suppress(ProcessLookupError):  # it may have exited already: what the log says is the point
            os.killpg(serve.pid, signal.SIGKILL)
        raise AssertionError(f"{exc}\n{(tmp_path / log_name).read_text(errors='replace')}") from None
    return serve


def wait_until_finished(
    client: httpx.Client, experiment_ids: list[int], timeout_s: float, service: Service
) -> list[dict[str, Any]]:
    """Poll until every experiment finished; fail with the worker logs if one does not in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        bodies = [client.get(f"/experiments/{i}").json() for i in experiment_ids]
        if all(b["status"] in FINISHED for b in bodies):
            return bodies
        if time.monotonic() > deadline:
            raise AssertionError(f"not finished in {timeout_s}s: {[b['status'] for b in bodies]}\n{service.logs()}")
        time.sleep(0.5)


@dataclass
class Work:
    """What a request cost: the functions each worker-thread hop ran, and the SQL statements sent."""

    hops: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)


@contextmanager
def counted_work() -> Iterator[Work]:
    """Record the worker-thread hops and SQL statements of the requests made inside.

    Every hop (run_in_threadpool, a sync dependency or handler, FastAPI validating a sync route's answer, the
    batcher's model call) goes through anyio's `to_thread.run_sync`: counting its calls counts the hops.
    """
    from anyio import to_thread

    work, engine, original_run_sync = Work(), get_engine(), to_thread.run_sync

    async def counting_run_sync(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        called = function.func if isinstance(function, partial) else function  # run_in_threadpool wraps it
        work.hops.append(getattr(called, "__name__", repr(called)))
        return await original_run_sync(function, *args, **kwargs)

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        work.statements.append(statement)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(to_thread, "run_sync", counting_run_sync)
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield work
        finally:
            event.remove(engine, "before_cursor_execute", record)


def parse_events(lines: Iterable[str], stop_after: int | None = None) -> list[dict[str, Any]]:
    """Server-Sent Events from their lines: each `{"id", "event", "data"}` (data decoded from JSON), comments
    skipped; at most `stop_after`."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in [*lines, ""]:  # a body that ends without its blank line still ends its last event
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and "event" in current:
            events.append(current)
            current = {}
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def read_events(
    http: httpx.Client, path: str, last_event_id: str | None = None, stop_after: int | None = None
) -> list[dict[str, Any]]:
    """The events of one SSE connection, until the server closes it (or `stop_after` events were read)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_events(response.iter_lines(), stop_after)
