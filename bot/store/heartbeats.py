"""Heartbeats: every running process writes one row every few seconds, so any replica can tell which
processes run and, above all, whether a worker (the tracker and the courier) is alive anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, update
from sqlmodel import col, select

from bot.store.db import Sessions
from bot.store.models import Heartbeat, utcnow

WEB, WORKER, WEB_AND_WORKER = "web", "worker", "web+worker"
TRACKING_ROLES = (WORKER, WEB_AND_WORKER)
# A process not heard from for a day is gone: its row goes too, so the table stays as small as the fleet.
FORGET_AFTER = timedelta(days=1)


def role_of(*, serves: bool, tracks: bool) -> str:
    return WEB_AND_WORKER if serves and tracks else WORKER if tracks else WEB


@dataclass(frozen=True)
class Seen:
    """The processes heard from recently, by role, and when a tracking process was last heard from."""

    by_role: dict[str, int]
    last_worker: datetime | None


class Heartbeats:
    def __init__(self, engine: Engine) -> None:
        self._db = Sessions(engine)

    def beat(self, process_id: str, role: str, started_at: datetime, now: datetime | None = None) -> None:
        """This process is alive now (one upsert), and the rows of processes long gone are forgotten."""
        now = now or utcnow()
        with self._db.write() as session:
            updated = session.execute(update(Heartbeat).where(col(Heartbeat.process_id) == process_id)
                                      .values(role=role, seen_at=now).execution_options(synchronize_session=False))
            if updated.rowcount != 1:  # type: ignore[attr-defined]
                session.add(Heartbeat(process_id=process_id, role=role, started_at=started_at, seen_at=now))
            session.execute(delete(Heartbeat).where(col(Heartbeat.seen_at) < now - FORGET_AFTER))

    def seen(self, within: timedelta, now: datetime | None = None) -> Seen:
        """How many processes of each role were heard from `within` the past, and the latest worker's beat."""
        now = now or utcnow()
        with self._db.read() as session:
            rows = session.exec(select(Heartbeat.role, func.count()).where(col(Heartbeat.seen_at) >= now - within)
                                .group_by(Heartbeat.role))
            by_role = {role: count for role, count in rows}
            last: datetime | None = session.exec(select(func.max(Heartbeat.seen_at))
                                                 .where(col(Heartbeat.role).in_(TRACKING_ROLES))).one()
        return Seen(by_role, last)
