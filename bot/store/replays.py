"""The replay memory every replica shares: a signature accepted once is refused by all until it expires."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, delete, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.store.db import Sessions
from bot.store.models import SeenSignature

_TABLE = SeenSignature.__table__  # type: ignore[attr-defined]
PURGE_EVERY_SECONDS = 60.0


class ReplayMemory:
    def __init__(self, engine: Engine) -> None:
        self._db = Sessions(engine)
        self._dialect = engine.dialect.name
        self._purge_lock = threading.Lock()
        self._next_purge = 0.0

    def first_time(self, signature: str, expires_at: int) -> bool:
        """Remember `signature` until `expires_at` (Unix seconds); False when any replica already has.
        One insert: the primary key decides, so two replicas racing on the same request cannot both win."""
        values = {"signature": signature, "expires_at": expires_at}
        if self._dialect == "postgresql":
            statement = pg_insert(_TABLE).values(**values).on_conflict_do_nothing().returning(_TABLE.c.signature)
        elif self._dialect == "sqlite":
            statement = sqlite_insert(_TABLE).values(**values).on_conflict_do_nothing().returning(_TABLE.c.signature)
        else:  # another database: a duplicate key is an error there, which refuses the request too
            statement = insert(_TABLE).values(**values).returning(_TABLE.c.signature)
        with self._db.write_connection() as connection:
            # RETURNING, not rowcount: psycopg reports no row count for INSERT … ON CONFLICT DO NOTHING.
            inserted = connection.execute(statement).first() is not None
        self._purge_now_and_then()
        return inserted

    def purge(self, now: int | None = None) -> int:
        """Forget the signatures whose timestamps Slack's window no longer accepts."""
        moment = int(time.time()) if now is None else now
        with self._db.write_connection() as connection:
            return int(connection.execute(delete(_TABLE).where(_TABLE.c.expires_at < moment)).rowcount)

    def _purge_now_and_then(self) -> None:
        # Once a minute per process keeps the table at about ten minutes of traffic, off the per-request cost.
        now = time.monotonic()
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_EVERY_SECONDS
        self.purge()
