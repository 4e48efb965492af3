"""The exact commands that start each part of the service.

`scripts/serve`, the tests, the Dockerfile and docker-compose.yml all use these argument lists, so
there is one way to start anything. Each is a console script that is also runnable as
`python -m <name>`, which is how local runs call them (no reliance on PATH), or, for the API, `python -m` of
our own module.
"""

from __future__ import annotations

import sys

CELERY_APP = "worker.celery_app"
FLOWER_CONFIG = "epochal/flowerconfig.py"


def api_argv(host: str, port: int) -> list[str]:
    # A module of ours rather than uvicorn's script: it starts EPOCHAL_API_WORKERS processes (epochal/api_server.py).
    return ["python", "-m", "epochal.api_server", "--host", host, "--port", str(port)]


def worker_argv(queues: str, concurrency: int = 1, hostname: str | None = None) -> list[str]:
    argv = ["celery", "-A", CELERY_APP, "worker", "--queues", queues, "--concurrency", str(concurrency)]
    argv += ["--loglevel", "INFO"]
    if hostname:
        argv += ["--hostname", hostname]
    return argv


def flower_argv(port: int) -> list[str]:
    # The config file requires a login (EPOCHAL_FLOWER_BASIC_AUTH); relative to the repository root, the cwd.
    return ["celery", "-A", CELERY_APP, "flower", f"--port={port}", f"--conf={FLOWER_CONFIG}"]


def migrate_argv() -> list[str]:
    return ["alembic", "upgrade", "head"]


def with_this_python(argv: list[str]) -> list[str]:
    """Run a console script (or `python -m`) through the current interpreter, so the active venv is always used."""
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [sys.executable, "-m", *argv]
