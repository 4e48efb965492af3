"""Backup and restore of the service's one database, next to `serve`:

    python -m epochal backup FILE             everything the service keeps, into FILE (mode 0600)
    python -m epochal restore FILE [--force]  FILE into the configured database

Everything lives in the database (users and key hashes, experiments, epochs, evaluations, checkpoints), so one
file holds it all. Both commands need only the database settings (EPOCHAL_DATABASE_URL, or the embedded default
under EPOCHAL_STATE_DIR), and a backup is safe while the service runs:

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies the database in one read transaction, a
  consistent snapshot that writers do not wait for (the database is in WAL mode).
- PostgreSQL: `pg_dump -Fc` (one snapshot too), restored with `pg_restore --clean --if-exists` in one transaction.

A restore checks the file before it touches anything (SQLite: `PRAGMA integrity_check`, and a schema version this
code knows), and replaces the database all at once or not at all. It refuses a database that already holds data
unless told `--force`: that may be a running service's, and restoring under it loses what it wrote since.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from config import get_settings
from infra import invalidation
from infra.redaction import redact_secrets, redact_url
from models import Experiment
from models.db import make_engine

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"  # pg_dump's custom format (-Fc)
EXPERIMENTS = Experiment.__tablename__
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
POSTGRES_TOOLS_HINT = (
    "install the PostgreSQL client tools of the server's major version or newer "
    "(Debian/Ubuntu: apt-get install postgresql-client), or put them on PATH"
)


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Restored:
    schema: str  # the Alembic revision of the restored database
    experiments: int


def backup(database_url: str, target: Path) -> None:
    """Write everything in the database at `database_url` to `target`, replacing it only once complete."""
    partial = target.with_name(target.name + ".partial")
    if not target.parent.is_dir():
        raise BackupError(f"no folder {target.parent} to write the backup in; create it first")
    partial.unlink(missing_ok=True)
    _private_file(partial)
    try:
        if _is_sqlite(database_url):
            _sqlite_backup(_sqlite_path(database_url), partial)
        else:
            _pg_dump(database_url, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def restore(database_url: str, source: Path, *, force: bool = False) -> Restored:
    """Replace the database at `database_url` by the backup `source`; the database stays as it was if this fails."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    with source.open("rb") as file:
        head = file.read(len(SQLITE_MAGIC))
    sqlite_target = _is_sqlite(database_url)
    if head.startswith(PG_DUMP_MAGIC if sqlite_target else SQLITE_MAGIC):
        made_by, configured = ("PostgreSQL", "SQLite") if sqlite_target else ("SQLite", "PostgreSQL")
        raise BackupError(
            f"{source} is a {made_by} backup but the configured database is {configured}: set EPOCHAL_DATABASE_URL "
            f"to a {made_by} database to restore it there"
        )
    if not head.startswith(SQLITE_MAGIC if sqlite_target else PG_DUMP_MAGIC):
        raise BackupError(f"{source} is not a backup made by `python -m epochal backup`")
    if sqlite_target:
        restored = _sqlite_restore(source, _sqlite_path(database_url), force=force)
    else:
        restored = _pg_restore(source, database_url, force=force)
    # Ids now name other rows: a running API process must not keep serving what it remembers of the old ones.
    invalidation.publish("restored")
    return restored


# --- SQLite ----------------------------------------------------------------------------------------------


def _is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError("the configured SQLite database is in memory: there is nothing on disk to back up")
    return Path(database)


def _sqlite_backup(database: Path, target: Path) -> None:
    if not database.is_file():
        raise BackupError(
            f"no database at {database}: set EPOCHAL_STATE_DIR to the service's state folder "
            "(or EPOCHAL_DATABASE_URL to its database)"
        )
    try:
        _sqlite_copy(_opened(database, "rw"), target)  # rw, not rwc: never create an empty one where it was expected
    except sqlite3.Error as error:
        raise BackupError(f"could not read {database}: {error}") from None
    with closing(sqlite3.connect(target)) as copy:
        # One self-contained file, with no -wal beside it to lose on the way to where it is kept.
        copy.execute("PRAGMA journal_mode=DELETE")


def _opened(database: Path, mode: str) -> sqlite3.Connection:
    """A connection to an existing database file (`mode` "ro" or "rw"): SQLite would otherwise create a new one."""
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode={mode}", uri=True, timeout=30)


def _sqlite_copy(source: sqlite3.Connection, target: Path) -> None:
    """Every page of `source` into the database file `target` (closing both), in one step.

    One step is one read transaction on the source, a consistent snapshot while others write to it, and one write
    transaction on the target, rolled back if anything fails.
    """
    with closing(source), closing(sqlite3.connect(target, timeout=30)) as copy:
        source.backup(copy)


def _sqlite_restore(source: Path, database: Path, *, force: bool) -> Restored:
    replacing = database.is_file() and _sqlite_holds_tables(database)
    if replacing and not force:
        raise BackupError(_in_use_message(database, _sqlite_experiments(database)))
    folder = database.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new state folder, made as serve makes it
    # The backup is copied and checked beside the database before anything of the database is touched.
    staged = folder / f".{database.name}.restoring"
    staged.unlink(missing_ok=True)
    _private_file(staged)
    try:
        try:
            _sqlite_copy(_opened(source, "ro"), staged)
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{source} is damaged: {error}") from None
        restored = _checked_sqlite(staged, source)
        if replacing:
            # Into the database itself, not a rename over it: a service still using it sees the restored data (not
            # an unlinked file), and SQLite writes it in one transaction, rolled back if anything fails.
            try:
                _sqlite_copy(_opened(staged, "ro"), database)
            except sqlite3.Error as error:
                raise BackupError(f"could not write {database}, left as it was: {error}") from None
        else:
            # Nothing there, or an empty file: a -wal or -shm left beside it would belong to another database.
            for leftover in (database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")):
                leftover.unlink(missing_ok=True)
            os.replace(staged, database)
        return restored
    finally:
        staged.unlink(missing_ok=True)


def _checked_sqlite(copy: Path, source: Path) -> Restored:
    with closing(sqlite3.connect(copy)) as connection:
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
            versions = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
            experiments = connection.execute(f"SELECT count(*) FROM {EXPERIMENTS}").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{source} is not a backup of an Epochal database ({error})") from None
    if problems != ["ok"]:
        raise BackupError(f"{source} is damaged (integrity check: {'; '.join(problems[:3])})")
    return Restored(_known_schema(versions, source), int(experiments))


def _sqlite_holds_tables(database: Path) -> bool:
    with closing(_opened(database, "ro")) as connection:
        return connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0


def _sqlite_experiments(database: Path) -> int | None:
    with closing(_opened(database, "ro")) as connection:
        try:
            return int(connection.execute(f"SELECT count(*) FROM {EXPERIMENTS}").fetchone()[0])
        except sqlite3.DatabaseError:
            return None


# --- PostgreSQL --------------------------------------------------------------------------------------------


@contextmanager
def _libpq(database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The URL as libpq reads it (postgresql://, no driver) without its password, which goes in PGPASSWORD instead:
    a command line is visible to every account on the machine."""
    url: URL = make_url(database_url)
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    yield url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _postgres_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} was not found: {POSTGRES_TOOLS_HINT}")
    return found


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


def _pg_dump(database_url: str, target: Path) -> None:
    pg_dump = _postgres_tool("pg_dump")
    with _libpq(database_url) as (url, env):
        done = _run([pg_dump, "--format=custom", f"--file={target}", f"--dbname={url}"], env)
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {redact_secrets(done.stderr.strip())}")


def _pg_restore(source: Path, database_url: str, *, force: bool) -> Restored:
    pg_restore = _postgres_tool("pg_restore")
    with _libpq(database_url) as (url, env):
        listed = _run([pg_restore, "--list", str(source)], env)
        if listed.returncode != 0:
            raise BackupError(f"{source} is not a readable pg_dump archive: {listed.stderr.strip()}")
        if "TABLE DATA public alembic_version" not in listed.stdout:
            raise BackupError(f"{source} is not a backup of an Epochal database (no alembic_version table in it)")
        # The schema version, read from the archive itself (its COPY data) before anything is restored.
        data = _run([pg_restore, "--data-only", "--table=alembic_version", "--file=-", str(source)], env)
        versions = list(_copy_rows(data.stdout))
        schema = _known_schema(versions, source)
        experiments = _pg_experiments(database_url)
        if experiments is not None and not force:
            raise BackupError(_in_use_message(redact_url(database_url), experiments))
        # One transaction: on any error nothing of it stays, and the database is as it was.
        done = _run(
            [
                pg_restore,
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--no-owner",
                f"--dbname={url}",
                str(source),
            ],
            env,
        )
    if done.returncode != 0:
        raise BackupError(
            f"pg_restore failed, and the database was left as it was: {redact_secrets(done.stderr.strip())}"
        )
    counted = _pg_experiments(database_url)
    return Restored(schema, counted or 0)


def _copy_rows(sql: str) -> Iterator[str]:
    """The rows of the COPY blocks in pg_restore's SQL output."""
    inside = False
    for line in sql.splitlines():
        if line.startswith("COPY "):
            inside = True
        elif line == "\\.":
            inside = False
        elif inside and line:
            yield line


def _pg_experiments(database_url: str) -> int | None:
    """How many experiments the database holds; None when it holds no table at all (new, or emptied)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            if not tables:
                return None
            if EXPERIMENTS not in tables:
                return 0
            return int(connection.execute(text(f"SELECT count(*) FROM {EXPERIMENTS}")).scalar_one())
    except SQLAlchemyError as error:
        raise BackupError(
            f"cannot reach the database {redact_url(database_url)} (create it first if it is new): "
            f"{redact_secrets(str(error))}"
        ) from None
    finally:
        engine.dispose()


# --- both ----------------------------------------------------------------------------------------------


def _known_schema(versions: list[str], source: Path) -> str:
    if len(versions) != 1:
        raise BackupError(f"{source} is not a backup of an Epochal database (schema version: {versions or 'none'})")
    scripts = ScriptDirectory(str(MIGRATIONS))
    if versions[0] not in {revision.revision for revision in scripts.walk_revisions()}:
        raise BackupError(
            f"{source} has schema {versions[0]}, which this version of Epochal does not know: it was made by a newer "
            "one; restore it with that version"
        )
    return versions[0]


def _in_use_message(where: object, experiments: int | None) -> str:
    holding = f"already holds {experiments} experiments" if experiments is not None else "already holds a database"
    return (
        f"{where} {holding}: it may be a running service's, and restoring over it loses whatever it wrote since the "
        "backup. Stop the service and pass --force to replace it, or restore into a new state folder "
        "(EPOCHAL_STATE_DIR=new-folder) or an empty database"
    )


def _private_file(path: Path) -> None:
    """Create `path` empty, readable by its owner only: a backup holds every user's work and key hashes."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    os.chmod(path, 0o600)


def _backup_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        backup(settings.database_url, Path(args.file))
    except BackupError as error:
        print(f"epochal: backup failed: {error}", file=sys.stderr)
        return 1
    print(f"epochal: backed up the database to {args.file} (mode 0600)")
    return 0


def _restore_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        restored = restore(settings.database_url, Path(args.file), force=args.force)
    except BackupError as error:
        print(f"epochal: restore failed: {error}", file=sys.stderr)
        return 1
    print(
        f"epochal: restored {restored.experiments} experiments (schema {restored.schema}) from {args.file}; "
        "start the service on it (newer migrations are applied at start)"
    )
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `backup` and `restore` subcommands; each parser's `run` is the function to call with the parsed args."""
    backup_parser = commands.add_parser("backup", help="copy the whole database to a file, safe while serving")
    backup_parser.add_argument("file", help="where to write the backup (replaced once complete)")
    backup_parser.set_defaults(run=_backup_command)
    restore_parser = commands.add_parser("restore", help="replace the database by a backup file")
    restore_parser.add_argument("file", help="a file written by `backup`")
    restore_parser.add_argument(
        "--force", action="store_true", help="replace a database that already holds data (stop the service first)"
    )
    restore_parser.set_defaults(run=_restore_command)
