"""Settings: read in one place, and a wrong value fails fast with a message that names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from config import Settings
from epochal.commands import api_argv, with_this_python, worker_argv
from tests.support import ROOT, Service, free_port
from worker.lifecycle import gpu_for_child

UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
UNREACHABLE_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/nothing"


def env_with(**overrides: str) -> dict[str, str]:
    return {**os.environ, **overrides}


def test_defaults_are_embedded_and_need_no_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"EPOCHAL_{name.upper()}", raising=False)
    monkeypatch.setenv("EPOCHAL_STATE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'epochal.db'}"
    assert settings.broker_url == f"redis+socket://{tmp_path / 'broker.sock'}"
    assert settings.broker_visibility_timeout_s > settings.task_time_limit_s


def test_bad_values_fail_at_start_naming_each_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from config import get_settings; get_settings()"],
        cwd=ROOT,
        env=env_with(
            EPOCHAL_TASK_TIME_LIMIT_S="soon",
            EPOCHAL_BROKER_URL="amqp://guest@localhost//",
            EPOCHAL_DATABASE_URL="mysql://root@localhost/epochal",
            EPOCHAL_WORKER_GPUS="first",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    for variable in ("EPOCHAL_TASK_TIME_LIMIT_S", "EPOCHAL_BROKER_URL", "EPOCHAL_DATABASE_URL", "EPOCHAL_WORKER_GPUS"):
        assert variable in result.stderr
    assert "redis://" in result.stderr and "postgresql+psycopg://" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"EPOCHAL_BROKER_URL": UNREACHABLE_BROKER}, "EPOCHAL_BROKER_URL"),
        ({"EPOCHAL_DATABASE_URL": UNREACHABLE_DATABASE}, "EPOCHAL_DATABASE_URL"),
    ],
)
def test_a_worker_exits_with_a_clear_error_instead_of_hanging(
    overrides: dict[str, str], variable: str, migrated_database: str, broker_url: str
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        with_this_python(worker_argv("unused")), cwd=ROOT, env=env_with(**overrides), capture_output=True, timeout=120
    )
    assert result.returncode != 0
    assert f"{variable}: cannot reach" in result.stderr.decode(errors="replace")
    assert time.monotonic() - started < 60


def test_health_names_the_dependency_that_does_not_answer(migrated_database: str, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        with_this_python(api_argv("127.0.0.1", port)),
        cwd=ROOT,
        env=env_with(EPOCHAL_BROKER_URL=UNREACHABLE_BROKER),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()
                time.sleep(0.2)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["database"]["ok"] is True
        assert body["broker"]["ok"] is False
        assert body["broker"]["detail"] not in ("", "ok")
    finally:
        api.terminate()
        api.wait(timeout=20)


def test_each_child_process_gets_one_gpu_round_robin() -> None:
    assert [gpu_for_child(i, ["0", "1"]) for i in range(5)] == ["0", "1", "0", "1", "0"]
    assert gpu_for_child(3, []) is None


def test_mixed_precision_on_a_cpu_is_ignored_with_a_warning() -> None:
    import keras
    import tensorflow as tf

    from training.device import setup_device

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU; the CPU fallback is what is tested here")
    try:
        device = setup_device(mixed_precision=True)
        assert device.name == "CPU"
        assert device.mixed_precision is False
        assert any("mixed_precision" in w for w in device.warnings)
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_worker_uses_the_configured_or_inherited_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import lifecycle

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert lifecycle.worker_gpu_ids() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert lifecycle.worker_gpu_ids() == [], "an empty CUDA_VISIBLE_DEVICES hides every GPU"
    monkeypatch.setattr(lifecycle, "get_settings", lambda: Settings(worker_gpus="1"))
    assert lifecycle.worker_gpu_ids() == ["1"], "EPOCHAL_WORKER_GPUS wins over the environment"


@pytest.mark.parametrize(("access_log", "logged"), [(None, False), ("1", True)])
def test_the_api_logs_a_line_per_request_only_when_asked(
    access_log: str | None, logged: bool, migrated_database: str, broker_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EPOCHAL_ACCESS_LOG"}
    if access_log is not None:
        env["EPOCHAL_ACCESS_LOG"] = access_log
    service = Service(tmp_path, "access-log", env)
    try:
        service.start_api()  # polls GET /health until the API answers: the requests whose lines are looked for
    finally:
        service.stop()
    text = (tmp_path / "api.log").read_text()
    assert "Application startup complete" in text  # uvicorn's own lines are still there either way
    assert ("GET /health" in text) is logged
