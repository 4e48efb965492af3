"""Start the whole service on this machine: `python -m epochal serve`.

It applies the migrations, starts the embedded broker when the broker URL is a unix socket, one
Celery worker and the API, starts the worker again if it dies, and stops them all on Ctrl-C. The worker and the
API take the reaper role in turn (upkeep/keeper.py); when no pass ran for three reaper intervals while the
database answers, serve restarts both. Killed outright, it takes the worker and the API with it
(epochal/lifeline.py); the embedded broker stays, and the next start uses it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from functools import partial
from types import FrameType

from config import get_settings, redact_url
from epochal.accounts_cli import add_commands, ensure_first_key
from epochal.broker import answers, socket_path_of, start_embedded_broker
from epochal.commands import api_argv, migrate_argv, with_this_python, worker_argv
from epochal.lifeline import die_with_parent
from models.base import utcnow
from models.db import session_scope
from models.roles import read_role
from upkeep.reaper import REAPER_ROLE, stalled


def tied(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`argv` started as a child that ends when this process does, however it ends."""
    return subprocess.Popen(argv, env=env, preexec_fn=partial(die_with_parent, os.getpid()))


def serve(host: str, port: int) -> int:
    settings = get_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Children get the resolved URLs, so every process agrees on one database and one broker.
    env = {
        **os.environ,
        "EPOCHAL_DATABASE_URL": settings.database_url,
        "EPOCHAL_BROKER_URL": settings.broker_url,
        "EPOCHAL_DATA_DIR": str(settings.data_dir.resolve()),
    }
    subprocess.run(with_this_python(migrate_argv()), env=env, check=True)
    # Secure by default: no request is served without a key, so the first start makes the first one.
    ensure_first_key(settings)
    broker: subprocess.Popen[bytes] | None = None
    socket_path = socket_path_of(settings.broker_url)
    if socket_path is not None and not answers(socket_path):
        broker = start_embedded_broker(socket_path)
        print(f"epochal: embedded broker on {socket_path}", flush=True)
    # The worker is started again when it dies (an out-of-memory kill, a crash): the jobs it held come back
    # through their leases. The API and the broker are not: without them nothing works, so the whole service
    # stops and says so.
    restartable = {
        "worker": Supervised("worker", with_this_python(worker_argv(settings.default_queue)), env),
    }
    api_command = with_this_python(api_argv(host, port))
    api = tied(api_command, env)
    passes = PassWatch(settings.reaper_interval_s)
    print(
        f"epochal: API on http://{host}:{port} (reference: http://{host}:{port}/docs), "
        f"database {redact_url(settings.database_url)}, data folder {settings.data_dir.resolve()}",
        flush=True,
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while api.poll() is None and (broker is None or broker.poll() is None):
            for name, supervised in restartable.items():
                if not supervised.keep_running():
                    print(f"epochal: the {name} keeps exiting; stopping the service", file=sys.stderr, flush=True)
                    return 1
            stall = passes.stalled()
            if stall is not None:
                # Every role taker is up but none reaps (a keeper wedged on a lock, a thread gone): start them anew.
                print(f"epochal: {stall}; restarting the worker and the API", file=sys.stderr, flush=True)
                stop_now([restartable["worker"].process, api])  # keep_running starts the worker again
                api = tied(api_command, env)
                passes.restarted()
            time.sleep(0.5)
        print("epochal: the API or the broker exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # API and workers first, broker last, so nothing loses its broker mid-shutdown.
        children = [api, *(s.process for s in restartable.values()), *([broker] if broker else [])]
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
    """Whether the reaper's passes stopped, read from its role's row once per reaper interval.

    The reaper's `stalled` rule (upkeep/reaper.py), looked at only once the role takers had STARTUP_GRACE_INTERVALS
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
                state = read_role(session, REAPER_ROLE)
        except Exception:
            return None
        return stalled(state, utcnow(), self.since)

    def restarted(self) -> None:
        self.since = utcnow()
        self.next_look = time.monotonic() + self.STARTUP_GRACE_INTERVALS * self.interval_s


class Supervised:
    """A child process started again when it exits, unless it exits over and over (then it is given up)."""

    MAX_RESTARTS = 5
    WITHIN_S = 60.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.restarts: list[float] = []
        self.process = tied(argv, env)

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
        self.process = tied(self.argv, self.env)
        return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m epochal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run broker, worker and API on this machine")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    add_commands(commands)
    args = parser.parse_args()
    if args.command == "serve":
        return serve(args.host, args.port)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
