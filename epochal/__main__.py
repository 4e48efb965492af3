"""Start the whole service on this machine: `python -m epochal serve`.

It applies the migrations, starts the embedded broker when the broker URL is a unix socket, one
Celery worker and the API, and stops them all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from config import get_settings, redact_url
from epochal.accounts_cli import add_commands, ensure_first_key
from epochal.broker import answers, socket_path_of, start_embedded_broker
from epochal.commands import api_argv, migrate_argv, reaper_argv, with_this_python, worker_argv


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
    children: list[subprocess.Popen[bytes]] = []
    socket_path = socket_path_of(settings.broker_url)
    if socket_path is not None and not answers(socket_path):
        children.append(start_embedded_broker(socket_path))
        print(f"epochal: embedded broker on {socket_path}", flush=True)
    children.append(subprocess.Popen(with_this_python(worker_argv(settings.default_queue)), env=env))
    schedule = str(settings.state_dir.resolve() / "reaper-schedule")
    children.append(subprocess.Popen(with_this_python(reaper_argv(schedule, hostname="reaper@%h")), env=env))
    children.append(subprocess.Popen(with_this_python(api_argv(host, port)), env=env))
    print(
        f"epochal: API on http://{host}:{port} (reference: http://{host}:{port}/docs), "
        f"database {redact_url(settings.database_url)}, data folder {settings.data_dir.resolve()}",
        flush=True,
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        print("epochal: a service process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # API and worker first, broker last, so nothing loses its broker mid-shutdown.
        for child in reversed(children):
            child.terminate()
        for child in reversed(children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


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
