"""Engine and session factory, built once per process from the settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from config import get_settings


def make_engine(url: str, pooled: bool = True) -> Engine:
    """An engine for `url`; SQLite gets foreign keys on and a busy timeout for concurrent writers.

    Unpooled, every connection is closed when its session ends: see `hold_no_idle_connections`.
    """
    pool: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            # WAL lets the API read while a worker writes an epoch row.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


_pooled = True


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url, pooled=_pooled)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def hold_no_idle_connections() -> None:
    """From now on this process keeps no connection open between its sessions.

    For a process that uses the database while it forks (a worker's main, whose role keeper runs beside the prefork
    pool): a child must inherit no open connection. SQLite forbids carrying one across fork(), and a server's
    socket shared by two processes interleaves their statements.
    """
    global _pooled
    get_engine().dispose()
    _pooled = False
    _forget_engine()


def own_engine_after_fork() -> None:
    """In a forked child: a pooled engine of its own from now on. The parent's is left as it was, never closed here:
    closing its connections would end them for the parent too."""
    global _pooled
    _pooled = True
    _forget_engine()


def _forget_engine() -> None:
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()


@contextmanager
def session_scope(sessions: Callable[[], Session] | None = None) -> Iterator[Session]:
    """A short transaction: commit on success, roll back on error, always close.

    On a session from `sessions` when given (a caller with sessions of its own), else from the process's sessionmaker.
    """
    session = (sessions or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rows_changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE and return how many rows it changed: the answer of a conditional update."""
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    return result.rowcount
