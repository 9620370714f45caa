"""Engines for SQLite (the default, one process) and PostgreSQL (several replicas)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from bot.settings import StartupError

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
    # A server that does not answer is reported after 10 s instead of the operating system's minutes.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args={"connect_timeout": 10}, **kwargs)


class DatabaseUnavailable(StartupError):
    """The database in DATABASE_URL cannot be used; the message says why and what to do, in one sentence."""


def describe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def explain(error: Exception, engine: Engine) -> str:
    """One sentence for a failure to open the database, naming DATABASE_URL and what to do."""
    url = engine.url
    reason = str(getattr(error, "orig", None) or error).strip()
    lowered = reason.lower()
    if is_sqlite(engine):
        if "unable to open database file" in lowered:
            folder = Path(url.database or ".").resolve().parent
            return (f"DATABASE_URL names the SQLite file {url.database}, which cannot be created or opened: "
                    f"check that the folder {folder} exists and that this user may write to it.")
        if "not a database" in lowered:
            return f"DATABASE_URL names {url.database}, which is not an SQLite database: point it at another file."
        return f"DATABASE_URL names the SQLite file {url.database}, which cannot be used: {reason.splitlines()[0]}."
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    if "does not exist" in lowered and "database" in lowered:
        return (f"The database {url.database!r} named in DATABASE_URL does not exist on {where}: "
                f"create it (createdb {url.database}) or fix the name.")
    refused_login = ("authentication", "no password supplied", "role")  # "role … does not exist": an unknown user
    if any(marker in lowered for marker in refused_login):
        return (f"PostgreSQL on {where} refused the user {url.username!r} in DATABASE_URL: "
                "check the user name and password.")
    if "resolve host" in lowered or "name or service not known" in lowered:
        return f"The host {url.host!r} in DATABASE_URL is unknown: check the host name."
    if "connection refused" in lowered or "timeout" in lowered or "timed out" in lowered or "no route" in lowered:
        return (f"Cannot reach the PostgreSQL server in DATABASE_URL at {where}: "
                "check that it is running and that the host and port are right.")
    return f"Cannot use the database in DATABASE_URL ({describe_url(engine)}): {reason.splitlines()[0]}."


def open_database(url: str) -> Engine:
    """An engine whose database answered a first query; `DatabaseUnavailable` says why not."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, OSError) as error:
        engine.dispose()
        raise DatabaseUnavailable(explain(error, engine)) from error
    return engine


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
    return write_lock(engine) if is_sqlite(engine) else nullcontext()


def write_lock(engine: Engine) -> threading.Lock:
    """The lock this process's writers of an SQLite file take (see `_write_lock`)."""
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
