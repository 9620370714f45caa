"""The replay memory every replica shares: a signature accepted once is refused by all until it expires."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text

from bot.store.db import Sessions

# The same statement on SQLite (3.35+) and PostgreSQL: the primary key decides, RETURNING says who won
# (psycopg reports no row count for ON CONFLICT DO NOTHING). Plain SQL: this runs once per Slack request.
_REMEMBER = text("INSERT INTO seen_signatures (signature, expires_at) VALUES (:signature, :expires_at) "
                 "ON CONFLICT DO NOTHING RETURNING signature")
_FORGET = text("DELETE FROM seen_signatures WHERE expires_at < :now")
PURGE_EVERY_SECONDS = 60.0


class ReplayMemory:
    def __init__(self, engine: Engine) -> None:
        self._db = Sessions(engine)
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0

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
