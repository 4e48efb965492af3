"""Start the API: `python -m epochal.api_server --host H --port P`, with EPOCHAL_API_WORKERS processes.

One command wherever the API runs (`python -m epochal serve`, the Dockerfile, Compose, the tests), so the
multi-process setup lives here once: with several processes, uvicorn starts (and restarts) them behind one port,
and they keep their Prometheus counters in files of one shared, fresh folder (prometheus_client's multiprocess
mode), so `GET /metrics` answers the sum over all of them whichever process serves it. The folder must be named
before any process imports prometheus_client, which is why the launcher, not the app, sets it. Those processes
end with the launcher, however it ends (epochal/lifeline.py): killed outright, it leaves none holding the port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import uvicorn
from fastapi import FastAPI

from config import get_settings
from epochal.client.settings import DEFAULT_PORT
from epochal.lifeline import die_with_parent

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Set by the launcher for the API processes it starts: a process whose parent has this pid is one of them.
LAUNCHER_PID = "EPOCHAL_API_LAUNCHER_PID"
APP_FACTORY = "epochal.api_server:app_for_this_process"  # by name: uvicorn imports it in each process it starts


def app_for_this_process() -> FastAPI:
    """The app (api.main:app), loaded by uvicorn in each API process; one the launcher started ends with it.

    A launcher run with one process serves in its own process: nothing to tie, and a launcher started from a
    shell is not tied to that shell.
    """
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is not None and int(launcher) == os.getppid():
        die_with_parent(int(launcher))
    from api.main import app

    return app


def run(host: str, port: int, workers: int) -> None:
    own_dir = None
    if workers > 1:
        os.environ[LAUNCHER_PID] = str(os.getpid())
        if not os.environ.get(MULTIPROCESS_DIR):
            # Fresh each start: files left by an earlier run would add its counts to this one's.
            own_dir = os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="epochal-metrics-")
    try:
        # uvloop and httptools (pinned) are C: the pure-Python loop and h11 parser cost more CPU per request. The
        # access log is switched in the app (EPOCHAL_ACCESS_LOG, api/main.py).
        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
        )
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m epochal.api_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="API processes (default: EPOCHAL_API_WORKERS)")
    args = parser.parse_args()
    run(args.host, args.port, args.workers or get_settings().api_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
