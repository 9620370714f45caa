"""One-statement SQLite writes on the event loop itself, taken only when they need not wait.

A hop to a database thread costs more than a short insert, and under load a thread holding this process's
write lock waits for the interpreter while the event loop runs: an insert that could take a tenth of a
millisecond queues for several. So the most frequent small writes (the replay memory's insert, an audited
refusal) try here first, and go to a thread only when a writer is busy."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from bot.store.db import is_sqlite, write_lock


class InlineSQLite:
    """A connection of the event loop's own (use it from the loop only), used when no writer of this process
    holds the write lock and SQLite's own lock is free: it never sleeps on the loop."""

    def __init__(self, engine: Engine) -> None:
        self._path = engine.url.database if is_sqlite(engine) else None
        self._lock = write_lock(engine) if self._path else None
        self._connection: sqlite3.Connection | None = None

    def try_execute(self, sql: str, params: Mapping[str, Any]) -> list[Any] | None:
        """The statement's rows once it is committed; None when it would have to wait, or failed (the caller
        then runs it on a thread, where waiting is harmless and an error is reported)."""
        if self._lock is None or not self._path or self._path == ":memory:" or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._connection is None:
                # Autocommit, and timeout=0: SQLite answers "busy" at once instead of sleeping on the loop.
                self._connection = sqlite3.connect(self._path, timeout=0, isolation_level=None,
                                                   check_same_thread=False)
                self._connection.execute("PRAGMA synchronous=NORMAL")
                self._connection.execute("PRAGMA foreign_keys=ON")
            return self._connection.execute(sql, dict(params)).fetchall()  # to the end: the commit is done
        except sqlite3.Error:
            return None
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
