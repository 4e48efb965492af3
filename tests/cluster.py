"""Several hosts on one machine, for the cluster test and bench: network namespaces joined by a bridge.

    data    PostgreSQL on .2:5432 and Redis on .12:6379 (a second address of the same host, so that one route can
            cut a host off the broker alone and leave it the database)
    api     the API on .3:8000
    w1, w2  a worker each (Celery, concurrency 1)

Each host is a namespace with its own address on a /24 of 10.88.x.0 picked for the run, and a veth pair to a
bridge in the machine's own namespace, where the controller (the test or the bench) has .1 and reaches every host
through its address. Nothing is shared between hosts but the database and the broker: each host has a folder of
its own (state, data), and checkpoints and results travel through the database. A fault is a change on one host's
link: down and up again (`link`), a route that refuses the broker's address (`cut_broker`), or netem delay and
loss (`slow`). All traffic stays on the bridge's addresses; nothing is sent elsewhere.

Needs root (CAP_NET_ADMIN), iproute2 and a PostgreSQL server's binaries; `missing()` says what is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from epochal.commands import api_argv, with_this_python, worker_argv
from tests.datagen import write_mnist
from tests.support import ADMIN, FAST_RECOVERY, ROOT, bearer, migrate_to_head, new_key

QUEUE = "cluster"
API_PORT = 8000
HOST_NUMBERS = {"data": 2, "api": 3, "w1": 4, "w2": 5}
BROKER_NUMBER = 12  # the data host's second address: Redis listens only there
WORKERS = ("w1", "w2")


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    """Why a cluster cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for tool in ("ip", "tc", "runuser", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _postgres_bin() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)"
    probe = f"epprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


@dataclass
class Cluster:
    """The hosts of one run; `up()` makes them and starts the service, `down()` removes everything."""

    workdir: Path
    epochs_env: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: f"e{os.getpid() % 10000}")
    subnet: str = field(default_factory=lambda: f"10.88.{os.getpid() % 200 + 20}")
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_key: str = ""
    _pg_dir: Path | None = None
    _http: httpx.Client | None = None

    # --- addresses and names -------------------------------------------------------------------------------------

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOST_NUMBERS[host]}"

    @property
    def broker_address(self) -> str:
        return f"{self.subnet}.{BROKER_NUMBER}"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.address('data')}:5432/epochal"

    @property
    def broker_url(self) -> str:
        return f"redis://{self.broker_address}:6379/0"

    @property
    def base_url(self) -> str:
        return f"http://{self.address('api')}:{API_PORT}"

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def _bridge(self) -> str:
        return f"{self.tag}-br"

    def _veth(self, host: str) -> str:
        return f"{self.tag}-{host}-h"  # the machine's end; the host's end is eth0 in its namespace

    def in_host(self, host: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    # --- making and removing the hosts ---------------------------------------------------------------------------

    def up(self) -> Cluster:
        try:
            self._network()
            self._data_host()
            migrate_to_head(self.database_url)
            self.api_key = new_key(ADMIN, admin=True, database_url=self.database_url)
            self.start("api")
            for worker in WORKERS:
                self.start(worker)
            self.wait_healthy()
        except BaseException:
            self.down()
            raise
        return self

    def _network(self) -> None:
        bridge = self._bridge()
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        for host in HOST_NUMBERS:
            namespace, veth = self.namespace(host), self._veth(host)
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _run("ip", "link", "set", veth, "master", bridge)
            _run("ip", "link", "set", veth, "up")
            _run(*self.in_host(host, "ip", "addr", "add", f"{self.address(host)}/24", "dev", "eth0"))
            _run(*self.in_host(host, "ip", "link", "set", "eth0", "up"))
            _run(*self.in_host(host, "ip", "link", "set", "lo", "up"))
        _run(*self.in_host("data", "ip", "addr", "add", f"{self.broker_address}/24", "dev", "eth0"))

    def _data_host(self) -> None:
        binaries = _postgres_bin()
        assert binaries is not None
        # Outside the work folder: PostgreSQL runs as its own user, who cannot enter a test's private folder.
        self._pg_dir = Path(tempfile.mkdtemp(prefix="epochal-cluster-pg-"))
        shutil.chown(self._pg_dir, "postgres", "postgres")
        data = self._pg_dir / "data"
        _run(
            "runuser",
            "-u",
            "postgres",
            "--",
            str(binaries / "initdb"),
            "-D",
            str(data),
            "--auth=trust",
            "-U",
            "postgres",
        )
        with (data / "pg_hba.conf").open("a") as hba:  # the hosts of this cluster, and no one else
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        self._spawn(
            "postgres",
            self.in_host(
                "data",
                "runuser",
                "-u",
                "postgres",
                "--",
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-c",
                f"listen_addresses={self.address('data')}",
                "-c",
                f"unix_socket_directories={self._pg_dir}",
                "-c",
                "fsync=off",
            ),
            {},
        )
        redis_argv = ["redis-server", "--bind", self.broker_address, "--port", "6379", "--save", ""]
        self._spawn("redis", self.in_host("data", *redis_argv, "--appendonly", "no", "--protected-mode", "no"), {})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(binaries / "pg_isready"), "-q", "-h", self.address("data"), "-p", "5432"], capture_output=True
            )
            if ready.returncode == 0:
                break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"PostgreSQL did not start on the data host:\n{self.logs()}")
        created = subprocess.run(
            ["psql", "-h", self.address("data"), "-U", "postgres", "-qc", "CREATE DATABASE epochal"],
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise RuntimeError(f"could not create the database: {created.stderr}")

    def host_env(self, host: str) -> dict[str, str]:
        """The settings of one host's processes: its own folders, the data host's database and broker."""
        folder = self.workdir / host
        data = folder / "data"
        if not (data / "mnist.npz").exists():
            data.mkdir(parents=True, exist_ok=True)
            write_mnist(data / "mnist.npz")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
        return (
            env
            | FAST_RECOVERY
            | self.epochs_env
            | {
                "EPOCHAL_DATABASE_URL": self.database_url,
                "EPOCHAL_BROKER_URL": self.broker_url,
                "EPOCHAL_STATE_DIR": str(folder / "state"),
                "EPOCHAL_DATA_DIR": str(data),
                "EPOCHAL_DEFAULT_QUEUE": QUEUE,
                "EPOCHAL_QUEUES": QUEUE,
                "EPOCHAL_SLOTS_PER_QUEUE": str(len(WORKERS)),
                "PYTHONPATH": str(ROOT),
            }
        )

    def start(self, host: str) -> None:
        """Start (or start again) the API or a worker on its host."""
        if host == "api":
            argv = with_this_python(api_argv(self.address("api"), API_PORT))
        else:
            argv = with_this_python(worker_argv(QUEUE, hostname=f"{host}@cluster"))
        self._spawn(host, self.in_host(host, *argv), self.host_env(host))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, cwd=ROOT, env=env or None, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def down(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15 if name == "postgres" else 9)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
        for host in HOST_NUMBERS:
            subprocess.run(["ip", "netns", "delete", self.namespace(host)], capture_output=True)
            subprocess.run(["ip", "link", "delete", self._veth(host)], capture_output=True)
        subprocess.run(["ip", "link", "delete", self._bridge()], capture_output=True)
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)
        if self._http is not None:
            self._http.close()

    def logs(self, tail: int = 8000) -> str:
        return "\n".join(
            f"--- {path.stem} ---\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    # --- faults --------------------------------------------------------------------------------------------------

    def link(self, host: str, up: bool) -> None:
        """Take the host's link down (every connection of it hangs, as a pulled cable) or bring it back."""
        _run("ip", "link", "set", self._veth(host), "up" if up else "down")

    def cut_broker(self, host: str, cut: bool) -> None:
        """Refuse (or allow again) the host's traffic to the broker's address; the database stays reachable."""
        action = "add" if cut else "delete"
        _run(*self.in_host(host, "ip", "route", action, "prohibit", f"{self.broker_address}/32"))

    def slow(self, host: str, delay_ms: int, loss_percent: float) -> str:
        """Slow the host's link both ways (on its end and on the machine's end); says how.

        netem's delay and loss where the kernel has it; else a token bucket (tbf) that holds the link to 256 kbit/s
        with up to `delay_ms` of queueing: slow and bursty, with no loss.
        """
        netem = ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss_percent:g}%"]
        tbf = ["tbf", "rate", "256kbit", "burst", "16kbit", "latency", f"{delay_ms}ms"]
        for rule, how in (
            (netem, f"netem {delay_ms} ms, {loss_percent:g}% loss"),
            (tbf, f"tbf 256 kbit/s, {delay_ms} ms"),
        ):
            ends = [self.in_host(host, "tc", "qdisc", "replace", "dev", "eth0", "root", *rule)]
            ends.append(["tc", "qdisc", "replace", "dev", self._veth(host), "root", *rule])
            if all(subprocess.run(end, capture_output=True).returncode == 0 for end in ends):
                return how
            self.fast(host)
        raise RuntimeError("neither netem nor tbf is available to slow a link")

    def fast(self, host: str) -> None:
        subprocess.run(self.in_host(host, "tc", "qdisc", "del", "dev", "eth0", "root"), capture_output=True)
        subprocess.run(["tc", "qdisc", "del", "dev", self._veth(host), "root"], capture_output=True)

    # --- talking to the service ----------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url, timeout=15, headers=bearer(self.api_key))
        return self._http

    def wait_healthy(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/health").status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the cluster's API did not become healthy:\n{self.logs()}")

    def get(self, path: str, timeout_s: float = 60) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = self.http.get(path)
                if response.status_code == 200:
                    return response.json()
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)

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

    def host_of(self, attempt: dict[str, Any]) -> str:
        """Which worker host ran an attempt, from the worker name it recorded (`w1@cluster...`)."""
        return str(attempt["worker"]).split("@", 1)[0]

    def wait_for(self, what: str, check: Any, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError(f"{what}: not within {timeout_s:g} s\n{self.evidence()}\n{self.logs()}")

    def evidence(self) -> str:
        """What the database shows now: the jobs, the roles' holders, and the sessions that are not idle."""
        queries = {
            "experiments": "SELECT id, status, worker, attempt, lease_expires_at, dispatched_at FROM experiment",
            "attempts": "SELECT experiment_id, number, worker, outcome, cause FROM attempt",
            "roles": "SELECT role, holder, expires_at, last_pass_at FROM role_lease",
            "sessions": "SELECT client_addr, state, now() - xact_start, left(query, 80) FROM pg_stat_activity "
            "WHERE datname = 'epochal' AND state <> 'idle' AND pid <> pg_backend_pid()",
        }
        parts = []
        for name, query in queries.items():
            shown = subprocess.run(
                ["psql", "-h", self.address("data"), "-U", "postgres", "-d", "epochal", "-tAc", query],
                capture_output=True,
                text=True,
                timeout=30,
            )
            parts.append(f"--- {name} ---\n{shown.stdout.strip()}{shown.stderr.strip()}")
        return "\n".join(parts)


@contextlib.contextmanager
def cluster(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    made = Cluster(workdir, dict(env or {})).up()
    try:
        yield made
    finally:
        made.down()
