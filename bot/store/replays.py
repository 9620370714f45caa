"""The replay memory every replica shares: a signature accepted once is refused by all until it expires."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from sqlalchemy import Engine, text

from bot.store.db import Sessions, is_sqlite, write_lock

# The same statement on SQLite (3.35+) and PostgreSQL: the primary key decides, RETURNING says who won
# (psycopg reports no row count for ON CONFLICT DO NOTHING). Plain SQL: this runs once per Slack request.
_REMEMBER_SQL = ("INSERT INTO seen_signatures (signature, expires_at) VALUES (:signature, :expires_at) "
                 "ON CONFLICT DO NOTHING RETURNING signature")
_REMEMBER = text(_REMEMBER_SQL)
_FORGET = text("DELETE FROM seen_signatures WHERE expires_at < :now")
PURGE_EVERY_SECONDS = 60.0


class ReplayMemory:
    def __init__(self, engine: Engine) -> None:
        self._db = Sessions(engine)
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0
        self._inline = _InlineSQLite(engine) if is_sqlite(engine) else None

    async def remember(self, signature: str, expires_at: int) -> bool:
        """`first_time` from the event loop: on SQLite, inline when no writer is busy (a tenth of a
        millisecond, without the hop to a thread that costs more than the insert); otherwise on a thread."""
        if self._inline is not None:
            first = self._inline.try_insert(signature, expires_at)
            if first is not None:
                if time.monotonic() >= self._next_purge:
                    await asyncio.to_thread(self._purge_now_and_then)
                return first
        return await asyncio.to_thread(self.first_time, signature, expires_at)

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()

    def first_time(self, signature: str, expires_at: int) -> bool:
        """Remember `signature` until `expires_at` (Unix seconds); False when any replica already has.
        One insert: two replicas racing on the same request cannot both win."""
        with self._db.write_connection() as connection:
            inserted = connection.execute(_REMEMBER, {"signature": signature, "expires_at": expires_at}).first()
        self._purge_now_and_then()
        return inserted is not None

    def purge(self, now: int | None = None) -> int:
        """Forget the signatures whose timestamps Slack's window no longer accepts."""
        moment = int(time.time()) if now is None else now
        with self._db.write_connection() as connection:
            return int(connection.execute(_FORGET, {"now": moment}).rowcount)

    def _purge_now_and_then(self) -> None:
        # Once a minute per process keeps the table at about ten minutes of traffic, off the per-request cost.
        now = time.monotonic()
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_EVERY_SECONDS
        self.purge()


class _InlineSQLite:
    """A connection of the event loop's own for the one-statement insert, used only when it need not wait:
    this process's writers hold no lock and no other process holds SQLite's (no busy wait on the loop)."""

    def __init__(self, engine: Engine) -> None:
        self._path = engine.url.database
        self._lock = write_lock(engine)
        self._connection: sqlite3.Connection | None = None

    def try_insert(self, signature: str, expires_at: int) -> bool | None:
        """True or False as `first_time`; None when the insert has to wait, or failed (the caller retries it
        on a thread, where waiting is harmless and an error is reported)."""
        if not self._path or self._path == ":memory:" or not self._lock.acquire(blocking=False):
            return None
        try:
            if self._connection is None:
                # timeout=0: SQLite answers "busy" at once instead of sleeping on the loop.
                self._connection = sqlite3.connect(self._path, timeout=0, isolation_level=None,
                                                   check_same_thread=False)
                self._connection.execute("PRAGMA synchronous=NORMAL")
            rows = self._connection.execute(_REMEMBER_SQL, {"signature": signature, "expires_at": expires_at})
            return bool(rows.fetchall())  # fetched to the end: the statement, and its commit, are complete
        except sqlite3.Error:
            return None
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
