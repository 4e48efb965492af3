"""The exact commands that start each part of the service.

The launcher, the tests, the Dockerfile and docker-compose.yml all use these, so there is one way to
start anything.
"""

from __future__ import annotations

import sys

API_APP = "api.main:app"
CELERY_APP = "worker.celery_app"


def api_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", API_APP, "--host", host, "--port", str(port)]


def worker_command(queues: str, concurrency: int = 1, hostname: str | None = None) -> list[str]:
    command = [
        sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
        "--queues", queues,
        "--concurrency", str(concurrency),
        "--loglevel", "INFO",
    ]  # fmt: skip
    if hostname:
        command += ["--hostname", hostname]
    return command


def migrate_command() -> list[str]:
    return [sys.executable, "-m", "alembic", "upgrade", "head"]
