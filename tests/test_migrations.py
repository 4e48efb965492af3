"""Alembic migrations: empty to head, down to base and up again, and no drift from the ORM."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config import get_settings
from models import Base, Experiment
from models.db import make_engine
from models.specs import spec_of
from tests.support import alembic_config
from training.graph.network import NetworkGraph
from training.spec import Dataset, ExperimentSpec, Network


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


EXPERIMENT_AT_0002 = """
INSERT INTO experiment (id, dataset, network, optimizer, head_units, head_activation, loss, epochs, batch_size,
    seed, mixed_precision, sweep_id, queue, status, cancel_requested, warnings, created_at)
VALUES (1, 'mnist', 'mlp', 'adam', 10, 'softmax', 'sparse_categorical_crossentropy', 2, 32, 42, false, 1, 'training',
    'succeeded', false, '[]', CURRENT_TIMESTAMP)
"""


def test_work_from_before_users_belongs_to_the_first_admin(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0002")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO sweep (id, base, grid, created_at) VALUES (1, '{}', '{}', CURRENT_TIMESTAMP)")
        )
        connection.execute(text(EXPERIMENT_AT_0002))
        connection.execute(
            text("INSERT INTO epoch_metric (experiment_id, epoch, seconds, created_at) VALUES (1, 1, 1.5, :now)"),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "head")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        admins = connection.execute(text('SELECT id, name FROM "user" WHERE admin')).all()
        assert [name for _id, name in admins] == ["admin"]
        admin_id = admins[0][0]
        assert connection.execute(text("SELECT owner_id FROM experiment")).scalars().all() == [admin_id]
        assert connection.execute(text("SELECT owner_id FROM sweep")).scalars().all() == [admin_id]
        # Nothing hanging off the experiment was lost when its table was rebuilt.
        assert connection.execute(text("SELECT count(*) FROM epoch_metric")).scalar() == 1
        assert connection.execute(text("SELECT count(*) FROM api_key")).scalar() == 0
        # An epoch from before 0013 says it has no recorded rate, not one it may not have trained at.
        assert connection.execute(text("SELECT learning_rate FROM epoch_metric")).scalars().all() == [None]
    engine.dispose()
    assert schema_drift(empty_database) == []
    command.downgrade(config, "0012")  # 0013's downgrade keeps the epochs
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        assert "learning_rate" not in {c["name"] for c in inspect(engine).get_columns("epoch_metric")}
        assert connection.execute(text("SELECT seconds FROM epoch_metric")).scalars().all() == [1.5]
    engine.dispose()
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_an_empty_database_gets_no_user_from_the_migration(empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "head")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        assert connection.execute(text('SELECT count(*) FROM "user"')).scalar() == 0
    engine.dispose()


def insert_experiment_at_0001(connection: Any, experiment_id: int, status: str) -> None:
    connection.execute(
        text(
            "INSERT INTO experiment (id, dataset, network, optimizer, head_units, head_activation, loss, epochs, "
            "batch_size, seed, mixed_precision, queue, status, cancel_requested, warnings, created_at) VALUES "
            "(:id, 'mnist', 'mlp', 'adam', 10, 'softmax', 'sparse_categorical_crossentropy', 2, 32, 42, false, "
            "'training', :status, false, '[]', :now)"
        ),
        {"id": experiment_id, "status": status, "now": datetime.now(UTC)},
    )


def test_jobs_in_flight_before_attempts_existed_are_handed_to_the_reaper(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0001")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        for experiment_id, status in ((1, "queued"), (2, "running"), (3, "succeeded")):
            insert_experiment_at_0001(connection, experiment_id, status)
    engine.dispose()
    command.upgrade(config, "0002")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, attempt, lease_expires_at IS NOT NULL, next_publish_at IS NOT NULL FROM experiment")
        ).all()
    engine.dispose()
    by_id = {row[0]: tuple(row[1:]) for row in rows}
    # The queued job is due for a publish (its message may be gone), the running one has an expired lease
    # (no heartbeat was ever sent for it), and the finished one ran once.
    assert by_id == {1: (0, False, True), 2: (1, True, False), 3: (1, False, False)}


def test_rows_from_before_0005_keep_the_validation_they_had(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0004")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', true, :now)"),
            {"now": datetime.now(UTC)},
        )
        for experiment_id, split in ((1, None), (2, 0.2)):
            connection.execute(
                text(
                    "INSERT INTO experiment (id, dataset, network, optimizer, head_units, head_activation, loss, "
                    "epochs, batch_size, validation_split, seed, mixed_precision, deterministic, owner_id, queue, "
                    "status, cancel_requested, warnings, attempt, lost_attempts, publish_count, created_at) VALUES "
                    "(:id, 'mnist', 'mlp', 'adam', 10, 'softmax', 'sparse_categorical_crossentropy', 2, 32, :split, "
                    "42, false, false, 1, 'training', 'succeeded', false, '[]', 1, 0, 0, :now)"
                ),
                {"id": experiment_id, "split": split, "now": datetime.now(UTC)},
            )
        connection.execute(
            text(
                "INSERT INTO epoch_metric (experiment_id, epoch, seconds, attempt, created_at) "
                "VALUES (1, 1, 1.5, 1, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "0005")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, validation, repeat, base_seed FROM experiment ORDER BY id")).all()
        # Without a validation_split the old run validated on the test split; with one, on held-out data.
        assert [tuple(r) for r in rows] == [(1, "test", 0, None), (2, "held_out", 0, None)]
        assert connection.execute(text("SELECT count(*) FROM epoch_metric")).scalar() == 1
    engine.dispose()
    command.upgrade(config, "head")  # later revisions keep these rows (0007 turns their network into JSON)
    assert schema_drift(empty_database) == []


def test_role_leases_come_with_0006_and_go_with_its_downgrade(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0005")
    assert not {"role_lease", "role_pass"} & table_names(empty_database)
    command.upgrade(config, "0006")
    assert {"role_lease", "role_pass"} <= table_names(empty_database)
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO role_lease (role, holder, acquired_at, expires_at, passes) "
                "VALUES ('reaper', 'api@host:1', :now, :now, 0)"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.downgrade(config, "0005")
    assert not {"role_lease", "role_pass"} & table_names(empty_database)


def test_networks_become_json_with_0007_and_their_epochs_stay(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0006")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', true, :now)"),
            {"now": datetime.now(UTC)},
        )
        for experiment_id, network, dataset, units in ((1, "mlp", "mnist", 10), (2, "convnet", "cats_vs_dogs", 2)):
            connection.execute(
                text(
                    "INSERT INTO experiment (id, dataset, network, optimizer, head_units, head_activation, loss, "
                    "epochs, batch_size, validation, repeat, seed, mixed_precision, deterministic, owner_id, queue, "
                    "status, cancel_requested, warnings, attempt, lost_attempts, publish_count, created_at) VALUES "
                    "(:id, :dataset, :network, 'adam', :units, 'softmax', 'sparse_categorical_crossentropy', 2, 32, "
                    "'test', 0, 42, false, false, 1, 'training', 'succeeded', false, '[]', 1, 0, 0, :now)"
                ),
                {"id": experiment_id, "network": network, "dataset": dataset, "units": units, "now": datetime.now(UTC)},
            )
        connection.execute(
            text(
                "INSERT INTO epoch_metric (experiment_id, epoch, seconds, attempt, created_at) "
                "VALUES (1, 1, 1.5, 1, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "head")  # through 0007, which turns the network column into JSON
    assert schema_drift(empty_database) == []
    engine = make_engine(empty_database)
    with Session(engine) as session:
        rows = session.scalars(select(Experiment).order_by(Experiment.id)).all()
        assert [spec_of(row).network for row in rows] == [Network.MLP, Network.CONVNET]
        assert len(rows[0].metrics) == 1  # the column moved without taking the epochs with it
        graph = NetworkGraph.model_validate({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 8}]})
        rows[0].network = ExperimentSpec(dataset=Dataset.MNIST, network=graph).network.model_dump(mode="json")  # type: ignore[union-attr]
        session.commit()
    engine.dispose()
    with pytest.raises(RuntimeError, match="1 experiments have a network graph"):
        command.downgrade(config, "0006")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM experiment WHERE id = 1"))
    engine.dispose()
    command.downgrade(config, "0006")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, network FROM experiment")).all() == [(2, "convnet")]
    engine.dispose()


def test_jobs_queued_before_0009_count_as_released_and_every_job_keeps_when_it_was_queued(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0006")
    engine = make_engine(empty_database)
    created = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', true, :now)"), {"now": created}
        )
        for experiment_id, status in ((1, "queued"), (2, "running"), (3, "succeeded")):
            connection.execute(
                text(
                    "INSERT INTO experiment (id, dataset, network, optimizer, head_units, head_activation, loss, "
                    "epochs, batch_size, seed, mixed_precision, deterministic, owner_id, queue, status, "
                    "cancel_requested, warnings, attempt, lost_attempts, publish_count, validation, repeat, "
                    "created_at) VALUES (:id, 'mnist', 'mlp', 'adam', 10, 'softmax', "
                    "'sparse_categorical_crossentropy', 2, 32, 42, false, false, 1, 'training', :status, false, "
                    "'[]', 1, 0, 0, 'held_out', 0, :created)"
                ),
                {"id": experiment_id, "status": status, "created": created},
            )
    engine.dispose()
    command.upgrade(config, "0009")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, dispatched_at IS NOT NULL, queued_at, priority FROM experiment ORDER BY id")
        ).all()
        users = connection.execute(text('SELECT max_running_jobs, priority FROM "user"')).all()
    engine.dispose()
    # The queued job was published when it was submitted, before dispatch existed: it is on the broker already, so
    # the dispatcher must not release it again (the reaper republishes it if nobody claims it).
    assert [(r[0], bool(r[1]), r[3]) for r in rows] == [(1, True, 0), (2, False, 0), (3, False, 0)]
    assert {str(r[2])[:19].replace("T", " ") for r in rows} == {"2026-11-30 12:00:00"}
    assert [tuple(u) for u in users] == [(None, None)]
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_the_blob_store_comes_with_0010_and_goes_with_its_downgrade(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0009")
    assert not {"blob", "blob_chunk"} & table_names(empty_database)
    command.upgrade(config, "0010")
    assert {"blob", "blob_chunk"} <= table_names(empty_database)
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO blob (id, sha256, size, chunks, created_at, touched_at) "
                "VALUES (1, :sha, 3, 1, :now, :now), (2, NULL, 0, 0, :now, :now)"
            ),
            {"sha": "a" * 64, "now": datetime.now(UTC)},
        )
        connection.execute(text("INSERT INTO blob_chunk (blob_id, seq, data) VALUES (1, 0, :data)"), {"data": b"abc"})
        # One name per content: a second complete row with the same hash is refused by the database itself.
        with pytest.raises(IntegrityError), connection.begin_nested():
            connection.execute(
                text("INSERT INTO blob (sha256, size, chunks, created_at, touched_at) VALUES (:sha, 0, 0, :n, :n)"),
                {"sha": "a" * 64, "n": datetime.now(UTC)},
            )
    engine.dispose()
    command.downgrade(config, "0009")
    assert not {"blob", "blob_chunk"} & table_names(empty_database)
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_experiments_from_before_0011_read_back_without_training_options_and_its_downgrade_keeps_them(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0010")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', true, :now)"),
            {"now": datetime.now(UTC)},
        )
        connection.execute(
            text(
                "INSERT INTO experiment (id, dataset, network, optimizer, learning_rate, head_units, head_activation, "
                "loss, epochs, batch_size, validation, validation_split, repeat, seed, mixed_precision, deterministic, "
                "owner_id, queue, status, cancel_requested, warnings, attempt, lost_attempts, publish_count, priority, "
                "created_at) VALUES (1, 'mnist', '\"mlp\"', 'adam', 0.001, 10, 'softmax', "
                "'sparse_categorical_crossentropy', 2, 32, 'held_out', 0.1, 0, 42, false, false, 1, 'training', "
                "'succeeded', false, '[]', 1, 0, 0, 0, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        connection.execute(
            text(
                "INSERT INTO epoch_metric (experiment_id, epoch, seconds, attempt, created_at) "
                "VALUES (1, 1, 1, 1, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "head")  # 0011, and what came after it; the ORM reads the rows as head's schema
    assert schema_drift(empty_database) == []
    engine = make_engine(empty_database)
    with Session(engine) as session:
        row = session.scalars(select(Experiment)).one()
        # The spec it trained: none of the options, so it trains (and trained) as before they existed.
        assert spec_of(row) == ExperimentSpec(dataset=Dataset.MNIST, epochs=2, learning_rate=0.001)
        assert row.stopped_early_at is None
        options = ExperimentSpec(
            dataset=Dataset.MNIST,
            early_stopping={"patience": 2},  # type: ignore[arg-type]
            lr_schedule={"type": "cosine", "warmup_epochs": 1},  # type: ignore[arg-type]
            class_weight="balanced",  # type: ignore[arg-type]
        )
        from models.specs import spec_row_values

        for column, value in spec_row_values(options).items():
            setattr(row, column, value)
        session.commit()
    with Session(engine) as session:
        assert spec_of(session.scalars(select(Experiment)).one()) == options.model_copy(update={"learning_rate": 0.001})
    with engine.connect() as connection:  # a schedule left out is SQL's null, so rows can be filtered on it
        assert connection.execute(text("SELECT count(*) FROM experiment WHERE lr_schedule IS NULL")).scalar() == 0
    engine.dispose()
    command.downgrade(config, "0010")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(engine).get_columns("experiment")}
        assert not {"lr_schedule", "early_stopping_patience", "stopped_early_at"} & columns
        assert connection.execute(text("SELECT count(*) FROM epoch_metric")).scalar() == 1  # the epochs stayed
    engine.dispose()


def test_users_from_before_0012_keep_the_service_wide_network_limits_and_its_downgrade_keeps_them(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0011")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, max_active_jobs, created_at) VALUES (1, 'a', false, 3, :now)"),
            {"now": datetime.now(UTC)},
        )
        connection.execute(
            text("INSERT INTO api_key (id, user_id, prefix, sha256, created_at) VALUES (1, 1, 'p', :sha, :now)"),
            {"sha": "b" * 64, "now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "0012")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        limits = 'SELECT max_network_params, max_network_flops, max_network_activation_bytes FROM "user"'
        assert [tuple(row) for row in connection.execute(text(limits))] == [(None, None, None)]
        # Past 32 bits: FLOPs and bytes run to billions.
        connection.execute(text('UPDATE "user" SET max_network_flops = :flops'), {"flops": 40_000_000_000})
        assert [tuple(row) for row in connection.execute(text(limits))] == [(None, 40_000_000_000, None)]
    engine.dispose()
    command.downgrade(config, "0011")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(engine).get_columns("user")}
        assert not {"max_network_params", "max_network_flops", "max_network_activation_bytes"} & columns
        assert connection.execute(text('SELECT max_active_jobs FROM "user"')).scalars().all() == [3]
        assert connection.execute(text("SELECT count(*) FROM api_key")).scalar() == 1  # the keys stayed
    engine.dispose()
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_dataset_rows_come_with_0014_holding_the_built_ins_and_go_with_its_downgrade(empty_database: str) -> None:
    from sqlalchemy import JSON, column, insert, table

    from training.spec import DATASETS

    config = alembic_config(empty_database)
    command.upgrade(config, "0013")
    assert "dataset_version" not in table_names(empty_database)
    command.upgrade(config, "0014")
    # Read and written as 0014 made the table (the ORM's model has columns of later revisions).
    versions = table(
        "dataset_version",
        *(column(name) for name in ("id", "name", "version", "owner_id", "visibility", "status", "created_by")),
        *(column(name) for name in ("content_sha256", "blob_sha256", "upload_sha256", "created_at")),
        column("class_names", JSON),
        column("input_shape", JSON),
        column("errors", JSON),
        column("options", JSON),
    )
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        rows = connection.execute(select(versions).order_by(versions.c.name)).all()
        # The built-ins as the app knows them: a migration's copy that drifted from training/spec.py fails here.
        assert {row.name: (row.class_names, row.input_shape) for row in rows} == {
            str(info.name): (list(info.class_names), list(info.input_shape)) for info in DATASETS.values()
        }
        for row in rows:
            assert (row.version, row.owner_id, row.visibility, row.status) == (1, None, "public", "ready")
            assert row.content_sha256 is None and row.blob_sha256 is None
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', false, :now)"),
            {"now": datetime.now(UTC)},
        )
        upload = {
            "name": "flowers",
            "version": 1,
            "owner_id": 1,
            "created_by": 1,
            "visibility": "private",
            "status": "processing",
            "errors": [],
            "options": {},
            "upload_sha256": "b" * 64,
            "created_at": datetime.now(UTC),
        }
        connection.execute(insert(versions).values(**upload))
    # One version number per name: a second version 1 is refused by the database itself.
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert(versions).values(**upload))
    engine.dispose()
    command.downgrade(config, "0013")
    assert "dataset_version" not in table_names(empty_database)
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []
    engine = make_engine(empty_database)
    with engine.connect() as connection:  # up again: the built-ins are back, the upload's row is not
        names = connection.execute(text("SELECT name FROM dataset_version ORDER BY name")).scalars().all()
    engine.dispose()
    assert names == ["cats_vs_dogs", "fashion_mnist", "mnist"]


def test_experiments_from_before_0015_trained_on_version_1_of_their_built_in(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0001")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        insert_experiment_at_0001(connection, 1, "succeeded")
    engine.dispose()
    command.upgrade(config, "0014")
    assert "dataset_version" not in {c["name"] for c in inspect(make_engine(empty_database)).get_columns("experiment")}
    command.upgrade(config, "0015")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT dataset, dataset_version FROM experiment")).all() == [("mnist", 1)]
        # An uploaded dataset's name fits the column that held the built-ins' names.
        connection.execute(text("UPDATE experiment SET dataset = :name, dataset_version = 3"), {"name": "f" * 40})
    engine.dispose()
    with pytest.raises(RuntimeError, match="trained on uploaded datasets"):
        command.downgrade(config, "0014")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(text("UPDATE experiment SET dataset = 'mnist'"))
    engine.dispose()
    command.downgrade(config, "0014")
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_dataset_shares_come_with_0016_and_go_with_its_downgrade(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0015")
    assert "dataset_share" not in table_names(empty_database)
    command.upgrade(config, "0016")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', false, :now), (2, 'b', false, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        share = "INSERT INTO dataset_share (name, user_id, shared_by, created_at) VALUES ('flowers', 2, 1, :now)"
        connection.execute(text(share), {"now": datetime.now(UTC)})
    with pytest.raises(IntegrityError), engine.begin() as connection:  # one share per name and user
        connection.execute(text(share), {"now": datetime.now(UTC)})
    engine.dispose()
    command.downgrade(config, "0015")
    assert "dataset_share" not in table_names(empty_database)
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_versions_from_before_0017_count_no_preparation_and_its_downgrade_keeps_them(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0016")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        now = datetime.now(UTC)
        connection.execute(
            text("INSERT INTO \"user\" (id, name, admin, created_at) VALUES (1, 'a', false, :now)"), {"now": now}
        )
        connection.execute(
            text(
                "INSERT INTO dataset_version (id, name, version, owner_id, visibility, status, errors, options, "
                "upload_sha256, created_at) VALUES (10, 'flowers', 1, 1, 'private', 'processing', '[]', '{}', :sha, "
                ":now)"
            ),
            {"sha": "b" * 64, "now": now},
        )
    engine.dispose()
    command.upgrade(config, "0017")
    leases = "SELECT prepare_attempts, prepare_lease_expires_at, prepare_published_at FROM dataset_version WHERE id=10"
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        # A version processing already has no attempt counted and no lease: the reaper may publish it again.
        assert [tuple(row) for row in connection.execute(text(leases))] == [(0, None, None)]
        connection.execute(text("UPDATE dataset_version SET prepare_attempts = 2 WHERE id = 10"))
    engine.dispose()
    command.downgrade(config, "0016")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(engine).get_columns("dataset_version")}
        assert not {"prepare_attempts", "prepare_lease_expires_at", "prepare_published_at"} & columns
        kept = "SELECT status, upload_sha256 FROM dataset_version WHERE id = 10"
        assert [tuple(row) for row in connection.execute(text(kept))] == [("processing", "b" * 64)]
    engine.dispose()
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []


def test_users_from_before_0018_keep_the_service_wide_storage_quota_and_its_downgrade_keeps_them(
    empty_database: str,
) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "0017")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO \"user\" (id, name, admin, max_network_params, created_at) VALUES (1, 'a', false, 7, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    command.upgrade(config, "0018")
    engine = make_engine(empty_database)
    with engine.begin() as connection:
        assert connection.execute(text('SELECT max_storage_bytes FROM "user"')).scalars().all() == [None]
        # Past 32 bits: quotas run to terabytes.
        connection.execute(text('UPDATE "user" SET max_storage_bytes = :bytes'), {"bytes": 5 * 2**40})
        assert connection.execute(text('SELECT max_storage_bytes FROM "user"')).scalars().all() == [5 * 2**40]
    engine.dispose()
    command.downgrade(config, "0017")
    engine = make_engine(empty_database)
    with engine.connect() as connection:
        assert "max_storage_bytes" not in {c["name"] for c in inspect(engine).get_columns("user")}
        assert connection.execute(text('SELECT max_network_params FROM "user"')).scalars().all() == [7]
    engine.dispose()
    command.upgrade(config, "head")
    assert schema_drift(empty_database) == []
