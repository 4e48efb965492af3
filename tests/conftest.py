"""Test setup: real database, real broker, real worker processes.

By default everything is embedded (a SQLite file and a redis-server on a unix socket, both in a
temporary folder). Set EPOCHAL_DATABASE_URL / EPOCHAL_BROKER_URL to run the same tests against your
own PostgreSQL and Redis; the tests then empty that database and that Redis db number first.

Data: EPOCHAL_DATA_DIR is used when it holds mnist.npz and cats_vs_dogs/; otherwise small data of
the same layout is generated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Settings are read once per process: point them at test resources before any project import reads them.
_TMP = Path(tempfile.mkdtemp(prefix="epochal-tests-"))
_EXTERNAL_DATABASE = bool(os.environ.get("EPOCHAL_DATABASE_URL"))
_EXTERNAL_BROKER = bool(os.environ.get("EPOCHAL_BROKER_URL"))
os.environ.setdefault("EPOCHAL_STATE_DIR", str(_TMP / "state"))
os.environ.setdefault("EPOCHAL_DATABASE_URL", f"sqlite:///{_TMP / 'epochal-test.db'}")
os.environ.setdefault("EPOCHAL_BROKER_URL", f"redis+socket://{_TMP / 'broker.sock'}")
# API tests enqueue to a queue no test worker consumes; end-to-end workers get their own queue.
os.environ["EPOCHAL_DEFAULT_QUEUE"] = "api-tests"
# The queues this test deployment serves: the default, and one more that a test submits to by name.
os.environ["EPOCHAL_QUEUES"] = "api-tests,gpu-api-tests.1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The in-process API of the tests takes no roles: a reaper pass in the test process would act on the rows a test
# sets up. The processes a test starts take them (tests/support.py FAST_RECOVERY), as the service's own do.
os.environ["EPOCHAL_TAKE_ROLES"] = "0"

from tests.datagen import write_all  # noqa: E402
from training.datafiles import in_data_dir  # noqa: E402
from training.spec import Dataset  # noqa: E402


def _real_data_dir() -> Path | None:
    configured = os.environ.get("EPOCHAL_DATA_DIR")
    if configured and all(in_data_dir(d, Path(configured)) for d in (Dataset.MNIST, Dataset.CATS_VS_DOGS)):
        return Path(configured).resolve()
    return None


REAL_DATA_DIR = _real_data_dir()
if REAL_DATA_DIR is None:
    os.environ["EPOCHAL_DATA_DIR"] = str(write_all(_TMP / "data"))
else:
    os.environ["EPOCHAL_DATA_DIR"] = str(REAL_DATA_DIR)

from config import get_settings  # noqa: E402
from infra.redaction import redact_url  # noqa: E402
from tests.support import migrate_to_head, reset_database  # noqa: E402


def pytest_report_header() -> list[str]:
    settings = get_settings()
    data = "real (EPOCHAL_DATA_DIR)" if REAL_DATA_DIR else "generated"
    database, broker = redact_url(settings.database_url), redact_url(settings.broker_url)
    return [f"epochal: database {database}, broker {broker}, data {data}"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return get_settings().data_dir


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """A real Redis broker: the one configured, emptied first, or an embedded one for this session."""
    from epochal.broker import socket_path_of, start_embedded_broker

    url = get_settings().broker_url
    if _EXTERNAL_BROKER:
        import redis

        redis.Redis.from_url(url).flushdb()
        yield url
        redis.Redis.from_url(url).flushdb()
        return
    socket_path = socket_path_of(url)
    assert socket_path is not None, "the embedded test broker needs a redis+socket:// URL"
    process = start_embedded_broker(socket_path, persist=False)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def migrated_database() -> str:
    """The test database, emptied and migrated from nothing to head with Alembic."""
    url = get_settings().database_url
    if _EXTERNAL_DATABASE:
        reset_database(url)
    migrate_to_head(url)
    return url


@pytest.fixture
def db(migrated_database: str) -> str:
    """A migrated database with every table empty, for one test."""
    from tests.support import empty_all_tables

    empty_all_tables()
    return migrated_database


@pytest.fixture
def client(db: str, broker_url: str) -> Iterator[object]:
    """The API in-process, on the real database and broker, calling with an admin's key."""
    from fastapi.testclient import TestClient

    from api.main import app
    from tests.support import ADMIN, bearer, new_key

    with TestClient(app, headers=bearer(new_key(ADMIN, admin=True))) as test_client:
        yield test_client


@pytest.fixture
def other_client(client: object) -> Iterator[object]:
    """The same API, calling with the key of a second user who is not an admin."""
    from fastapi.testclient import TestClient

    from api.main import app
    from tests.support import OTHER, bearer, new_key

    with TestClient(app, headers=bearer(new_key(OTHER))) as test_client:
        yield test_client


@pytest.fixture
def anonymous_client(client: object) -> Iterator[object]:
    """The same API, calling with no key at all."""
    from fastapi.testclient import TestClient

    from api.main import app

    with TestClient(app) as test_client:
        yield test_client


# What these modules check cannot change with the database or broker in use: training and its numbers, the client
# and CLI over HTTP, the pages, the contracts of files and routes. CI runs them once, on the embedded defaults, and
# runs every other module again on PostgreSQL and a Redis server (`-m "not backend_independent"` in .ci/run).
BACKEND_INDEPENDENT = {
    "test_backprop",
    "test_browser",
    "test_cli",
    "test_client",
    "test_client_parts",
    "test_cli_datasets",  # the CLI over HTTP; the datasets' storage on each backend is test_dataset_rows' and others'
    "test_cluster",  # hosts of its own: PostgreSQL and Redis on a data host, whatever the suite runs on
    "test_compose",
    "test_contract",
    "test_generated_client",
    "test_homework_quick",
    "test_images",
    "test_launcher",  # `serve` on its own embedded defaults, whatever the suite runs on
    "test_layering",
    "test_network_backbones",
    "test_network_graph",
    "test_packed",
    "test_pipeline",
    "test_resume",
    "test_serve_operations",  # `serve` on its own embedded defaults, whatever the suite runs on
    "test_spec",
    "test_training",
    "test_training_options",
    "test_ui_pages",
    "test_upload_hostile",
    "test_uploads",
}


# Of those, these run once in CI's PostgreSQL + Redis suite instead (suite 1 runs `-m "not in_suite_2"`): the two
# suites run side by side, and the longer one decides when CI ends. They bring their own data (or hosts).
IN_SUITE_2 = {"test_cli_datasets", "test_cluster", "test_homework_quick"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in IN_SUITE_2:
            item.add_marker(pytest.mark.in_suite_2)
        elif item.path.stem in BACKEND_INDEPENDENT:
            item.add_marker(pytest.mark.backend_independent)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_TMP, ignore_errors=True)
