"""The service's own version: which code a process runs, as a model card records it for each training.

EPOCHAL_VERSION when it is set: the image sets it at build time (the Dockerfile's build argument), and
`python -m epochal serve` sets it for the processes it starts. Else the git commit of the checkout, read once at
start (a checkout changed under a running process keeps reporting what it started with), else the package's
release from its metadata.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from config import get_settings

ROOT = Path(__file__).resolve().parent.parent
RELEASE = "0.1.0"  # pyproject.toml's version, when not even the package metadata is there


def _git_commit() -> str | None:
    if not (ROOT / ".git").exists():  # a directory in a clone, a file in a worktree
        return None
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit or None


def _release() -> str:
    try:
        return metadata.version("epochal")
    except metadata.PackageNotFoundError:
        return RELEASE


@lru_cache
def service_version() -> str:
    """This process's service version (see the module's docstring), worked out once."""
    return get_settings().version.strip() or _git_commit() or _release()
