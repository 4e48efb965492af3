"""Alembic migrations: empty to head, down to base and up again, and no drift from the ORM."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from config import get_settings
from models import Base
from models.db import make_engine
from tests.support import alembic_config


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A brand-new database of the kind the suite runs on: a SQLite file, or a throwaway PostgreSQL database."""
    url = make_url(get_settings().database_url)
    if url.get_backend_name() != "postgresql":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"epochal_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_drift(url: str) -> list[object]:
    engine = make_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    return diff


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    assert {"experiment", "epoch_metric", "evaluation", "artifact", "sweep"} <= table_names(empty_database)
    assert schema_drift(empty_database) == []
    command.downgrade(config, "base")
    assert table_names(empty_database) <= {"alembic_version"}
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_constraint_names_follow_the_naming_convention(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "head")
    inspector = inspect(make_engine(empty_database))
    uniques = {c["name"] for c in inspector.get_unique_constraints("epoch_metric")}
    assert "uq_epoch_metric_experiment_id_epoch" in uniques
    foreign_keys = {fk["name"] for fk in inspector.get_foreign_keys("artifact")}
    assert foreign_keys == {"fk_artifact_experiment_id_experiment"}
    assert inspector.get_pk_constraint("experiment")["name"] in ("pk_experiment", None)  # SQLite does not name PKs
