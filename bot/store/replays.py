"""The replay memory every replica shares: a signature accepted once is refused by all until it expires."""

from __future__ import annotations

import asyncio
import threading
import time

from sqlalchemy import Engine, text

from bot.store.db import Sessions
from bot.store.inline import InlineSQLite

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
        self._inline = InlineSQLite(engine)

    async def remember(self, signature: str, expires_at: int) -> bool:
        """`first_time` from the event loop: on SQLite, inline when no writer is busy (a tenth of a
        millisecond, without the hop to a thread that costs more than the insert); otherwise on a thread."""
        rows = self._inline.try_execute(_REMEMBER_SQL, {"signature": signature, "expires_at": expires_at})
        if rows is None:
            return await asyncio.to_thread(self.first_time, signature, expires_at)
        if time.monotonic() >= self._next_purge:
            await asyncio.to_thread(self._purge_now_and_then)
        return bool(rows)

    def close(self) -> None:
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
