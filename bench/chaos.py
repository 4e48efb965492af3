"""Fault injection against a real Epochal service: repeat fault rounds over many jobs and check the invariants.

    python bench/chaos.py                                  # embedded: SQLite + embedded Redis, every fault
    python bench/chaos.py --rounds 20 --faults child-kill,service-kill
    python bench/chaos.py --mode server --rounds 5         # PostgreSQL and Redis on 127.0.0.1

It starts the service itself with the README's command (`python -m epochal serve`) in a fresh state
folder, with short leases so a lost attempt is noticed in seconds. Each round submits a few small
MNIST jobs, waits until one of them has finished an epoch and is still running, injects one fault,
restores what the fault killed, and waits (with a deadline) until every job of the round has ended.
Then it checks what the service promises:

- every accepted job ends: succeeded, or failed with an error after the attempt cap (else *lost*);
- a succeeded job has epochs exactly 1..N, its checkpoint downloads with the listed sha256 (else *lost*);
- no epoch is trained twice: each attempt's first epoch is its resumed_from_epoch + 1, epoch rows'
  attempts never go down, and a resume starts after every epoch finished before the fault (else
  *duplicated*);
- nothing is left running or queued after the round (else *stuck*);
- the fault hit: an attempt ended `lost` or `interrupted` (else the round is a *miss*).

Recovery is the time from the fault to the hit job's next attempt start (or its end, when there is
none). It prints one table per mode and fault and exits non-zero if any invariant broke. All traffic
goes to 127.0.0.1 and unix sockets; every wait is bounded.

Faults: child-kill (kill -9 the training pool child), child-freeze (SIGSTOP it for two leases, then
SIGCONT: a VM pause or a swap storm; it wakes superseded and must write nothing), worker-kill (kill -9
the worker parent and child; serve starts it again, as after an out-of-memory kill), service-kill
(kill -9 the whole serve tree, run the README command again), broker-drop (Redis drops the worker's
connections), reaper-kill (kill -9 whichever process holds the reaper role, found through the role's
row, at a random moment of its interval, then the training child: another process must take the role
and settle the job), dispatcher-kill (the same for the dispatcher role: another process must take it and
release the requeued job to a worker again), api-kill (kill -9 the API, then the training child),
broker-kill (embedded: kill -9 the embedded broker, whose append-only file keeps the queue, then the training
child), and in server mode only broker-restart (the machine's Redis, losing every queued message) and db-restart
(PostgreSQL). api-kill, broker-kill, and reaper-kill or dispatcher-kill when the API holds the role, need serve to
start the API or the broker again; where it does not, the round says so and runs serve again, as service-kill does.
There is no beat-kill: no beat process is left to kill (the reaper is a role, docs/results/reliability.md).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: epochal.commands and tests.datagen live at the root

from epochal.commands import with_this_python  # noqa: E402
from tests.invariants import check_job, find_target  # noqa: E402
from tests.processes import free_port  # noqa: E402

FAULTS = (
    *("child-kill", "child-freeze", "worker-kill", "service-kill", "broker-drop", "reaper-kill", "dispatcher-kill"),
    *("api-kill", "broker-kill", "broker-restart", "db-restart"),
)
EMBEDDED_FAULTS = (
    *("child-kill", "child-freeze", "worker-kill", "service-kill", "broker-drop", "reaper-kill", "dispatcher-kill"),
    *("api-kill", "broker-kill"),
)
EMBEDDED_ONLY = {"broker-kill"}  # the machine's Redis in server mode is not ours to kill
FINISHED = {"succeeded", "failed", "cancelled"}
SERVER_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/epochal_chaos"
SERVER_BROKER_URL = "redis://127.0.0.1:6379/14"
# The machine's Redis, restarted exactly as it was started, so the other users of it get it back unchanged.
REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
    "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip
PR_SET_CHILD_SUBREAPER = 36


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def become_subreaper() -> None:
    """Adopt orphaned descendants, so processes of a killed `serve` stay findable (and get reaped) here.

    Killing `serve` leaves its API, reaper and broker running with no parent; without this they would
    go to PID 1, out of reach of the search by parentage, and as zombies possibly forever.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_zombies() -> None:
    # Bounded: at most as many as could exist; ECHILD (none left) ends it at once.
    for _ in range(1000):
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_until(check: Callable[[], Any], timeout_s: float, interval_s: float = 0.2) -> Any:
    """`check()`'s first truthy value, or None once `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        reap_zombies()
        time.sleep(interval_s)


def when(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


# --- the service's processes ------------------------------------------------------------------------


def _args(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def _is_celery_worker(args: list[str]) -> bool:
    return "celery" in args and "worker" in args


@dataclass
class Roles:
    """The service's processes, told apart by their command lines (the same ones epochal.commands builds)."""

    serve: list[psutil.Process] = field(default_factory=list)
    worker: list[psutil.Process] = field(default_factory=list)  # the prefork parent of the training worker
    child: list[psutil.Process] = field(default_factory=list)  # its pool child, the process that trains
    api: list[psutil.Process] = field(default_factory=list)  # the API launcher (and any uvicorn processes of its)
    broker: list[psutil.Process] = field(default_factory=list)  # embedded mode only

    def everything(self) -> list[psutil.Process]:
        return [*self.serve, *self.worker, *self.child, *self.api, *self.broker]


def find_roles(state_dir: Path) -> Roles:
    """Only among this process's descendants: other people's workers on this machine are never touched."""
    roles = Roles()
    descendants = psutil.Process().children(recursive=True)
    workers = {p.pid for p in descendants if _is_celery_worker(_args(p))}
    for process in descendants:
        args = _args(process)
        joined = " ".join(args)
        if "epochal" in args and "serve" in args:
            roles.serve.append(process)
        elif _is_celery_worker(args) and process.ppid() in workers:
            roles.child.append(process)  # billiard forks the pool child: same command line as its parent
        elif _is_celery_worker(args):
            roles.worker.append(process)
        elif "epochal.api_server" in args or "uvicorn" in args:
            roles.api.append(process)
        elif args and "redis-server" in args[0] and str(state_dir) in joined:
            roles.broker.append(process)  # never the machine's Redis, which has no unix socket in our folder
    return roles


def kill_all(processes: list[psutil.Process], timeout_s: float = 10) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    # Zombies count as alive to psutil; reaping them is what makes them go.
    wait_until(lambda: not [p for p in processes if _alive(p)], timeout_s, 0.05)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the service, started with the README's command -------------------------------------------------


@dataclass
class Settings:
    mode: str
    port: int
    state_dir: Path
    data_dir: Path
    lease_s: float
    heartbeat_s: float
    reaper_interval_s: float
    republish_after_s: float
    database_url: str | None
    broker_url: str | None


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.port}"
        self.key = ""
        self.http = httpx.Client(base_url=self.base_url, timeout=15)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
        env |= {
            "EPOCHAL_STATE_DIR": str(settings.state_dir),
            "EPOCHAL_DATA_DIR": str(settings.data_dir),
            "EPOCHAL_LEASE_S": f"{settings.lease_s:g}",
            "EPOCHAL_HEARTBEAT_S": f"{settings.heartbeat_s:g}",
            "EPOCHAL_REAPER_INTERVAL_S": f"{settings.reaper_interval_s:g}",
            # The dispatcher's interval is also its lease: as short as the reaper's, so a takeover takes seconds.
            "EPOCHAL_DISPATCH_INTERVAL_S": f"{settings.reaper_interval_s:g}",
            "EPOCHAL_REPUBLISH_AFTER_S": f"{settings.republish_after_s:g}",
        }
        if settings.database_url:
            env["EPOCHAL_DATABASE_URL"] = settings.database_url
        if settings.broker_url:
            env["EPOCHAL_BROKER_URL"] = settings.broker_url
        self.env = env
        self.serve_argv = with_this_python(["epochal", "serve", "--port", str(settings.port)])

    def log_file(self, name: str) -> Any:
        return (self.settings.state_dir / f"{name}.log").open("ab")  # appended: one log across restarts

    def start(self) -> None:
        """Run the README command; wait until the API answers healthy and the worker has its pool child."""
        subprocess.Popen(
            self.serve_argv, cwd=ROOT, env=self.env, stdout=self.log_file("serve"), stderr=subprocess.STDOUT
        )
        if not wait_until(self.healthy, 180, 0.5):
            raise RuntimeError(f"the service did not become healthy:\n{self.logs()}")
        key_file = self.settings.state_dir / "api-key"
        self.key = key_file.read_text().strip()
        self.http.headers["Authorization"] = f"Bearer {self.key}"
        self.wait_for_worker()

    def wait_for_worker(self, replacing: Collection[int] = ()) -> None:
        """Until the worker has a pool child; with `replacing` (pids of a killed worker), a new one."""
        if not wait_until(lambda: [c for c in self.roles().child if c.pid not in replacing], 120, 0.5):
            raise RuntimeError(f"the worker did not start its pool child:\n{self.logs()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def roles(self) -> Roles:
        return find_roles(self.settings.state_dir)

    def stop(self) -> None:
        roles = self.roles()
        for process in roles.serve:  # serve stops its children gracefully, broker last
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        wait_until(lambda: not [p for p in roles.serve if _alive(p)], 60, 0.2)
        kill_all(self.roles().everything())  # orphans of a serve killed by a fault have no one to stop them

    def logs(self, tail: int = 6000) -> str:
        parts = []
        for path in sorted(self.settings.state_dir.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # HTTP, tolerant of a service that is down for a moment (the faults do that on purpose).
    def get(self, path: str, timeout_s: float = 60) -> Any:
        def attempt() -> Any:
            try:
                response = self.http.get(path)
            except httpx.HTTPError:
                return None
            return response.json() if response.status_code == 200 else None

        return wait_until(attempt, timeout_s, 0.5)

    def download(self, path: str) -> bytes | None:
        try:
            response = self.http.get(path, timeout=60)
        except httpx.HTTPError:
            return None
        return response.content if response.status_code == 200 else None

    def submit(self, spec: dict[str, Any]) -> int:
        response = self.http.post("/experiments", json=spec)
        if response.status_code != 202:
            raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
        return int(response.json()["id"])

    def count(self, status: str) -> int | None:
        page = self.get(f"/experiments?status={status}&limit=1", timeout_s=30)
        return None if page is None else int(page["total"])


# --- faults -----------------------------------------------------------------------------------------


def kill_child(service: Service) -> str:
    children = service.roles().child
    kill_all(children)  # what an out-of-memory kill does: no warning, no clean-up
    return f"killed pool child {[p.pid for p in children]}"


def freeze_child(service: Service) -> str:
    children = service.roles().child
    # Long enough for the reaper to presume it dead and requeue its job; then it wakes, superseded. Wherever
    # the stop lands (between statements, or halfway through sending an epoch's resume state), its open
    # transaction must not keep the job's row from the reaper (models/attempt_sessions.py).
    settings = service.settings
    frozen_s = 2 * settings.lease_s + settings.reaper_interval_s
    for child in children:
        child.suspend()
    time.sleep(frozen_s)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.resume()
    return f"stopped pool child {[p.pid for p in children]} for {frozen_s:g} s, then let it go on"


def kill_worker(service: Service) -> str:
    roles = service.roles()
    if not roles.worker:
        raise RuntimeError("no worker process to kill")
    worker = roles.worker[0]
    killed = {worker.pid, *(child.pid for child in roles.child)}
    # serve starts a worker that died again (API, reaper and broker keep running): the fault is the kill alone.
    kill_all([*roles.child, worker])
    service.wait_for_worker(replacing=killed)
    return f"killed worker {worker.pid} and its child; serve started it again"


def kill_service(service: Service) -> str:
    processes = service.roles().everything()
    kill_all(processes)
    service.start()  # same state folder: SQLite and the embedded broker's append-only file persist
    return f"killed {len(processes)} processes, ran serve again"


def drop_broker_connections(service: Service) -> str:
    settings = service.settings
    if settings.broker_url is None:
        # Everything connected to the embedded broker is ours (API, reaper, worker): drop every client.
        client = redis.Redis(unix_socket_path=str(settings.state_dir / "broker.sock"), socket_timeout=5)
        dropped = int(client.execute_command("CLIENT", "KILL", "TYPE", "normal") or 0)
        dropped += int(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") or 0)
        return f"dropped {dropped} broker connections"
    # The machine's Redis serves others too: drop exactly the worker's own connections, by address.
    url = urlparse(settings.broker_url)
    roles = service.roles()
    addresses = {
        f"{c.laddr.ip}:{c.laddr.port}"
        for p in [*roles.worker, *roles.child]
        for c in p.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == (url.port or 6379) and c.status == psutil.CONN_ESTABLISHED
    }
    client = redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, socket_timeout=5)
    dropped = 0
    for address in addresses:
        with contextlib.suppress(redis.ResponseError):  # closed meanwhile
            dropped += int(client.execute_command("CLIENT", "KILL", "ADDR", address, "SKIPME", "yes") or 0)
    return f"dropped {dropped} of the worker's broker connections"


def redis_answers() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def start_machine_redis() -> None:
    subprocess.run(REDIS_START, check=True, timeout=30)
    if not wait_until(redis_answers, 30):
        raise RuntimeError("Redis on 127.0.0.1:6379 did not come back")


def restart_broker(_service: Service) -> str:
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], timeout=30, check=False)
    wait_until(lambda: not redis_answers(), 15)
    start_machine_redis()
    return "restarted Redis without saving (every queued message lost)"


def postgres_cluster_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def postgres_answers() -> bool:
    import psycopg

    try:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def restart_database(_service: Service) -> str:
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", postgres_cluster_version(), "main", "restart"]
    subprocess.run(command, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_until(postgres_answers, 60):
        raise RuntimeError("PostgreSQL did not come back")
    return "restarted PostgreSQL"


def role_holder(service: Service, role: str) -> tuple[str, psutil.Process] | None:
    """The role's holder as its row names it (`name@host:pid`), and that process, if it is one of ours."""
    from sqlalchemy import create_engine, text

    url = service.settings.database_url or f"sqlite:///{service.settings.state_dir / 'epochal.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT holder FROM role_lease WHERE role = :role"), {"role": role}).first()
    except Exception:
        return None
    finally:
        engine.dispose()
    if row is None:
        return None
    pid = int(str(row[0]).rsplit(":", 1)[1])
    ours = {p.pid: p for p in service.roles().everything()}
    return (str(row[0]), ours[pid]) if pid in ours else None


def last_pass(service: Service, role: str) -> tuple[str, float] | None:
    """(who, when) of the role's last recorded pass, from the API's /metrics (age in seconds, holder label)."""
    try:
        response = service.http.get("/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    age = holder = None
    for line in response.text.splitlines():
        if line.startswith(f'epochal_role_last_pass_age_seconds{{role="{role}"}}'):
            age = float(line.rsplit(" ", 1)[1])
        if line.startswith("epochal_role_holder{") and f'role="{role}"' in line and line.endswith(" 1.0"):
            holder = line.split('holder="', 1)[1].split('"', 1)[0]
    return (holder, time.time() - age) if holder and age is not None else None


def kill_then_child(service: Service, victims: list[psutil.Process]) -> None:
    """kill -9 `victims` (with their descendants) at a random moment of a reaper interval, then the training child."""
    time.sleep(random.uniform(0, service.settings.reaper_interval_s))
    descendants = [d for v in victims for d in _children(v)]
    kill_all([*victims, *descendants])
    kill_all(service.roles().child)  # the training child as well, if the first kill did not take it


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def back_up(service: Service, what: str) -> str:
    """Wait for serve to start what was killed; where serve stopped instead, run it again and say so."""
    back = wait_until(lambda: not service.roles().serve or (service.healthy() and service.roles().child), 90, 0.5)
    if back and service.roles().serve:
        return f"serve started the {what} again"
    service.stop()
    service.start()
    return f"serve did not start the {what} again: ran serve again"


def kill_role_holder(service: Service, role: str) -> str:
    found = wait_until(lambda: role_holder(service, role), 30, 0.2)
    if not found:
        raise RuntimeError(f"no process of ours holds the {role} role")
    holder, process = found
    kind = "API" if process in service.roles().api else "worker"
    kill_then_child(service, [process])
    killed_at = time.time()
    # Another process takes the role: its first pass, recorded on the row, is after the kill.
    taken = wait_until(lambda: (p := last_pass(service, role)) and p[0] != holder and p[1] > killed_at and p, 30, 0.2)
    took = f"{taken[0]} took over {taken[1] - killed_at:.1f} s after" if taken else "no takeover seen"
    return f"killed the {role} holder {holder} ({kind}) and the training child; {took}; {back_up(service, kind)}"


def kill_reaper(service: Service) -> str:
    return kill_role_holder(service, "reaper")


def kill_dispatcher(service: Service) -> str:
    # The training child dies too, so its job is queued again: it runs again only once the new holder releases it.
    return kill_role_holder(service, "dispatcher")


def kill_api(service: Service) -> str:
    api = service.roles().api
    if not api:
        raise RuntimeError("no API process to kill")
    kill_then_child(service, api)
    return f"killed the API {[p.pid for p in api]} and the training child; {back_up(service, 'API')}"


def kill_broker(service: Service) -> str:
    broker = service.roles().broker
    if not broker:
        raise RuntimeError("no embedded broker to kill")
    kill_then_child(service, broker)
    return f"killed the embedded broker {[p.pid for p in broker]} and the training child; {back_up(service, 'broker')}"


INJECT: dict[str, Callable[[Service], str]] = {
    "child-kill": kill_child,
    "child-freeze": freeze_child,
    "worker-kill": kill_worker,
    "service-kill": kill_service,
    "broker-drop": drop_broker_connections,
    "broker-restart": restart_broker,
    "db-restart": restart_database,
    "reaper-kill": kill_reaper,
    "dispatcher-kill": kill_dispatcher,
    "api-kill": kill_api,
    "broker-kill": kill_broker,
}


# --- rounds and checks ------------------------------------------------------------------------------


@dataclass
class RoundResult:
    mode: str
    fault: str
    number: int
    jobs: list[int]
    statuses: list[str]
    hit: bool
    recovery_s: float | None
    detail: str
    back_to_work_s: float | None = None
    settled_s: float | None = None  # from the fault to the end of the hit attempt (the reaper settling it)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    @property
    def broken(self) -> bool:
        return bool(self.lost or self.duplicated or self.stuck)


def run_round(service: Service, fault: str, number: int, options: argparse.Namespace) -> RoundResult:
    spec = {
        "dataset": "mnist",
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "train_size": options.train_size,
        "name": f"chaos {fault} {number}",
    }
    ids = [service.submit(spec) for _ in range(options.jobs)]
    result = RoundResult(service.settings.mode, fault, number, ids, [], False, None, "")
    target = find_target(service, ids, options.epochs, options.target_timeout)
    fault_at = time.time()
    if target is None:
        result.detail = "no job was running mid-run before the deadline: no fault injected"
    else:
        try:
            result.detail = INJECT[fault](service)
        except Exception as exc:  # a fault that could not be injected or restored: the round says so
            result.detail = f"injection failed: {type(exc).__name__}: {exc}"
            if not service.healthy():
                service.stop()
                service.start()

    deadline = time.monotonic() + options.round_timeout
    bodies: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(bodies) < len(ids):
        for experiment_id in ids:
            if experiment_id not in bodies:
                body = service.get(f"/experiments/{experiment_id}", timeout_s=10)
                if body and body["status"] in FINISHED:
                    bodies[experiment_id] = body
        reap_zombies()
        time.sleep(0.5)
    for experiment_id in ids:
        if experiment_id not in bodies:
            body = service.get(f"/experiments/{experiment_id}", timeout_s=30)
            status = body["status"] if body else "unreadable"
            result.stuck.append(f"experiment {experiment_id} still {status} after {options.round_timeout:g} s")
            result.statuses.append(status)
            if body:
                result.detail += f"\n  evidence: {json.dumps(body)}"
            continue
        body = bodies[experiment_id]
        result.statuses.append(body["status"])
        check_job(service, body, target, result)
        if any(a["outcome"] in {"lost", "interrupted"} for a in body["attempts"]):
            result.hit = True
        if target is not None and experiment_id == target.experiment_id:
            later = [a for a in body["attempts"] if a["number"] > target.attempt]
            resumed_at = when(later[0]["started_at"]) if later else when(body["finished_at"])
            hit_it = any(
                a["number"] == target.attempt and a["outcome"] in {"lost", "interrupted"} for a in body["attempts"]
            )
            if hit_it and resumed_at is not None:
                result.recovery_s = max(0.0, resumed_at - fault_at)
            ended = [when(a["ended_at"]) for a in body["attempts"] if a["number"] == target.attempt]
            if hit_it and ended and ended[0] is not None:
                result.settled_s = max(0.0, ended[0] - fault_at)
        if result.lost or result.duplicated:
            result.detail += f"\n  evidence: {json.dumps(body)}"
    # With one training slot, the hit job may wait behind another job of the round; this is when the
    # service trained anything again, the recovery of the service rather than of the one job.
    restarts = [
        started
        for body in bodies.values()
        for a in body["attempts"]
        if (started := when(a["started_at"])) is not None and started > fault_at
    ]
    if result.hit and target is not None and restarts:
        result.back_to_work_s = min(restarts) - fault_at
    for status in ("running", "queued"):
        left = service.count(status)
        if left:
            result.stuck.append(f"{left} experiments left {status} after the round")
    return result


# --- setup of the servers (server mode) and the data ------------------------------------------------


def prepare_server_mode(database_url: str, broker_url: str) -> None:
    """Start PostgreSQL and Redis if they do not answer; give this benchmark an empty database and Redis db."""
    import psycopg

    if not redis_answers():
        log("Redis on 127.0.0.1:6379 does not answer: starting it")
        start_machine_redis()
    if not postgres_answers():
        log("PostgreSQL on 127.0.0.1:5432 does not answer: starting it")
        version = postgres_cluster_version()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
        if not wait_until(postgres_answers, 60):
            raise RuntimeError("PostgreSQL did not start")
    drop_database(database_url)
    name = urlparse(database_url).path.lstrip("/")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    flush_broker_db(broker_url)


def drop_database(database_url: str) -> None:
    import psycopg

    name = urlparse(database_url).path.lstrip("/")
    if not name.startswith("epochal_chaos"):
        raise RuntimeError(f"refusing to drop {name!r}: only this benchmark's own database")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_broker_db(broker_url: str) -> None:
    # Only this db number: the machine's Redis holds other people's databases too.
    url = urlparse(broker_url)
    db = int(url.path.lstrip("/") or 0)
    redis.Redis(host=url.hostname or "127.0.0.1", port=url.port or 6379, db=db, socket_timeout=5).flushdb()


def data_folder(option: str | None, scratch: Path) -> Path:
    if option:
        return Path(option).resolve()
    shared = ROOT.parent / "shared" / "datasets"
    if (shared / "mnist.npz").exists():
        return shared.resolve()
    from tests.datagen import write_mnist

    # Generated digits: enough examples for --train-size, and a small test split to validate on.
    write_mnist(scratch / "mnist.npz", train=3000, test=500)
    return scratch


# --- the report -------------------------------------------------------------------------------------


def planned(rounds: int, faults: list[str], started: float, max_minutes: float) -> Iterator[tuple[int, str]]:
    """Faults interleaved round by round, so a run cut short by --max-minutes still covers each about equally."""
    for number in range(1, rounds + 1):
        for fault in faults:
            if time.monotonic() - started > max_minutes * 60:
                log(f"--max-minutes {max_minutes:g} reached: no more rounds")
                return
            yield number, fault


def spread(values: list[float]) -> str:
    """'median | worst' of some durations, or dashes when there are none."""
    return f"{statistics.median(values):.1f} | {max(values):.1f}" if values else "- | -"


def table(results: list[RoundResult]) -> str:
    lines = [
        "| mode | fault | rounds | jobs | lost | duplicated | stuck | hits | misses "
        "| median recovery (s) | worst (s) | median back to work (s) | worst (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups: dict[tuple[str, str], list[RoundResult]] = {}
    for result in results:
        groups.setdefault((result.mode, result.fault), []).append(result)
    for (mode, fault), rounds in groups.items():
        recoveries = [r.recovery_s for r in rounds if r.recovery_s is not None]
        hits = sum(r.hit for r in rounds)
        back = [r.back_to_work_s for r in rounds if r.back_to_work_s is not None]
        lines.append(
            f"| {mode} | {fault} | {len(rounds)} | {sum(len(r.jobs) for r in rounds)} "
            f"| {sum(len(r.lost) for r in rounds)} | {sum(len(r.duplicated) for r in rounds)} "
            f"| {sum(len(r.stuck) for r in rounds)} | {hits} | {len(rounds) - hits} "
            f"| {spread(recoveries)} | {spread(back)} |"
        )
    return "\n".join(lines)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "server"), default="embedded")
    parser.add_argument("--faults", help=f"comma-separated, of {', '.join(FAULTS)}; default: all of the mode")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each fault (interleaved)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs submitted per round")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument("--database-url", default=SERVER_DATABASE_URL, help="server mode; emptied and dropped")
    parser.add_argument("--broker-url", default=SERVER_BROKER_URL, help="server mode; this db number is flushed")
    parser.add_argument("--data-dir", help="folder with mnist.npz (default: ../shared/datasets, else generated)")
    parser.add_argument("--lease-s", type=float, default=5)
    parser.add_argument("--heartbeat-s", type=float, default=1)
    parser.add_argument("--reaper-interval-s", type=float, default=1)
    parser.add_argument("--republish-after-s", type=float, default=10)
    parser.add_argument("--target-timeout", type=float, default=180, help="seconds to wait for a job mid-run")
    parser.add_argument("--round-timeout", type=float, help="seconds for a round's jobs to end (lease + 150)")
    parser.add_argument("--max-minutes", type=float, default=600, help="start no round after this")
    parser.add_argument("--results", help="write every round as JSON here")
    parser.add_argument("--keep-state", action="store_true", help="keep the state folder (always kept on failure)")
    options = parser.parse_args()
    options.round_timeout = options.round_timeout or options.lease_s + 150

    available = EMBEDDED_FAULTS if options.mode == "embedded" else tuple(f for f in FAULTS if f not in EMBEDDED_ONLY)
    faults = options.faults.split(",") if options.faults else list(available)
    for fault in faults:
        if fault == "beat-kill":
            parser.error("there is no beat process any more: the reaper is a role (use reaper-kill)")
        if fault not in FAULTS:
            parser.error(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        if options.mode == "embedded" and fault == "db-restart":
            parser.error("db-restart needs --mode server: the embedded SQLite has no server to restart")
        if options.mode == "server" and fault in EMBEDDED_ONLY:
            parser.error(f"{fault} kills the embedded broker: --mode embedded")
    if options.mode == "embedded" and "broker-restart" in faults:
        # serve stops everything when its broker child exits, so this is exactly service-kill.
        log("embedded broker-restart is the same as service-kill (serve stops all when the broker exits)")
        faults = ["service-kill" if f == "broker-restart" else f for f in dict.fromkeys(faults)]

    become_subreaper()
    # SIGTERM (a `timeout`, a CI cancel) must still stop the service and drop the benchmark's database.
    signal.signal(signal.SIGTERM, _interrupt)
    state_dir = Path(tempfile.mkdtemp(prefix="epochal-chaos-")).resolve()
    server = options.mode == "server"
    settings = Settings(
        mode=options.mode,
        port=options.port or free_port(),
        state_dir=state_dir,
        data_dir=data_folder(options.data_dir, state_dir / "data"),
        lease_s=options.lease_s,
        heartbeat_s=options.heartbeat_s,
        reaper_interval_s=options.reaper_interval_s,
        republish_after_s=options.republish_after_s,
        database_url=options.database_url if server else None,
        broker_url=options.broker_url if server else None,
    )
    if server:
        prepare_server_mode(options.database_url, options.broker_url)
    log(f"{options.mode} mode, faults {faults}, {options.rounds} rounds each, state in {state_dir}")
    log(f"service: {shlex.join(Service(settings).serve_argv)} (cwd {ROOT.name}/)")
    service = Service(settings)
    results: list[RoundResult] = []
    started = time.monotonic()
    failed_setup = False
    try:
        service.start()
        for number, fault in planned(options.rounds, faults, started, options.max_minutes):
            # The pool child is replaced after every job (one task per child): give it a moment to appear.
            if not service.healthy() or not wait_until(lambda: service.roles().child, 30, 0.5):
                log("the service is not healthy before a round: restarting it")
                service.stop()
                service.start()
            result = run_round(service, fault, number, options)
            results.append(result)
            recovery = "-" if result.recovery_s is None else f"{result.recovery_s:.1f} s"
            if result.back_to_work_s is not None:
                recovery += f" (back to work {result.back_to_work_s:.1f} s)"
            if result.settled_s is not None:
                recovery += f", hit attempt settled {result.settled_s:.1f} s after the fault"
            verdict = "BROKEN" if result.broken else "ok"
            log(
                f"{options.mode} {fault} #{number}: {verdict}, {'hit' if result.hit else 'MISS'}, "
                f"recovery {recovery}, jobs {dict(zip(result.jobs, result.statuses, strict=True))}: "
                f"{result.detail}"
            )
            for problem in [*result.lost, *result.duplicated, *result.stuck]:
                log(f"  INVARIANT BROKEN: {problem}")
            if result.broken:
                log(f"  logs:\n{service.logs()}")
    except (Exception, KeyboardInterrupt) as exc:
        failed_setup = True  # an interrupted run is no evidence that the invariants hold
        log(f"aborted: {type(exc).__name__}: {exc}")
    finally:
        service.stop()
        reap_zombies()
        if server:
            with contextlib.suppress(Exception):
                drop_database(options.database_url)
                flush_broker_db(options.broker_url)

    broken = any(r.broken for r in results) or failed_setup
    if options.results:
        payload = {
            "mode": options.mode,
            "argv": sys.argv,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "settings": {k: str(v) for k, v in asdict(settings).items() if k != "state_dir"},
            "rounds": [{**asdict(r), "broken": r.broken} for r in results],
        }
        Path(options.results).write_text(json.dumps(payload, indent=1))
    print(table(results), flush=True)
    if broken or options.keep_state:
        log(f"state folder kept: {state_dir}")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
