"""A training process that stops in the middle of a database write must not keep its job's row from the reaper.

PostgreSQL only: SQLite has no row locks and no server to end a session on. The fault is made real with
a TCP proxy between a worker process and PostgreSQL that stops forwarding halfway through a write of an
epoch's resume state, which is what the server sees from a process stopped (SIGSTOP, a VM pause) while it
sends a large statement: a statement that never finishes arriving, with no idle timer running, holding the
job's row locked. The reaper's own wait for the row, and what it may do about it, is then checked directly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from config import get_settings
from models import EpochMetric, Experiment, attempt_sessions
from models.db import make_engine, session_scope
from tests.test_fencing import Published, expire_lease, read, submit
from upkeep import reaper
from worker import jobs

WORKER = "stalled-test@host"
DEADLINE_S = attempt_sessions.LOCK_WAIT_S * 2 + 30
T = TypeVar("T")

pytestmark = pytest.mark.skipif(
    not get_settings().database_url.startswith("postgresql"),
    reason="PostgreSQL only: SQLite has no row locks and no server-side sessions (set EPOCHAL_DATABASE_URL)",
)


class StallingProxy:
    """Forwards TCP to PostgreSQL, and stops forwarding what a client sends once it has sent `stall_after` bytes."""

    def __init__(self, host: str, port: int, stall_after: int) -> None:
        self.upstream = (host, port)
        self.stall_after = stall_after
        self.stalled = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        sent = 0
        try:
            while chunk := source.recv(65536):
                if from_client and sent + len(chunk) > self.stall_after:
                    # Forward up to the limit and swallow the rest: the server waits for the message's end.
                    target.sendall(chunk[: max(0, self.stall_after - sent)])
                    self.stalled.set()
                    while source.recv(65536):
                        pass
                    break
                target.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):  # either side gone: the other learns it at once
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


# The worker's epoch write, run in a process of its own whose connections go through the proxy.
RECORD_EPOCH = textwrap.dedent(
    """
    import sys
    from training.results import EpochResult, ResumePoint
    from worker import jobs

    experiment_id, attempt = int(sys.argv[1]), int(sys.argv[2])
    job = jobs.ClaimedJob(experiment_id, attempt, "api-tests", None, None)  # the write reads none of the rest
    result = EpochResult(epoch=1, loss=0.5, accuracy=0.8, val_loss=0.6, val_accuracy=0.7, seconds=1.0)
    try:
        jobs.record_epoch(job, result, ResumePoint(1, b"w" * 4_000_000, 1, 0.7, None))
    except jobs.Superseded as exc:
        print("superseded:", exc, flush=True)
        sys.exit(3)
    print("written", flush=True)
    """
)


@pytest.fixture
def proxy() -> Iterator[StallingProxy]:
    url = make_url(get_settings().database_url)
    # Past the connection's start-up and the small statements before it, well inside the 4 MB state.
    stalling = StallingProxy(url.host or "127.0.0.1", url.port or 5432, stall_after=1_000_000)
    yield stalling
    stalling.close()


def backends_named(experiment_id: int, attempt: int) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        rows = session.execute(
            text("SELECT state, wait_event FROM pg_stat_activity WHERE application_name = :name"),
            {"name": attempt_sessions.attempt_name(experiment_id, attempt)},
        ).all()
    return [(row.state, row.wait_event) for row in rows]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def within(deadline_s: float, call: Callable[[], T]) -> T:
    """`call()`, which must return: a call stuck behind a lock fails the test instead of hanging it."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline_s)
    assert not thread.is_alive(), f"still waiting after {deadline_s:g} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def reap_within(deadline_s: float) -> reaper.ReapReport:
    return within(deadline_s, lambda: reaper.reap(Published()))


def test_a_process_stopped_mid_write_loses_its_row_to_the_reaper_once_its_lease_expired(
    client: TestClient, proxy: StallingProxy
) -> None:
    job = claimed(client)
    experiment_id = job.experiment_id
    expire_lease(experiment_id)  # committed now: the stalled write below would renew it, but never commits
    url = make_url(get_settings().database_url).set(host="127.0.0.1", port=proxy.port)
    through_proxy = url.render_as_string(hide_password=False)
    env = {**os.environ, "EPOCHAL_DATABASE_URL": through_proxy, "EPOCHAL_LEASE_S": "1", "EPOCHAL_HEARTBEAT_S": "0.5"}
    writer = subprocess.Popen(
        [sys.executable, "-c", RECORD_EPOCH, str(experiment_id), str(job.attempt)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proxy.stalled.wait(60), "the writer never got to its resume state"
        # Mid-statement, the server waits for the rest of the message with no timer: the idle-in-transaction
        # bound (1 s here) never fires, and the row stays locked.
        wait_for("the stalled statement", lambda: ("active", "ClientRead") in backends_named(*_key(job)))
        time.sleep(2.5)
        assert ("active", "ClientRead") in backends_named(*_key(job)), "the server ended it on its own"

        report = reap_within(DEADLINE_S)

        assert report.requeued == [experiment_id]
        assert read(client, experiment_id)["status"] == "queued"
        assert [a["outcome"] for a in read(client, experiment_id)["attempts"]] == ["lost"]
        output, _ = writer.communicate(timeout=120)
        assert writer.returncode == 3 and "superseded" in output, output  # it learned, and wrote nothing
    finally:
        writer.kill()
        writer.wait()
    assert backends_named(*_key(job)) == []
    with session_scope() as session:
        assert session.scalars(select(EpochMetric).where(EpochMetric.experiment_id == experiment_id)).all() == []


def _key(job: jobs.ClaimedJob) -> tuple[int, int]:
    return job.experiment_id, job.attempt


def claimed(client: TestClient) -> jobs.ClaimedJob:
    """A job submitted and claimed by a worker: running, with a live lease."""
    job = jobs.claim(submit(client), WORKER)
    assert job is not None
    return job


@contextlib.contextmanager
def row_held(experiment_id: int, by: jobs.ClaimedJob | None) -> Iterator[Session]:
    """An open transaction that locks the job's row, as attempt `by`'s own (None: nobody's); rolled back after.

    With no idle bound of its own, it stands for the stall the server cannot time out (a process stopped
    mid-statement, as in the first test) without needing the proxy.
    """
    engine = make_engine(get_settings().database_url)
    holder = Session(engine)
    try:
        if by is not None:
            attempt_sessions.name_transaction(holder, *_key(by))
        holder.execute(update(Experiment).where(Experiment.id == experiment_id).values(worker=Experiment.worker))
        yield holder
    finally:
        with contextlib.suppress(DBAPIError):  # a holder ended on the server has nothing left to roll back
            holder.rollback()
        holder.close()
        engine.dispose()


def alive(holder: Session) -> bool:
    try:
        return holder.execute(text("SELECT 1")).scalar() == 1
    except DBAPIError:
        return False


def test_a_row_held_by_anyone_else_waits_for_the_next_pass_and_is_left_running(client: TestClient) -> None:
    # A user's cancel, an operator's query: the reaper ends only the expired attempt's own transactions.
    job = claimed(client)
    expire_lease(job.experiment_id)
    with row_held(job.experiment_id, by=None) as holder:
        report = reap_within(DEADLINE_S)
        assert job.experiment_id not in report.requeued
        assert alive(holder)
    assert reap_within(DEADLINE_S).requeued == [job.experiment_id]


def test_a_row_the_reaper_may_not_free_is_left_for_the_next_pass_and_the_pass_goes_on(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. a reaper whose database role may not end the workers' sessions: that job waits, the others do not.
    stalled, other = claimed(client), claimed(client)
    for job in (stalled, other):
        expire_lease(job.experiment_id)

    def refused(session: Session, _experiment_id: int, _attempt: int) -> int:
        session.execute(text("SELECT pg_terminate_backend(pid) FROM no_such_view"))  # fails, as a refusal would
        return 0

    monkeypatch.setattr(attempt_sessions, "end_stalled_transactions", refused)
    with row_held(stalled.experiment_id, by=stalled) as holder:
        report = reap_within(DEADLINE_S)
        assert report.requeued == [other.experiment_id]
        assert alive(holder)
    monkeypatch.undo()
    assert reap_within(DEADLINE_S).requeued == [stalled.experiment_id]


def test_a_row_held_by_a_live_attempt_is_never_taken(client: TestClient) -> None:
    # Its lease is current: the reaper does not even look at the row, let alone end the attempt's session.
    job = claimed(client)
    with row_held(job.experiment_id, by=job) as holder:
        report = reap_within(DEADLINE_S)
        assert job.experiment_id not in report.requeued
        assert alive(holder)
    assert read(client, job.experiment_id)["status"] == "running"


def test_the_server_ends_a_transaction_left_idle_for_a_lease(client: TestClient) -> None:
    # Between statements the idle-in-transaction bound is enough: the server ends the session by itself.
    job = claimed(client)
    engine = make_engine(get_settings().database_url)
    holder = Session(engine)
    attempt_sessions.bound_idle_transaction(holder, lease_s=1)
    holder.execute(update(Experiment).where(Experiment.id == job.experiment_id).values(worker=Experiment.worker))
    try:
        time.sleep(2.5)
        with pytest.raises(DBAPIError):
            holder.execute(text("SELECT 1"))
    finally:
        holder.close()
        engine.dispose()
    with session_scope() as session:  # the lock went with it
        attempt_sessions.bound_lock_wait(session, 5)
        session.execute(update(Experiment).where(Experiment.id == job.experiment_id).values(worker="after"))


def test_cancelling_a_job_whose_worker_stopped_mid_write_ends_it_at_once(client: TestClient) -> None:
    job = claimed(client)
    expire_lease(job.experiment_id)
    with row_held(job.experiment_id, by=job) as holder:
        response = within(DEADLINE_S, lambda: client.post(f"/experiments/{job.experiment_id}/cancel"))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert [a["outcome"] for a in response.json()["attempts"]] == ["lost"]
        assert not alive(holder)  # the stalled transaction was ended, and its lock with it


def test_a_cancel_behind_a_row_that_stays_locked_answers_503_instead_of_hanging(client: TestClient) -> None:
    # The lease is current, so the holder is presumed alive and nothing is ended: the user is told to retry.
    job = claimed(client)
    with row_held(job.experiment_id, by=job) as holder:
        response = within(DEADLINE_S, lambda: client.post(f"/experiments/{job.experiment_id}/cancel"))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert "is being written" in response.json()["detail"] and "try again" in response.json()["detail"]
        assert alive(holder)
    response = client.post(f"/experiments/{job.experiment_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "running"  # flagged: it stops at its next epoch end
