"""The Slack news outbox: what people still have to be told about a request.

News is written in the same transaction as the change it announces, so a crash can delay it but never
lose it. A courier claims a request's news (one courier per request at a time, so its thread stays in
order), delivers it and deletes each piece once delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, delete, func, insert, or_, update
from sqlmodel import col, select

from bot.notify import Event
from bot.store.db import Sessions
from bot.store.models import AppRequest, SlackNews, utcnow

# News that only redraws messages (an edit, at chat.update's Tier 3) goes after news that tells people
# something (a post: an outcome, an approval card, a question), whoever queued it first.
REDRAWS_ONLY = (Event.PROGRESS.value, Event.SUBMITTED.value, Event.REDRAW.value)


def news_row(request_id: str, event: Event, *, now: datetime | None = None,
             delay: timedelta | None = None) -> dict[str, Any]:
    """The values of one news row, for a single insert or a batched one."""
    at = now or utcnow()
    return {"request_id": request_id, "event": event.value, "created_at": at,
            "available_at": at + delay if delay else at, "attempts": 0}


@dataclass(frozen=True)
class Claimed:
    """A request and its news, oldest first, leased to one courier."""

    request_id: str
    news: tuple[SlackNews, ...]


class NewsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._db = Sessions(engine)

    def claim(self, owner: str, lease: timedelta, limit: int, *, exclude: Sequence[str] = (),
              now: datetime | None = None) -> list[Claimed]:
        """Lease up to `limit` requests that have news due and no live courier; return their news.

        The lease is a conditional update of the locked request row, so two couriers racing for the same
        request cannot both win it; on PostgreSQL each skips the rows the other is claiming, and SQLite
        runs one writer at a time.
        """
        now = now or utcnow()
        free = or_(col(AppRequest.news_until).is_(None), col(AppRequest.news_until) < now)
        with self._db.write() as session:
            # A request is due when its oldest news is: later news never overtakes earlier news that waits.
            oldest = select(func.min(SlackNews.id)).group_by(col(SlackNews.request_id))
            redraw_only = case((col(SlackNews.event).in_(REDRAWS_ONLY), 1), else_=0)
            due = (select(SlackNews.request_id).where(col(SlackNews.id).in_(oldest), col(SlackNews.available_at) <= now)
                   .order_by(redraw_only, col(SlackNews.id)).limit(limit * 4))
            if exclude:
                due = due.where(col(SlackNews.request_id).not_in(list(exclude)))
            candidates = list(session.exec(due))
            if not candidates:
                return []
            # PostgreSQL: rows another courier is claiming right now are skipped, not waited for.
            ids = list(session.exec(select(AppRequest.id).where(col(AppRequest.id).in_(candidates), free)
                                    .limit(limit).with_for_update(skip_locked=True)))
            if not ids:
                return []
            session.execute(update(AppRequest).where(col(AppRequest.id).in_(ids), free)
                            .values(news_owner=owner, news_until=now + lease)
                            .execution_options(synchronize_session=False))
            won = list(session.exec(select(AppRequest.id).where(col(AppRequest.id).in_(ids),
                                                                col(AppRequest.news_owner) == owner)))
            news = list(session.exec(select(SlackNews).where(col(SlackNews.request_id).in_(won))
                                     .order_by(col(SlackNews.id))))
        by_request: dict[str, list[SlackNews]] = {i: [] for i in won}
        waiting: set[str] = set()
        for item in news:  # each request's news up to the first that is not due yet
            if item.available_at > now or item.request_id in waiting:
                waiting.add(item.request_id)
            else:
                by_request[item.request_id].append(item)
        idle = [i for i, items in by_request.items() if not items]
        if idle:
            self.release(owner, idle)
        return [Claimed(i, tuple(items)) for i, items in by_request.items() if items]

    def delivered(self, news_ids: Sequence[int], *, redraw: str | None = None) -> None:
        """Delivered news leaves; with `redraw`, that request's messages are to be redrawn next (news of its own,
        queued in the same transaction, so the edit is never lost)."""
        with self._db.write_connection() as connection:
            connection.execute(delete(SlackNews).where(col(SlackNews.id).in_(list(news_ids))))
            if redraw is not None:
                connection.execute(insert(SlackNews).values(**news_row(redraw, Event.REDRAW)))

    def failed(self, item: SlackNews, retry_in: timedelta, *, reason: str | None = None,
               sent_json: str | None = None) -> None:
        """Delivery failed (Slack away, a bug): try again later, not in a tight loop, remembering what it already
        posted. The request's later news waits too, so its thread stays in order."""
        later = utcnow() + retry_in
        with self._db.write_connection() as connection:
            connection.execute(update(SlackNews).where(col(SlackNews.id) == item.id)
                               .values(attempts=SlackNews.attempts + 1, available_at=later,
                                       last_error=(reason or "error")[:64], sent_json=sent_json))
            connection.execute(update(SlackNews).where(col(SlackNews.request_id) == item.request_id,
                                                       col(SlackNews.id) > item.id, col(SlackNews.available_at) < later)
                               .values(available_at=later))

    def save_sent(self, news_id: int, sent_json: str | None) -> None:
        """What this news posted so far, and the post about to leave (see `bot.slack.delivery`)."""
        with self._db.write_connection() as connection:
            connection.execute(update(SlackNews).where(col(SlackNews.id) == news_id).values(sent_json=sent_json))

    def renew(self, owner: str, request_id: str, lease: timedelta) -> bool:
        """Extend our lease before the next delivery; False when it ran out and another courier took it."""
        with self._db.write_connection() as connection:
            result = connection.execute(update(AppRequest)
                                        .where(col(AppRequest.id) == request_id, col(AppRequest.news_owner) == owner)
                                        .values(news_until=utcnow() + lease))
            return bool(result.rowcount == 1)

    def renew_all(self, owner: str, request_ids: Sequence[str], lease: timedelta) -> None:
        """Extend our leases of the requests still being delivered."""
        with self._db.write_connection() as connection:
            connection.execute(update(AppRequest)
                               .where(col(AppRequest.id).in_(list(request_ids)), col(AppRequest.news_owner) == owner)
                               .values(news_until=utcnow() + lease))

    def release(self, owner: str, request_ids: Sequence[str]) -> None:
        with self._db.write_connection() as connection:
            connection.execute(update(AppRequest)
                               .where(col(AppRequest.id).in_(list(request_ids)), col(AppRequest.news_owner) == owner)
                               .values(news_owner=None, news_until=None))

    def pending(self, request_id: str | None = None) -> list[SlackNews]:
        with self._db.read() as session:
            query = select(SlackNews).order_by(col(SlackNews.id))
            if request_id is not None:
                query = query.where(col(SlackNews.request_id) == request_id)
            return list(session.exec(query))

    def backlog(self) -> int:
        with self._db.read() as session:
            return int(session.exec(select(func.count()).select_from(SlackNews)).one())

    def oldest(self) -> datetime | None:
        with self._db.read() as session:
            value: datetime | None = session.exec(select(func.min(SlackNews.created_at))).one()
            return value
