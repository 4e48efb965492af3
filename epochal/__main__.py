"""Start the whole service on this machine: `python -m epochal serve`.

It applies the migrations, starts the embedded broker when the broker URL is a unix socket, one
Celery worker, the reaper and the API, starts the worker or the reaper again if one dies, and stops
them all on Ctrl-C. Killed outright, it takes the worker, the reaper and the API with it (epochal/lifeline.py);
the embedded broker stays, and the next start uses it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from functools import partial
from types import FrameType

from config import get_settings, redact_url
from epochal.accounts_cli import add_commands, ensure_first_key, key_file
from epochal.broker import answers, socket_path_of, start_embedded_broker
from epochal.client.settings import DEFAULT_PORT
from epochal.commands import api_argv, migrate_argv, reaper_argv, with_this_python, worker_argv
from epochal.lifeline import die_with_parent


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
    schedule = str(settings.state_dir.resolve() / "reaper-schedule")
    # The worker and the reaper are started again when they die (an out-of-memory kill, a crash): the
    # jobs they held come back through their leases. The API and the broker are not: without them
    # nothing works, so the whole service stops and says so.
    restartable = {
        "worker": Supervised("worker", with_this_python(worker_argv(settings.default_queue)), env),
        "reaper": Supervised("reaper", with_this_python(reaper_argv(schedule, hostname="reaper@%h")), env),
    }
    api = tied(with_this_python(api_argv(host, port)), env)
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
    try:
        while api.poll() is None and (broker is None or broker.poll() is None):
            for name, supervised in restartable.items():
                if not supervised.keep_running():
                    print(f"epochal: the {name} keeps exiting; stopping the service", file=sys.stderr, flush=True)
                    return 1
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
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the API listens on (default: %(default)s; 0.0.0.0 for all interfaces)",
    )
    serve_parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port the API listens on (default: %(default)s)"
    )
    add_commands(commands)
    args = parser.parse_args()
    if args.command == "serve":
        return serve(args.host, args.port)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
