"""Engines for SQLite (the default, one process) and PostgreSQL (several replicas)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

# An execution option: this engine's transactions only read, so on SQLite they start as a plain BEGIN,
# which WAL runs beside a writer, instead of BEGIN IMMEDIATE, which queues behind it.
_READS_ONLY = "appserver_reads_only"
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean the psycopg 3 driver the bot ships with."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **kwargs)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so every transaction starts as BEGIN IMMEDIATE:
        # SQLite then queues writers (busy timeout) instead of failing a read-to-write upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(_READS_ONLY)
                                   else "BEGIN IMMEDIATE")


def _write_lock(engine: Engine) -> AbstractContextManager[object]:
    """SQLite has one writer at a time. Its busy handler polls with sleeps of up to 100 ms, so this
    process's writers queue on a lock instead and each starts the moment the previous one commits."""
    if not is_sqlite(engine):
        return nullcontext()
    with _write_locks_guard:
        return _write_locks.setdefault(str(engine.url.database), threading.Lock())


class Sessions:
    """Sessions for one database: reads that never wait for a writer, and write transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(**{_READS_ONLY: True})

    def read(self) -> Session:
        return Session(self._reader, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction, committed on leaving (rolled back on an error)."""
        with _write_lock(self.engine), Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        with _write_lock(self.engine), self.engine.begin() as connection:
            yield connection
