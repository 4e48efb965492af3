"""`python -m epochal backup` and `restore` (epochal/backup.py) on the kind of database the suite runs on: a SQLite
file through the online backup API, or PostgreSQL through pg_dump and pg_restore (skipped, saying so, without
them). Each test has databases of its own (tests/seed.py's fresh_database). tests/test_serve_operations.py restores
a running service's backup into a new state folder and serves from it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from epochal.backup import BackupError, backup, restore
from models import Artifact, Experiment
from models.accounts import key_for
from models.db import make_engine
from models.specs import experiment_from_spec
from models.users import ApiKey, User
from tests.seed import finish, fresh_database
from tests.support import migrate_to_head
from training.spec import Dataset, ExperimentSpec

CHECKPOINT = os.urandom(300_000)  # stands for best_model.h5: bytes that must come back exactly


@pytest.fixture
def source(migrated_database: str, tmp_path: Path) -> Iterator[str]:
    """A new migrated database of the suite's kind, with one user and one succeeded experiment with a checkpoint."""
    if not migrated_database.startswith("sqlite") and not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("the suite runs on PostgreSQL, but pg_dump and pg_restore are not on PATH (postgresql-client)")
    with fresh_database(tmp_path) as url:
        migrate_to_head(url)
        add_experiment(url)
        yield url


def add_experiment(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            owner = key_for(session, "owner").key.user
            experiment = experiment_from_spec(ExperimentSpec(dataset=Dataset.MNIST, epochs=2))
            experiment.owner_id, experiment.queue = owner.id, "training"
            session.add(experiment)
            session.flush()
            experiment_id = experiment.id
    finally:
        engine.dispose()
    finish(experiment_id, checkpoint=CHECKPOINT, database_url=url)
    return experiment_id


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return {
                table.__name__: session.scalar(select(func.count()).select_from(table)) or 0
                for table in (User, ApiKey, Experiment, Artifact)
            }
    finally:
        engine.dispose()


def checkpoints(url: str) -> list[bytes]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(select(Artifact.content)))
    finally:
        engine.dispose()


def test_a_backup_taken_while_the_database_is_written_restores_a_consistent_copy(source: str, tmp_path: Path) -> None:
    made: list[str] = []
    stop = threading.Event()

    def make_users() -> None:  # a user and their key per transaction: a snapshot has both or neither
        engine = make_engine(source)
        try:
            while not stop.is_set():
                with Session(engine) as session, session.begin():
                    key_for(session, f"user-{len(made)}")
                made.append(f"user-{len(made)}")
        finally:
            engine.dispose()

    writer = threading.Thread(target=make_users)
    writer.start()
    try:
        while len(made) < 3:  # the writer is busy when the backup starts
            assert writer.is_alive()
            threading.Event().wait(0.01)
        backup(source, tmp_path / "epochal.backup")
        written_during = len(made)
    finally:
        stop.set()
        writer.join(timeout=60)
    file = tmp_path / "epochal.backup"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600, "a backup holds every user's work and key hashes"
    assert not list(tmp_path.glob("*.partial"))

    with fresh_database(tmp_path / "restored") as target:
        restored = restore(target, file)
        assert restored.experiments == 1
        copied = counts(target)
        assert copied["User"] == copied["ApiKey"], "every user with the key made in the same transaction"
        assert 1 + 3 <= copied["User"] <= 1 + written_during + 1  # the owner, and the users made until the backup
        assert (copied["Experiment"], copied["Artifact"]) == (1, 1)
        assert checkpoints(target) == [CHECKPOINT]


def test_a_restore_over_a_database_that_holds_data_needs_force(source: str, tmp_path: Path) -> None:
    file = tmp_path / "epochal.backup"
    backup(source, file)
    add_experiment(source)  # written after the backup: what a restore over it would lose
    with pytest.raises(BackupError, match=r"already holds 2 experiments.*--force"):
        restore(source, file)
    assert counts(source)["Experiment"] == 2, "refused: the database is as it was"
    assert restore(source, file, force=True).experiments == 1
    assert counts(source)["Experiment"] == 1
    assert checkpoints(source) == [CHECKPOINT]


def test_a_restore_refuses_what_is_not_a_sound_backup_and_leaves_the_database_as_it_was(
    source: str, tmp_path: Path
) -> None:
    before = counts(source)
    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("not a backup\n")
    with pytest.raises(BackupError, match="is not a backup made by `python -m epochal backup`"):
        restore(source, not_a_backup, force=True)
    good = tmp_path / "epochal.backup"
    backup(source, good)
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # cut short, as a full disk leaves it
    with pytest.raises(BackupError):
        restore(source, damaged, force=True)
    if source.startswith("sqlite"):
        newer = tmp_path / "newer.backup"
        shutil.copyfile(good, newer)
        with closing(sqlite3.connect(newer)) as connection, connection:
            connection.execute("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(BackupError, match="schema 9999, which this version of Epochal does not know"):
            restore(source, newer, force=True)
    assert counts(source) == before
    assert checkpoints(source) == [CHECKPOINT]
    assert [path.name for path in Path(tmp_path).iterdir() if path.name.endswith(".restoring")] == []


def test_backup_and_restore_name_what_is_missing_or_mismatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    postgres = "postgresql+psycopg://epochal:secret@127.0.0.1:1/epochal"  # nothing listens there: never reached
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump, no pg_restore
    with pytest.raises(BackupError, match="pg_dump was not found: install the PostgreSQL client tools"):
        backup(postgres, tmp_path / "epochal.backup")
    sqlite_backup = tmp_path / "sqlite.backup"
    sqlite_backup.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(BackupError, match="is a SQLite backup but the configured database is PostgreSQL"):
        restore(postgres, sqlite_backup)
    with pytest.raises(BackupError, match="no database at"):
        backup(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "epochal.backup")
    assert not (tmp_path / "missing.db").exists(), "a backup never creates the database it did not find"
