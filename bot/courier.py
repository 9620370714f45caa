"""The courier: delivers the Slack news outbox at Slack's pace, in order per request.

News waits in the database (`bot.store.news`), written in the same transaction as the change it
announces. So the process that acks Slack never waits on Slack's pacing, a backlog costs rows rather
than memory, and a crash or a restart delays news but does not lose it. Several couriers (replicas)
share the work; each request's news is leased to one of them at a time, which keeps its thread in order.

News leaves the database only on Slack's answer: accepted, or refused for a reason handled on purpose (the
notifier's). While Slack is away (rate limited, a 5xx, no answer) the news waits and is tried again with
backoff, however long that takes; what it already posted is remembered (`bot.slack.delivery`), so a retry
posts only what is missing. Only a fault in the bot itself gives news up, after `max_attempts`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import DBAPIError

from bot.metrics import Metrics
from bot.notify import Event, Notifier
from bot.outage import OUTAGES, is_database_outage
from bot.slack import delivery
from bot.slack.delivery import Delivery
from bot.slack.writer import SlackUnavailable
from bot.store.models import SlackNews
from bot.store.news import Claimed, NewsStore
from bot.store.repository import RequestStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CourierConfig:
    concurrency: int = 16  # requests being told at once; Slack's pacing, not this, sets the real rate
    # Renewed before each delivery, so it only has to outlast one (Slack's pacing and 429 waits included);
    # it is also how long a crashed courier's requests wait for another.
    lease: timedelta = timedelta(seconds=90)
    tick_seconds: float = 1.0  # how often to look for news written by other processes
    retry_in: timedelta = timedelta(seconds=15)  # after a failed delivery, doubled on each attempt
    max_retry_in: timedelta = timedelta(seconds=60)  # however long Slack is away, a look at least this often
    max_attempts: int = 8  # for a fault in the bot; Slack being away never gives news up
    shutdown_grace_seconds: float = 5.0


REDRAW_ONLY = frozenset({Event.PROGRESS, Event.SUBMITTED, Event.REDRAW})
NOT_REDRAWING = frozenset({Event.CREATED, Event.REMIND, Event.EXPIRING})  # these leave the head as it is


def superseded(news: Sequence[SlackNews]) -> set[int]:
    """News that only redraws the thread's head and the card, followed by news of the same request that redraws
    them too: the message waiting for an edit gets only its latest state."""
    folded: set[int] = set()
    for index, item in enumerate(news):
        later = news[index + 1:]
        if Event(item.event) in REDRAW_ONLY and item.id is not None and any(
                Event(other.event) not in NOT_REDRAWING for other in later):
            folded.add(item.id)
    return folded


@dataclass
class Courier:
    news: NewsStore
    store: RequestStore
    notifier: Notifier
    owner: str
    config: CourierConfig = field(default_factory=CourierConfig)
    metrics: Metrics | None = None
    # Edits that follow a post go out as news of their own, after every post waiting (see `Delivery`).
    redraw_later: bool = True
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _busy: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # request id → its delivery

    def wake(self) -> None:
        """News was just written in this process: look now instead of at the next tick."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        renewed = time.monotonic()
        while not stop.is_set():
            try:
                await self.fill()
                if time.monotonic() - renewed > self.config.lease.total_seconds() / 3 and self._busy:
                    # A delivery can wait minutes for Slack's pace (edits at Tier 3 behind a backlog): its lease
                    # must not run out meanwhile, or another courier would tell the same news again.
                    await asyncio.to_thread(self.news.renew_all, self.owner, list(self._busy), self.config.lease)
                    renewed = time.monotonic()
            except Exception as error:  # the database: keep going, say so (once a minute while it is away)
                if is_database_outage(error):
                    OUTAGES.report("claiming Slack news", error)
                else:
                    log.exception("could not claim Slack news; trying again shortly")
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait([*waiters, *self._busy.values()], timeout=self.config.tick_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self._finish_or_leave()

    async def fill(self) -> int:
        """Claim news for as many requests as there is room for; returns how many were claimed."""
        room = self.config.concurrency - len(self._busy)
        if room <= 0:
            return 0
        claimed = await asyncio.to_thread(self.news.claim, self.owner, self.config.lease, room,
                                          exclude=list(self._busy))
        for batch in claimed:
            self._start(batch)
        return len(claimed)

    def _start(self, batch: Claimed) -> None:
        task = asyncio.create_task(self._deliver(batch), name=f"news:{batch.request_id}")
        self._busy[batch.request_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._busy.pop(batch.request_id, None)

        task.add_done_callback(done)

    async def deliver_due(self) -> None:
        """Deliver everything that is due now, and what that brings (tests, benchmarks, one-off runs)."""
        while await self.fill() or self._busy:
            await asyncio.wait(list(self._busy.values()), return_when=asyncio.FIRST_COMPLETED)

    async def _finish_or_leave(self) -> None:
        """At shutdown: a moment to finish what is under way; the rest stays in the database."""
        if self._busy:
            _, pending = await asyncio.wait(list(self._busy.values()), timeout=self.config.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _deliver(self, batch: Claimed) -> None:
        try:
            skip = superseded(batch.news)
            if skip:
                await asyncio.to_thread(self.news.delivered, sorted(skip))
            for item in batch.news:
                if item.id in skip:
                    continue
                if not await asyncio.to_thread(self.news.renew, self.owner, batch.request_id, self.config.lease):
                    log.warning("lost the news lease of %s; another courier goes on with it", batch.request_id)
                    return
                if not await self._deliver_one(item):
                    return  # the rest of this request's news waits behind it
        except Exception as error:  # the database: the news stays, and goes out once the lease is free again
            if is_database_outage(error):
                OUTAGES.report("delivering Slack news", error)
            else:
                log.exception("delivering the news of %s stopped", batch.request_id)
        finally:
            try:
                await asyncio.to_thread(self.news.release, self.owner, [batch.request_id])
            except Exception:
                log.warning("could not give back the news lease of %s; it runs out by itself", batch.request_id)

    async def _deliver_one(self, item: SlackNews) -> bool:
        assert item.id is not None
        request = await asyncio.to_thread(self.store.get, item.request_id)
        if request is not None:
            journal = Delivery.of(item.id, item.request_id, item.sent_json, self._save, redraw_later=self.redraw_later)
            token = delivery.current.set(journal)
            try:
                await self.notifier.request_changed(request, Event(item.event))
            except SlackUnavailable as away:
                await self._wait_for_slack(item, journal, away)
                return False
            except DBAPIError:  # the database, mid-delivery: the news stays, and goes again once it answers
                log.warning("the database failed while telling Slack about %s (%s); trying again later",
                            item.request_id, item.event)
                await asyncio.to_thread(self.news.failed, item, self.config.retry_in, reason="database",
                                        sent_json=journal.dump())
                return False
            except Exception:
                # A fault in the bot: given up after `max_attempts` tries, once the try before failed the same
                # way (so a fault just after a long Slack outage is tried again first).
                if item.last_error != "error" or item.attempts + 1 < self.config.max_attempts:
                    log.exception("could not tell Slack about %s (%s); trying again later", item.request_id, item.event)
                    await asyncio.to_thread(self.news.failed, item, self.config.retry_in * 2 ** item.attempts,
                                            reason="error", sent_json=journal.dump())
                    return False
                log.exception("gave up telling Slack about %s (%s) after %d attempts; the request itself is "
                              "unaffected (see /appserver status)", item.request_id, item.event, item.attempts + 1)
                if self.metrics:
                    self.metrics.news_given_up.labels("error").inc()
            finally:
                delivery.current.reset(token)
            if journal.wants_redraw:
                await asyncio.to_thread(self.news.delivered, [item.id], redraw=item.request_id)
                return True
        await asyncio.to_thread(self.news.delivered, [item.id])
        return True

    async def _save(self, journal: Delivery) -> None:
        await asyncio.to_thread(self.news.save_sent, journal.news_id, journal.dump())

    async def _wait_for_slack(self, item: SlackNews, journal: Delivery, away: SlackUnavailable) -> None:
        """Slack is away: this news (and its request's later news) waits, then goes again. Backoff doubles up
        to `max_retry_in`, with jitter so the couriers do not come back all at once; never sooner than Slack's
        Retry-After."""
        backoff = min(self.config.retry_in * 2 ** min(item.attempts, 16), self.config.max_retry_in)
        wait = backoff * random.uniform(0.5, 1.0)
        if away.retry_after is not None:
            wait = max(wait, timedelta(seconds=away.retry_after))
        log.warning("Slack did not take the news of %s (%s, %s: %s); trying again in %.0f s", item.request_id,
                    item.event, away.method, away.reason, wait.total_seconds())
        if self.metrics:
            self.metrics.news_retried.labels(away.reason).inc()
        await asyncio.to_thread(self.news.failed, item, wait, reason=away.reason, sent_json=journal.dump())
