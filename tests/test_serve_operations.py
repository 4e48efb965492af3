"""`python -m epochal serve` as an operator relies on it: a process killed outright (as the out-of-memory killer
does) comes back by itself, the broker with its queue; the state folder is for its owner alone; and a backup taken while
it runs restores into a new state folder that serves the same work.

Each serve start costs seconds, so the module shares one service; each test asks for what it needs of it.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from celery import Celery

from epochal.__main__ import Adopted, Restartable, wait_until_bindable
from epochal.backup import BackupError, restore
from tests.seed import png
from tests.support import FINISHED, ROOT, bearer, free_port, start_serve

pytestmark = pytest.mark.e2e

PARKED = "parked"  # a queue serve's worker does not consume until told to: its job waits in the broker
# The smallest job that still trains a network the API can load.
TINY = {"dataset": "mnist", "epochs": 1, "batch_size": 64, "train_size": 200, "queue": PARKED}


@dataclass
class Served:
    """A running `serve`: its process (a session leader), state folder, port, admin key and log."""

    process: subprocess.Popen[bytes]
    workdir: Path
    port: int

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    @property
    def log(self) -> str:
        return (self.workdir / "serve.log").read_text(errors="replace")

    def http(self) -> httpx.Client:
        key = (self.state / "api-key").read_text().strip()
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=bearer(key), timeout=30)

    def child(self, marker: str) -> psutil.Process:
        """The one child of serve whose command line contains `marker`."""
        (found,) = [p for p in psutil.Process(self.process.pid).children() if marker in " ".join(p.cmdline())]
        return found


def wait_for(what: str, check: Any, served: Served, timeout_s: float = 60) -> Any:
    """`check()`'s first truthy answer; fails with serve's log after `timeout_s`. Errors count as not yet."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = check()
            if answer:
                return answer
        except (httpx.HTTPError, redis.RedisError, OSError):
            pass
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s}s\n{served.log[-6000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("serve-operations")
    # A state folder as a shell makes one (0755), with a file from an older version in it (0644).
    state = workdir / "state"
    state.mkdir()
    state.chmod(0o755)
    (state / "notes.txt").write_text("left here by hand\n")
    (state / "notes.txt").chmod(0o644)
    port = free_port()
    process = start_serve(workdir, data_dir, port, "serve.log", env={"EPOCHAL_QUEUES": PARKED})
    try:
        yield Served(process, workdir, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        finally:
            with suppress(ProcessLookupError):  # what a failure left
                os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Trained:
    """A job queued before the broker was killed and trained after it came back."""

    experiment: dict[str, Any]
    queued_before_kill: int
    queued_after_restart: int


@pytest.fixture(scope="module")
def trained(served: Served) -> Trained:
    """Queue a job where no worker takes it, kill -9 the broker, then let serve's worker take the queue."""
    socket_path = served.state / "broker.sock"
    broker = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=5)
    with served.http() as http:
        created = http.post("/experiments", json=TINY)
        assert created.status_code == 202, created.text
        experiment_id = created.json()["id"]
        # The dispatcher releases it to the broker (a pass after the submission's nudge), where it waits.
        queued_before = wait_for("the job released to the broker", lambda: broker.llen(PARKED), served)
        old = served.child("redis-server")
        old.kill()
        old.wait(timeout=10)
        wait_for("the broker was started again", lambda: "the broker exited" in served.log, served)
        restarted = wait_for("a new broker answers", lambda: broker.info("server")["process_id"], served)
        assert restarted != old.pid
        assert served.child("redis-server").pid == restarted  # serve's own child, on the same socket
        queued_after = broker.llen(PARKED)

        # The worker reconnected if it answers over the new broker; it is then told to take the parked queue.
        control = Celery(broker=f"redis+socket://{socket_path}")
        try:

            def worker_took_the_queue() -> bool:
                workers = [name for reply in control.control.ping(timeout=1) for name in reply]
                return bool(workers and control.control.add_consumer(PARKED, destination=workers, reply=True))

            wait_for("the worker answers over the restarted broker", worker_took_the_queue, served)
        finally:
            control.close()

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = http.get(f"/experiments/{experiment_id}").json()
            return body if body["status"] in FINISHED else None

        experiment = wait_for("the parked job trained", finished, served, timeout_s=300)
    return Trained(experiment, queued_before, queued_after)


def test_an_api_killed_outright_is_started_again_with_the_same_data(served: Served) -> None:
    with served.http() as http:
        created = http.post("/users", json={"name": "made-before-the-kill"})
        assert created.status_code == 201, created.text
        before = http.get("/users").json()
        api = served.child("epochal.api_server")
        api.kill()  # no cleanup in it: what an out-of-memory kill leaves
        api.wait(timeout=10)
        wait_for("the API was started again", lambda: "the API exited" in served.log, served)
        wait_for("/health answers again", lambda: http.get("/health").status_code == 200, served)
        assert served.child("epochal.api_server").pid != api.pid
        assert http.get("/users").json() == before  # the same database behind it, the same key accepted
    assert served.process.poll() is None, "serve kept running"


def test_a_broker_killed_outright_comes_back_with_its_queue_and_the_worker_reconnects(
    served: Served, trained: Trained
) -> None:
    assert trained.queued_before_kill == 1
    assert trained.queued_after_restart == trained.queued_before_kill, "the append-only file kept the queue"
    assert trained.experiment["status"] == "succeeded", trained.experiment["error"]
    assert trained.experiment["summary"]["epochs_done"] == 1
    assert served.process.poll() is None, "serve kept running"


def test_everything_in_the_state_folder_is_for_its_owner_only(served: Served, trained: Trained) -> None:
    # `trained` restarted the broker and trained a job: every file serve and its children make is there by now.
    assert f"the state folder {served.state} was open to other accounts" in served.log
    paths = [served.state, *served.state.rglob("*")]
    names = {path.name for path in paths}
    assert {"epochal.db", "epochal.db-wal", "api-key", "broker.sock", "broker.log", "appendonlydir"} <= names
    assert list((served.state / "appendonlydir").iterdir()), "the broker's append-only files"
    open_to_others = {str(p.relative_to(served.workdir)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths}
    assert {path: mode for path, mode in open_to_others.items() if int(mode, 8) & 0o077} == {}


def epochal(command: list[str], state: Path) -> subprocess.CompletedProcess[str]:
    """`python -m epochal COMMAND` as an operator runs it beside serve: only the state folder set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")} | {"EPOCHAL_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "epochal", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_backup_taken_while_it_serves_restores_into_a_new_state_folder_that_serves_the_same(
    served: Served, trained: Trained, tmp_path: Path, data_dir: Path
) -> None:
    image = png()
    predict = f"/experiments/{trained.experiment['id']}/predictions"
    with served.http() as http:
        experiments = http.get("/experiments").json()
        prediction = http.post(predict, content=image, headers={"Content-Type": "image/png"})
        assert prediction.status_code == 200, prediction.text
        file = tmp_path / "epochal.backup"
        made = epochal(["backup", str(file)], served.state)
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(file.stat().st_mode) == 0o600

        # Over the running service's database: refused, and that database goes on serving as before.
        with pytest.raises(BackupError, match="--force"):
            restore(f"sqlite:///{served.state / 'epochal.db'}", file)
        assert http.get("/experiments").json() == experiments

    restored_state = tmp_path / "restored" / "state"
    restored = epochal(["restore", str(file)], restored_state)
    assert restored.returncode == 0, restored.stderr
    assert stat.S_IMODE(restored_state.stat().st_mode) == 0o700
    port = free_port()
    again = start_serve(tmp_path / "restored", data_dir, port, "serve.log")
    try:
        # The keys are in the database: the old key works, and no new first key was made.
        assert not (restored_state / "api-key").exists()
        with served.http() as old_key:
            old_key.base_url = httpx.URL(f"http://127.0.0.1:{port}")
            assert old_key.get("/experiments").json() == experiments
            same = old_key.post(predict, content=image, headers={"Content-Type": "image/png"})
            assert same.status_code == 200, same.text
            assert same.json()["probabilities"] == pytest.approx(prediction.json()["probabilities"], abs=1e-6)
            assert same.json()["label"] == prediction.json()["label"]
    finally:
        again.send_signal(signal.SIGTERM)
        try:
            assert again.wait(timeout=60) == 0
        finally:
            with suppress(ProcessLookupError):
                os.killpg(again.pid, signal.SIGKILL)


def test_a_process_that_keeps_exiting_is_given_up_after_five_restarts_in_a_minute() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen(["false"]))
        started[-1].wait(timeout=10)
        return started[-1]

    failing = Restartable("failing part", start)
    answers = [failing.keep_running() for _ in range(Restartable.MAX_RESTARTS + 1)]
    assert answers == [True] * Restartable.MAX_RESTARTS + [False]
    assert len(started) == Restartable.MAX_RESTARTS + 1  # the first start and five more


def test_a_restarted_api_waits_until_its_port_is_free() -> None:
    port = free_port()
    holder = socket.create_server(("127.0.0.1", port))  # an old API process that is still closing the port
    closing = threading.Timer(1.0, holder.close)
    closing.start()
    began = time.monotonic()
    assert wait_until_bindable("127.0.0.1", port, timeout_s=30)
    waited = time.monotonic() - began
    closing.join()
    assert 0.9 < waited < 10
    socket.create_server(("127.0.0.1", port)).close()  # and the new one can bind it


def test_serve_on_a_port_in_use_says_so_at_once(tmp_path: Path) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # another program listening there
        began = time.monotonic()
        refused = epochal(["serve", "--port", str(port)], tmp_path / "state")
    assert refused.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in refused.stderr and "--port" in refused.stderr
    assert time.monotonic() - began < 60, "not after the API failed to start again and again"
    assert not (tmp_path / "state" / "epochal.db").exists(), "it stopped before migrating anything"


def test_a_broker_left_by_an_earlier_start_is_watched_by_its_pid() -> None:
    left = subprocess.Popen(["sleep", "60"])  # stands for a broker whose serve was killed: not this one's child
    adopted = Adopted(left.pid)
    assert adopted.poll() is None
    left.kill()
    left.wait(timeout=10)  # reaped, as its real parent (init) would
    assert adopted.poll() is not None, "gone: serve starts a broker of its own"
