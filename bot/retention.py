"""What the bot forgets, and when (RETENTION_DAYS): the words people typed in Slack for requests that ended
long ago, Slack news of those requests that Slack never took, and replay signatures once Slack's window has
passed. A request's state, ids, amounts and its audit log are kept.

The worker prunes now and then, in small batches of short transactions, so a first run over years of rows
neither holds a lock for long nor competes with the tracker; what is left goes at the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, delete, insert, or_, update
from sqlmodel import col, select

from bot.lifecycle import FINAL_STATES
from bot.store.db import Sessions
from bot.store.models import AppRequest, AuditEvent, SeenSignature, SlackNews, utcnow

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction
MOST_BATCHES = 20  # per kind and run: a run stays short, the rest waits for the next
EVERY_SECONDS = 3600.0
FIRST_AFTER_SECONDS = 5.0  # just after the rush of a start
_FINAL = [s.value for s in FINAL_STATES]


@dataclass(frozen=True)
class Pruned:
    news: int = 0
    signatures: int = 0
    requests: int = 0

    def __bool__(self) -> bool:
        return bool(self.news or self.signatures or self.requests)


class Retention:
    def __init__(self, engine: Engine, days: float, *, batch: int = BATCH, most_batches: int = MOST_BATCHES) -> None:
        self._db = Sessions(engine)
        self.keep = timedelta(days=days)
        self.batch = batch
        self.most_batches = most_batches

    @staticmethod
    def _ended_before(cutoff: datetime) -> ColumnElement[bool]:
        return and_(col(AppRequest.state).in_(_FINAL),
                    or_(col(AppRequest.finished_at) < cutoff,
                        and_(col(AppRequest.finished_at).is_(None), col(AppRequest.updated_at) < cutoff)))

    def prune(self, now: datetime | None = None) -> Pruned:
        now = now or utcnow()
        cutoff = now - self.keep
        return Pruned(news=self._batches(lambda: self._old_news(cutoff)),
                      signatures=self._batches(lambda: self._expired_signatures(now)),
                      requests=self._batches(lambda: self._forget_words(cutoff, now)))

    def _batches(self, one: Callable[[], int]) -> int:
        total = 0
        for _ in range(self.most_batches):
            done = one()
            total += done
            if done < self.batch:
                break
        return total

    def _old_news(self, cutoff: datetime) -> int:
        """Slack news of a request that ended before the cutoff, still queued (delivered news leaves at once)."""
        with self._db.write() as session:
            ended = select(AppRequest.id).where(self._ended_before(cutoff))
            ids = list(session.exec(select(SlackNews.id).where(col(SlackNews.request_id).in_(ended),
                                                               col(SlackNews.created_at) < cutoff)
                                    .limit(self.batch)))
            if ids:
                session.execute(delete(SlackNews).where(col(SlackNews.id).in_(ids)))
            return len(ids)

    def _expired_signatures(self, now: datetime) -> int:
        """Signatures whose Slack timestamp window has passed (a replica that saw no traffic left them)."""
        with self._db.write() as session:
            ids = list(session.exec(select(SeenSignature.signature)
                                    .where(col(SeenSignature.expires_at) < int(now.timestamp())).limit(self.batch)))
            if ids:
                session.execute(delete(SeenSignature).where(col(SeenSignature.signature).in_(ids)))
            return len(ids)

    def _forget_words(self, cutoff: datetime, now: datetime) -> int:
        """The reason and a rejection reason people typed in Slack, for requests that ended before the cutoff;
        one audit row each says so. Rows another worker is at are skipped (SKIP LOCKED), so none is audited twice."""
        typed = or_(col(AppRequest.reason).is_not(None), col(AppRequest.decision_reason).is_not(None))
        with self._db.write() as session:
            rows = list(session.exec(select(AppRequest.id, AppRequest.state, AppRequest.spec_hash)
                                     .where(self._ended_before(cutoff), typed)
                                     .limit(self.batch).with_for_update(skip_locked=True)))
            if not rows:
                return 0
            ids = [i for i, _, _ in rows]
            session.execute(update(AppRequest).where(col(AppRequest.id).in_(ids))
                            .values(reason=None, decision_reason=None, version=AppRequest.version + 1)
                            .execution_options(synchronize_session=False))
            days = self.keep.days or f"{self.keep.total_seconds() / 86400:g}"
            session.execute(insert(AuditEvent), [
                {"request_id": i, "at": now, "actor": "bot", "action": "retention", "old_state": state,
                 "new_state": state, "spec_hash": spec_hash, "allowed": True,
                 "detail": f"ended more than {days} days ago (RETENTION_DAYS): the words typed in Slack are removed"}
                for i, state, spec_hash in rows])
            return len(rows)

    async def run(self, stop: asyncio.Event, *, every: float = EVERY_SECONDS, first: float = FIRST_AFTER_SECONDS) -> None:
        """Prune every `every` seconds until `stop`; a database away is tried again at the next run."""
        wait = first
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return
            except TimeoutError:
                pass
            started = time.monotonic()
            try:
                pruned = await asyncio.to_thread(self.prune)
            except Exception as error:  # the database: the next run tries again
                log.warning("retention: could not prune (%s); trying again in %.0f s", type(error).__name__, every)
            else:
                if pruned:
                    log.info("retention: forgot %d old Slack news, %d expired signatures, the typed words of %d "
                             "ended requests (%.2f s)", pruned.news, pruned.signatures, pruned.requests,
                             time.monotonic() - started)
            wait = every
