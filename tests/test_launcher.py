"""`python -m epochal serve`, what scripts/serve runs: every process on embedded defaults, then a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_serve_starts_everything_on_embedded_defaults_and_stops_cleanly(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPOCHAL_")}
    env |= {"EPOCHAL_STATE_DIR": str(tmp_path / "state"), "EPOCHAL_DATA_DIR": str(data_dir)}
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "epochal", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        health = None
        while health is None or health.status_code != 200:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text(errors="replace")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.TransportError:
                time.sleep(0.3)
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

        # A worker killed outright (out of memory) is started again; the service stays up.
        worker = next(
            p
            for p in psutil.Process(serve.pid).children()
            if "worker.celery_app" in " ".join(p.cmdline()) and "--beat" not in p.cmdline()
        )
        worker.kill()
        deadline = time.monotonic() + 60
        while "the worker exited" not in (tmp_path / "serve.log").read_text(errors="replace"):
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text(errors="replace")
            time.sleep(0.2)
        workers = [p for p in psutil.Process(serve.pid).children() if "--queues" in p.cmdline()]
        assert worker.pid not in [p.pid for p in workers] and len(workers) == 2  # a new worker, and the reaper
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
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
