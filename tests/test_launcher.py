"""`python -m epochal serve`, what scripts/serve runs: every process on embedded defaults, then a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import free_port, start_serve

pytestmark = pytest.mark.e2e


def serve_log(tmp_path: Path) -> str:
    return (tmp_path / "serve.log").read_text(errors="replace")


def test_serve_starts_everything_on_embedded_defaults_and_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    # A reaper and a dispatcher pass every second, so that a stall (three intervals without one) shows within seconds.
    serve = start_serve(
        tmp_path, data_dir, port, "serve.log", {"EPOCHAL_REAPER_INTERVAL_S": "1", "EPOCHAL_DISPATCH_INTERVAL_S": "1"}
    )
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.json()["broker"]["ok"] is True
        assert (tmp_path / "state" / "epochal.db").is_file(), "the SQLite database lives in the state folder"
        assert (tmp_path / "state" / "broker.sock").exists(), "the embedded broker listens on its socket"
        # Secure by default: the first start made an admin key, printed it and left it for the owner alone.
        key_file = tmp_path / "state" / "api-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("epk_") and key in (tmp_path / "serve.log").read_text(errors="replace")
        spec = {"dataset": "mnist", "epochs": 1}
        anonymous = httpx.post(f"http://127.0.0.1:{port}/experiments", json=spec, timeout=10)
        assert anonymous.status_code == 401
        created = httpx.post(
            f"http://127.0.0.1:{port}/experiments", json=spec, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert created.status_code == 202
        assert f"API on http://127.0.0.1:{port}" in (tmp_path / "serve.log").read_text(errors="replace")
        # What the CLI and the client need, ready to paste; the key read from its file, not printed again.
        export = f'export EPOCHAL_URL=http://127.0.0.1:{port} EPOCHAL_API_KEY="$(cat {key_file.resolve()})"'
        assert export in (tmp_path / "serve.log").read_text(errors="replace")

        # A worker killed outright (out of memory) is started again; the service stays up.
        worker = next(p for p in psutil.Process(serve.pid).children() if "worker.celery_app" in " ".join(p.cmdline()))
        worker.kill()
        deadline = time.monotonic() + 60
        while "the worker exited" not in (tmp_path / "serve.log").read_text(errors="replace"):
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text(errors="replace")
            time.sleep(0.2)

        def workers() -> list[psutil.Process]:
            return [p for p in psutil.Process(serve.pid).children() if "--queues" in p.cmdline()]

        while not workers():  # started right after that line
            assert time.monotonic() < deadline, serve_log(tmp_path)
            time.sleep(0.1)
        assert worker.pid not in [p.pid for p in workers()] and len(workers()) == 1  # a new worker; no beat
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200

        # Every process that takes the reaper role is up but none reaps (frozen here; wedged, in life): serve
        # restarts them once no pass ran for three intervals, and passes go on.
        frozen = [p for p in psutil.Process(serve.pid).children() if "redis-server" not in " ".join(p.cmdline())]
        assert len(frozen) == 2, frozen  # the worker and the API
        for process in frozen:
            process.suspend()
        deadline = time.monotonic() + 60
        while "restarting the worker and the API" not in serve_log(tmp_path):
            assert time.monotonic() < deadline, serve_log(tmp_path)
            time.sleep(0.2)
        assert "no reaper pass for" in serve_log(tmp_path)
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                detail = health.json()["reaper"]["detail"]
                if health.status_code == 200 and "last pass" in detail:
                    break
            assert time.monotonic() < deadline, serve_log(tmp_path)
            time.sleep(0.3)
        holder_pid = int(detail.rsplit(":", 1)[1])
        assert holder_pid not in [p.pid for p in frozen] and not any(p.is_running() for p in frozen)
    finally:
        serve.send_signal(signal.SIGTERM)
        returncode = serve.wait(timeout=60)
    assert returncode == 0
    # Every child went with it: nothing of this process group is left running. (The killed worker's pool child
    # died with it, but may linger as a zombie until this machine's init reaps it: it runs nothing.)
    left = []
    for process in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == serve.pid and process.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(process.info)
    assert left == []


def test_serve_killed_outright_takes_its_processes_with_it_and_starts_again(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    serve = start_serve(tmp_path, data_dir, port, "serve.log")
    groups = [serve.pid]
    try:
        children = psutil.Process(serve.pid).children()
        broker = next(c for c in children if "redis-server" in " ".join(c.cmdline()))
        others = [c for c in children if c.pid != broker.pid]
        assert len(others) == 2, children  # the API launcher and the worker
        serve.kill()  # no cleanup runs: what follows is the kernel's doing (epochal/lifeline.py)
        serve.wait(timeout=10)
        _gone, alive = psutil.wait_procs(others, timeout=60)
        assert alive == [], f"outlived serve: {[' '.join(p.cmdline()) for p in alive]}"
        assert broker.is_running(), "the embedded broker stays for the next start"
        # The port is free again, and the next start serves on it with the broker that stayed.
        again = start_serve(tmp_path, data_dir, port, "serve-again.log")
        groups.append(again.pid)
        assert "embedded broker on" not in (tmp_path / "serve-again.log").read_text(errors="replace")
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
    finally:
        for group in groups:  # the broker (in the first), and anything a failure left
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
