"""No password from a configured URL in any response, stored error, start-up message or log line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from config import SettingsError, get_settings
from infra.events import redis_client
from infra.redaction import redact_secrets, redact_url
from infra.task_publisher import get_celery_client, get_nudge_client

BROKER_PASSWORD = "Br0ker-Pa55-9f2c"
DATABASE_PASSWORD = "Db-Pa55w0rd-41aa"
# Nothing listens on port 1: a real, immediate connection refusal.
DEAD_BROKER = f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0"
DEAD_DATABASE = f"postgresql+psycopg://epochal:{DATABASE_PASSWORD}@127.0.0.1:1/epochal"


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set EPOCHAL_* variables for this test, as a deployment would; the settings are read again."""

    def apply(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(f"EPOCHAL_{name.upper()}", value)
        clear_cached_clients()

    yield apply
    monkeypatch.undo()
    clear_cached_clients()


def clear_cached_clients() -> None:
    # Every client built from the settings, so none keeps a dead broker's URL for the tests that run after.
    get_settings.cache_clear()
    get_celery_client.cache_clear()
    get_nudge_client.cache_clear()
    redis_client.cache_clear()


def assert_no_password(text: str) -> None:
    for password in (BROKER_PASSWORD, DATABASE_PASSWORD):
        assert password not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:pw@host:6380/1", "rediss://user:***@host:6380/1"),
        ("postgresql+psycopg://user:p%40ss@db:5432/epochal", "postgresql+psycopg://user:***@db:5432/epochal"),
        ("redis://:p@ss@host/0", "redis://:***@host/0"),  # an unescaped @ in the password
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis+socket:///var/run/broker.sock", "redis+socket:///var/run/broker.sock"),
        ("sqlite:////srv/epochal.db", "sqlite:////srv/epochal.db"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_configured_passwords_are_redacted_from_any_text(configure: Callable[..., None]) -> None:
    configure(broker_url=DEAD_BROKER, database_url=DEAD_DATABASE, flower_basic_auth="watcher:Fl0wer-pw")
    text = (
        f'connection to server failed: password authentication failed ("{DATABASE_PASSWORD}"); '
        f"AUTH {BROKER_PASSWORD} refused; login watcher:Fl0wer-pw; {DEAD_BROKER}"
    )
    redacted = redact_secrets(text)
    assert_no_password(redacted)
    assert "Fl0wer-pw" not in redacted
    assert "redis://:***@127.0.0.1:1/0" in redacted
    assert "authentication failed" in redacted


def test_a_refused_broker_shows_no_password_in_503s_stored_errors_health_or_logs(
    client: TestClient, configure: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    configure(broker_url=DEAD_BROKER)

    refused = client.post("/experiments", json={"dataset": "mnist"})
    assert refused.status_code == 503
    assert "127.0.0.1:1" in refused.text, "the message still says which broker"
    assert_no_password(refused.text)

    stored = client.get("/experiments").json()["items"]
    assert [e["status"] for e in stored] == ["failed"]
    assert "redis://:***@127.0.0.1:1/0" in stored[0]["error"]
    assert_no_password(str(stored))

    sweep = client.post("/sweeps", json={"base": {"dataset": "mnist"}, "grid": {"seed": [1, 2]}})
    assert sweep.status_code == 503
    assert_no_password(sweep.text)

    health = client.get("/health")
    assert health.status_code == 503
    assert_no_password(health.text)

    # What the service's own code and its libraries log goes through the same redaction, tracebacks included.
    logging.getLogger("api.test").error("could not reach %s", get_settings().broker_url)
    try:
        raise ConnectionError(f"AUTH {BROKER_PASSWORD} rejected")
    except ConnectionError:
        logging.getLogger("celery.test").exception("broker error")
    assert "could not reach redis://:***@127.0.0.1:1/0" in caplog.text
    assert "AUTH *** rejected" in caplog.text
    assert_no_password(caplog.text)
    assert_no_password("\n".join(record.getMessage() for record in caplog.records))


def test_worker_start_up_problems_show_no_password(
    configure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import worker.lifecycle
    from models.db import make_engine

    configure(broker_url=DEAD_BROKER, database_url=DEAD_DATABASE)
    monkeypatch.setattr(worker.lifecycle, "get_engine", lambda: make_engine(DEAD_DATABASE))
    app = Celery("secrets-test", broker=DEAD_BROKER)
    app.conf.broker_connection_timeout = 1
    problems = worker.lifecycle.check_dependencies(app)
    assert [problem.split(":")[0] for problem in problems] == ["EPOCHAL_DATABASE_URL", "EPOCHAL_BROKER_URL"]
    assert "postgresql+psycopg://epochal:***@127.0.0.1:1/epochal" in problems[0]
    assert "redis://:***@127.0.0.1:1/0" in problems[1]
    assert_no_password("\n".join(problems))


def test_a_rejected_url_setting_is_not_echoed_with_its_password(configure: Callable[..., None]) -> None:
    configure(database_url=f"mysql://epochal:{DATABASE_PASSWORD}@db/epochal")
    with pytest.raises(SettingsError) as caught:
        get_settings()
    assert "mysql://epochal:***@db/epochal" in str(caught.value)
    assert_no_password(str(caught.value))
