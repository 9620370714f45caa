"""SQLite reads and one-statement writes on the event loop itself, taken only when they need not wait.

A hop to a database thread costs more than a short insert, and under load a thread holding this process's
write lock waits for the interpreter while the event loop runs: an insert that could take a tenth of a
millisecond queues for several. So the most frequent small writes (the replay memory's insert, an audited
refusal) and the read of a clicked request try here first, and go to a thread only when SQLite is busy."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from bot.store.db import is_sqlite, write_lock
from bot.store.models import AppRequest


class WouldWait(Exception):
    """SQLite could not answer at once (or failed): ask again on a thread."""


class InlineSQLite:
    """A connection of the event loop's own (use it from the loop only), used when no writer of this process
    holds the write lock and SQLite's own lock is free: it never sleeps on the loop."""

    def __init__(self, engine: Engine) -> None:
        self._path = engine.url.database if is_sqlite(engine) else None
        self._lock = write_lock(engine) if self._path else None
        self._connection: sqlite3.Connection | None = None
        self._engine: Engine | None = None

    def try_execute(self, sql: str, params: Mapping[str, Any]) -> list[Any] | None:
        """The statement's rows once it is committed; None when it would have to wait, or failed (the caller
        then runs it on a thread, where waiting is harmless and an error is reported)."""
        if self._lock is None or not self._path or self._path == ":memory:" or not self._lock.acquire(blocking=False):
            return None
        try:
            return self._connect().execute(sql, dict(params)).fetchall()  # to the end: the commit is done
        except sqlite3.Error:
            return None
        finally:
            self._lock.release()

    def get(self, request_id: str) -> AppRequest | None:
        """A request as `RequestStore.get` reads it. A read in WAL mode waits for no writer; `WouldWait` when
        SQLite is busy all the same (a checkpoint), or this database is not a file."""
        if not self._path or self._path == ":memory:":
            raise WouldWait
        if self._engine is None:
            # SQLAlchemy over this same connection, for the model's column types; the loop is its only user.
            connection = self._connect()
            self._engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
        try:
            with Session(self._engine, expire_on_commit=False) as session:
                return session.get(AppRequest, request_id)
        except (DBAPIError, sqlite3.Error):
            raise WouldWait from None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            assert self._path
            # Autocommit, and timeout=0: SQLite answers "busy" at once instead of sleeping on the loop.
            self._connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
        return self._connection

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
