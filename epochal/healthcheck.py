"""A container healthcheck that also restarts what stopped reaping: `python -m epochal.healthcheck [--url URL]`.

With `--url` it asks the API's /health; without, it reads the roles' rows itself (a worker container has no HTTP).
It exits 0 when healthy and 1 otherwise. With `--restart-on-stall`, when the database answers but the reaper's or
the dispatcher's passes stopped (none for three of its intervals: upkeep/watch.py `stalled`), it also sends SIGTERM
to the container's main process (`--pid`, default 1): the container exits and its `restart: unless-stopped` starts
it again, a fresh keeper with it. Docker itself never restarts a container for being unhealthy; this is how one
comes back.
A database or broker that does not answer only makes the check fail: restarting would not bring it back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path


def started_at(pid: int) -> datetime:
    """When process `pid` started, from /proc (its start in clock ticks after the machine's boot time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # field 22 of stat(5); the first two (pid, comm) are before the ")"
    boot = next(
        int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def stall_from_api(url: str) -> tuple[bool, str | None]:
    """(healthy, why a role counts as stopped while the database answers), from the API's /health."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200, None
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except ValueError:
            return False, None
        if not (body.get("database") or {}).get("ok"):
            return False, None
        roles = [body.get(role) or {} for role in ("reaper", "dispatcher")]
        return False, next((role.get("detail") for role in roles if not role.get("ok", True)), None)
    except OSError:
        return False, None


def stall_from_database(pid: int) -> tuple[bool, str | None]:
    """(healthy, why a role counts as stopped), from the roles' rows, with `pid`'s start as the grace's start."""
    from models.base import utcnow
    from models.db import session_scope
    from upkeep.watch import first_stall

    try:
        with session_scope() as session:
            problem = first_stall(session, utcnow(), started_at(pid))
    except Exception as exc:
        print(f"the database does not answer: {type(exc).__name__}", file=sys.stderr)
        return False, None
    return problem is None, problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m epochal.healthcheck", description=__doc__)
    parser.add_argument("--url", help="the API's /health (default: read the database)")
    parser.add_argument("--restart-on-stall", action="store_true", help="SIGTERM --pid when a role's passes stopped")
    parser.add_argument("--pid", type=int, default=1, help="the process to stop (default 1: the container's main)")
    args = parser.parse_args(argv)
    healthy, stall = stall_from_api(args.url) if args.url else stall_from_database(args.pid)
    if stall is not None:
        print(f"role passes stopped: {stall}", file=sys.stderr)
        if args.restart_on_stall:
            print(f"stopping process {args.pid} so that it is started again", file=sys.stderr)
            os.kill(args.pid, signal.SIGTERM)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
