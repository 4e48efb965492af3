"""Start the whole service on this machine: `python -m epochal serve`.

It applies the migrations, starts the embedded broker when the broker URL is a unix socket, one
Celery worker and the API, starts any of them again if it dies (an out-of-memory kill, a crash), and stops them
all on Ctrl-C. One that keeps dying (5 times in a minute) stops the whole service. The API holds no state; the
embedded broker comes back on the same socket with its append-only file, so the queued jobs are still there and
the worker reconnects. The worker and the API take the reaper's and the dispatcher's roles in turn
(upkeep/keeper.py); when either role's passes stopped (none for three of its intervals) while the database answers,
serve restarts both. Killed outright, it takes the worker and the API with it (epochal/lifeline.py); the embedded
broker stays, and the next start uses it (and starts it again if it dies).

Everything it and its children create in the state folder is for the owner alone (epochal/state_folder.py).

The operator's other commands sit beside it: `users` and `keys` (epochal/accounts_cli.py), `backup` and `restore`
(epochal/backup.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

from config import get_settings
from epochal import backup
from epochal.accounts_cli import add_commands, ensure_first_key, key_file
from epochal.broker import (
    log_path,
    server_pid,
    socket_path_of,
    spawn_embedded_broker,
    start_embedded_broker,
    wait_until_answers,
)
from epochal.client.settings import DEFAULT_PORT
from epochal.commands import api_argv, migrate_argv, with_this_python, worker_argv
from epochal.lifeline import die_with_parent
from epochal.state_folder import OWNER_ONLY_UMASK, make_private
from infra.redaction import redact_url
from infra.version import service_version
from models.base import utcnow
from models.db import session_scope
from upkeep.watch import first_stall, watched_roles

# How long a restarted API waits for the port its predecessor's processes are still closing; at the first start,
# how long before saying the port is taken (the processes of a `serve` killed a moment ago may still be closing it).
PORT_WAIT_S = 30.0
FIRST_PORT_WAIT_S = 3.0


def tied(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`argv` started as a child that ends when this process does, however it ends."""
    return subprocess.Popen(argv, env=env, preexec_fn=partial(die_with_parent, os.getpid()))


def serve(host: str, port: int) -> int:
    # Before anything is created: the database, its -wal and -shm, the broker's files, the key, the schedule.
    os.umask(OWNER_ONLY_UMASK)
    settings = get_settings()
    if not wait_until_bindable(host, port, FIRST_PORT_WAIT_S):
        # Said now, not after the API fails to start again and again.
        print(
            f"epochal: port {port} on {host} is in use (another `serve`?); stop it, or choose another with --port",
            file=sys.stderr,
        )
        return 1
    loosened = make_private(settings.state_dir)
    if loosened:
        print(
            f"epochal: the state folder {settings.state_dir.resolve()} was open to other accounts "
            f"({len(loosened)} entries, e.g. {loosened[0]}); made it owner-only (folders 0700, files 0600)",
            file=sys.stderr,
            flush=True,
        )
    # Children get the resolved URLs, so every process agrees on one database and one broker.
    env = {
        **os.environ,
        "EPOCHAL_DATABASE_URL": settings.database_url,
        "EPOCHAL_BROKER_URL": settings.broker_url,
        "EPOCHAL_DATA_DIR": str(settings.data_dir.resolve()),
        # The code every process runs, as this start found it: model cards record it (infra/version.py).
        "EPOCHAL_VERSION": service_version(),
    }
    subprocess.run(with_this_python(migrate_argv()), env=env, check=True)
    # Secure by default: no request is served without a key, so the first start makes the first one.
    ensure_first_key(settings)
    socket_path = socket_path_of(settings.broker_url)
    broker = None if socket_path is None else embedded_broker(socket_path)
    # Every process is started again when it dies (an out-of-memory kill, a crash): the jobs the worker held come
    # back through their leases, the API holds no state, and the broker's queue is in its append-only file.
    worker = Supervised("worker", with_this_python(worker_argv(settings.default_queue)), env)
    api = Restartable(
        "API",
        partial(tied, with_this_python(api_argv(host, port)), env),
        before_restart=partial(wait_for_port, host, port),
    )
    passes = PassWatch(max(watched.interval_s for watched in watched_roles()))
    print(
        f"epochal: API on http://{host}:{port} (reference: http://{host}:{port}/docs), "
        f"database {redact_url(settings.database_url)}, data folder {settings.data_dir.resolve()}",
        flush=True,
    )
    # What the CLI and the Python client need to find this service (the key is read from its file, not shown).
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(
        f"epochal: for the epochal command and Python client: export EPOCHAL_URL=http://{url_host}:{port} "
        f'EPOCHAL_API_KEY="$(cat {key_file(settings).resolve()})"; stop the service with Ctrl-C',
        flush=True,
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # The broker first: a worker or an API started again finds it answering.
    supervised = [*([broker] if broker else []), worker, api]
    try:
        while True:
            for part in supervised:
                if not part.keep_running():
                    print(f"epochal: the {part.name} keeps exiting; stopping the service", file=sys.stderr, flush=True)
                    return 1
            stall = passes.stalled()
            if stall is not None:
                # Every role taker is up but none reaps (a keeper wedged on a lock, a thread gone): start them anew.
                print(f"epochal: {stall}; restarting the worker and the API", file=sys.stderr, flush=True)
                stop_now([p for p in (worker.process, api.process) if isinstance(p, subprocess.Popen)])
                passes.restarted()  # keep_running, next round, starts both again
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        # API and workers first, broker last, so nothing loses its broker mid-shutdown. A broker left by an earlier
        # start that was killed is not this one's to stop: it stays, as it did.
        processes = [api.process, worker.process, *([broker.process] if broker else [])]
        children = [child for child in processes if isinstance(child, subprocess.Popen)]
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def stop_now(processes: list[subprocess.Popen[bytes]], timeout_s: float = 20) -> None:
    """Stop children as Ctrl-C would, all at once, and kill those that do not stop in time."""
    for process in processes:
        process.terminate()
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # a stopped process (SIGSTOP, a debugger) sees its SIGTERM only now
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


class PassWatch:
    """Whether the reaper's or the dispatcher's passes stopped, read from their roles' rows once per `interval_s`
    (the longer of their intervals).

    The roles' `stalled` rule (upkeep/watch.py), looked at only once the role takers had STARTUP_GRACE_INTERVALS
    intervals to start since serve last (re)started them: a worker takes a while to boot on a busy machine (three
    short intervals are less), and a restart must not follow a restart. A database that does not answer is no
    stall: restarting would not bring it back.
    """

    STARTUP_GRACE_INTERVALS = 10

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.since, self.next_look = utcnow(), 0.0
        self.restarted()

    def stalled(self) -> str | None:
        if time.monotonic() < self.next_look:
            return None
        self.next_look = time.monotonic() + self.interval_s
        try:
            with session_scope() as session:
                return first_stall(session, utcnow(), self.since)
        except Exception:
            return None

    def restarted(self) -> None:
        self.since = utcnow()
        self.next_look = time.monotonic() + self.STARTUP_GRACE_INTERVALS * self.interval_s


def embedded_broker(socket_path: Path) -> Restartable:
    """The embedded broker on `socket_path`, supervised: the one already answering there, else a new one."""
    left_running = server_pid(socket_path)
    if left_running is None:
        running: Child = start_embedded_broker(socket_path)
        print(f"epochal: embedded broker on {socket_path}", flush=True)
    else:
        running = Adopted(left_running)
    return Restartable("broker", partial(restart_broker, socket_path), running=running)


def restart_broker(socket_path: Path) -> subprocess.Popen[bytes]:
    """A new broker on the same socket and the same append-only file: what was queued is queued again."""
    process = spawn_embedded_broker(socket_path)
    if not wait_until_answers(socket_path, process):
        # Still loading a large file, or it exited: the next round sees which, and starts it again if it exited.
        print(f"epochal: the broker does not answer yet; see {log_path(socket_path)}", file=sys.stderr, flush=True)
    return process


def wait_for_port(host: str, port: int) -> None:
    """Before the API starts again: wait for its port, and start it anyway after PORT_WAIT_S (its error says why).

    An API launcher killed outright leaves its uvicorn processes (EPOCHAL_API_WORKERS > 1) to stop on their parent-
    death signal (epochal/lifeline.py); they close the port first, but a new launcher started in between would fail
    to bind it.
    """
    if not wait_until_bindable(host, port, PORT_WAIT_S):
        print(f"epochal: port {port} is still in use after {PORT_WAIT_S:.0f}s", file=sys.stderr, flush=True)


def wait_until_bindable(host: str, port: int, timeout_s: float) -> bool:
    """Whether `port` on `host` can be listened on within `timeout_s`.

    With SO_REUSEADDR, as uvicorn binds: the old connections in TIME_WAIT do not count, a listening socket does.
    """
    family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                return True
            except OSError:
                pass
        time.sleep(0.1)
    return False


class Adopted:
    """A process this one did not start (a broker left by a `serve` that was killed), watched by its pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        """None while it runs; its exit status is its own parent's to read, so an exited one reads -1."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        except PermissionError:  # it runs, as another account
            return None
        return None


Child = subprocess.Popen[bytes] | Adopted


class Restartable:
    """A child started again when it exits, unless it exits over and over (then it is given up).

    `start` starts it; `running`, if given, is the one already running; `before_restart` runs before each restart.
    """

    MAX_RESTARTS = 5
    WITHIN_S = 60.0

    def __init__(
        self,
        name: str,
        start: Callable[[], Child],
        *,
        running: Child | None = None,
        before_restart: Callable[[], None] | None = None,
    ) -> None:
        self.name, self.start, self.before_restart = name, start, before_restart
        self.restarts: list[float] = []
        self.process = running if running is not None else start()

    def keep_running(self) -> bool:
        """Start the process again if it exited; False once it exited MAX_RESTARTS times within WITHIN_S."""
        code = self.process.poll()
        if code is None:
            return True
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < self.WITHIN_S] + [now]
        if len(self.restarts) > self.MAX_RESTARTS:
            return False
        print(f"epochal: the {self.name} exited ({code}); starting it again", file=sys.stderr, flush=True)
        if self.before_restart is not None:
            self.before_restart()
        self.process = self.start()
        return True


class Supervised(Restartable):
    """A command started as a child tied to this process (epochal/lifeline.py), and started again when it exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(name, partial(tied, argv, env))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m epochal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run broker, worker and API on this machine")
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the API listens on (default: %(default)s; 0.0.0.0 for all interfaces)",
    )
    serve_parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port the API listens on (default: %(default)s)"
    )
    add_commands(commands)
    backup.add_commands(commands)
    args = parser.parse_args()
    if args.command == "serve":
        return serve(args.host, args.port)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
