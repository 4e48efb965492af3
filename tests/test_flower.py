"""Flower, started with its one start command: it refuses to run without a login, and asks for it."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from config import SettingsError, get_settings
from epochal.commands import flower_argv, with_this_python
from tests.support import ROOT, free_port

LOGIN = ("watcher", "flower-pw-7c1e")


def flower_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "EPOCHAL_FLOWER_BASIC_AUTH"}
    return {**env, **extra}


def test_flower_refuses_to_start_without_a_login(broker_url: str) -> None:
    result = subprocess.run(
        with_this_python(flower_argv(free_port())),
        cwd=ROOT,
        env=flower_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "EPOCHAL_FLOWER_BASIC_AUTH is not set" in result.stderr
    assert "EPOCHAL_FLOWER_BASIC_AUTH=user:password" in result.stderr


def test_flower_asks_for_its_login(broker_url: str) -> None:
    port = free_port()
    env = flower_env(EPOCHAL_FLOWER_BASIC_AUTH=":".join(LOGIN))
    process = subprocess.Popen(
        with_this_python(flower_argv(port)), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                anonymous = httpx.get(f"{url}/workers", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0].decode(errors="replace")
                assert time.monotonic() < deadline, "Flower did not start"
                time.sleep(0.3)
        assert anonymous.status_code == 401
        assert "basic" in anonymous.headers.get("www-authenticate", "").lower()
        assert httpx.get(f"{url}/workers", auth=(LOGIN[0], "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"{url}/workers", auth=LOGIN, timeout=10).status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert LOGIN[1] not in output, "Flower's log shows its own password"


@pytest.mark.parametrize("value", ["nocolon-secret", ":only-a-password", "only-a-user:"])
def test_the_flower_login_must_be_user_and_password(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EPOCHAL_FLOWER_BASIC_AUTH", value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    message = str(caught.value)
    assert "EPOCHAL_FLOWER_BASIC_AUTH: use 'user:password'" in message
    assert value.strip(":") not in message, "the error echoes the secret"
