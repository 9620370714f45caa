"""Slack's pace, shared by every process on the database.

Slack's limits are per app and workspace (per method, and for chat.postMessage per channel too), so N
workers pacing themselves each would send N times the rate. Here each kind of call has one row holding
when the next may go; a process takes that slot with one conditional upsert, which PostgreSQL applies to
the latest row under its lock and SQLite runs one writer at a time: two processes never take one slot.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.store.db import Sessions, is_sqlite
from bot.store.models import SlackPace

PACE: Table = SlackPace.__table__  # type: ignore[attr-defined]  # SQLModel sets it on table models


class SharedPace:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._db = Sessions(engine)
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    def take(self, key: str, interval: float, *, now: float | None = None) -> float:
        """Take the slot of `key` if it is due: 0.0, and the next is `interval` later. Otherwise nothing is
        taken, and the answer is how many seconds until it is due."""
        now = time.time() if now is None else now
        table = PACE
        statement = (self._insert(table).values(key=key, next_at=now + interval)
                     .on_conflict_do_update(index_elements=[table.c.key], set_={"next_at": now + interval},
                                            where=table.c.next_at <= now)
                     .returning(table.c.next_at))
        with self._db.write_connection() as connection:
            if connection.execute(statement).first() is not None:
                return 0.0
            due = connection.execute(select(table.c.next_at).where(table.c.key == key)).scalar_one()
        return max(float(due) - now, 0.001)

    def hold(self, key: str, seconds: float, *, now: float | None = None) -> None:
        """No slot of `key` before `seconds` from now (Slack answered 429 with Retry-After)."""
        until = (time.time() if now is None else now) + seconds
        table = PACE
        statement = (self._insert(table).values(key=key, next_at=until)
                     .on_conflict_do_update(index_elements=[table.c.key], set_={"next_at": until},
                                            where=table.c.next_at < until))
        with self._db.write_connection() as connection:
            connection.execute(statement)
