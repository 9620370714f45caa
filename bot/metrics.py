"""Prometheus metrics, one registry per running bot (so tests and several apps in a process don't collide).

`/metrics` serves a snapshot made at most every `SNAPSHOT_SECONDS`: however many scrape it, the database
is asked once per snapshot. When the database cannot answer, the snapshot still comes, with
`appserver_database_up 0` and without the figures read from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.lifecycle import FINAL_STATES, State
from bot.outage import OUTAGES, is_database_outage
from bot.store.heartbeats import Heartbeats
from bot.store.models import utcnow
from bot.store.news import NewsStore
from bot.store.repository import RequestStore

SNAPSHOT_SECONDS = 5.0
# A scrape waits this long for a snapshot being made before it takes the previous one.
SNAPSHOT_WAIT_SECONDS = 2.0
# How recently a process must have written its heartbeat to count as running.
RUNNING_WITHIN = timedelta(seconds=60)


class _StoreCollector(Collector):
    """Read at scrape time from the database, so every replica reports the same truth."""

    def __init__(self, store: RequestStore) -> None:
        self._store = store
        self._news = NewsStore(store.engine)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily("appserver_requests", "Requests by state", labels=["state"])
        for state, count in sorted(self._store.count_by_state().items()):
            by_state.add_metric([state], count)
        yield by_state
        now = utcnow()
        yield _age("appserver_oldest_in_flight_seconds", "Age of the oldest request being provisioned",
                   self._store.oldest_in_flight(), now)
        yield _age("appserver_poll_lag_seconds", "How late the most overdue poll is",
                   self._store.most_overdue_poll(now), now)
        # News waits here when no worker runs, or when Slack's rate limits hold it back.
        yield GaugeMetricFamily("appserver_slack_news_waiting", "Slack news queued and not yet delivered",
                                value=self._news.backlog())
        yield _age("appserver_slack_news_oldest_seconds", "Age of the oldest Slack news not yet delivered",
                   self._news.oldest(), now)


def _age(name: str, doc: str, since: datetime | None, now: datetime) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=(now - since).total_seconds() if since else 0.0)


class _OperationsCollector(Collector):
    """How long requests have waited in each state, and which processes are alive (from their heartbeats)."""

    def __init__(self, store: RequestStore) -> None:
        self._store = store
        self._heartbeats = Heartbeats(store.engine)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        oldest = self._store.oldest_by_state()
        ages = GaugeMetricFamily(
            "appserver_oldest_request_seconds",
            "How long the oldest request in each state has been in it (0 when none is); awaiting_payment waits "
            "for a person to pay, the other states for the bot or an approver", labels=["state"])
        for state in sorted(s.value for s in State if s not in FINAL_STATES):
            since = oldest.get(state)
            ages.add_metric([state], (now - since).total_seconds() if since else 0.0)
        yield ages
        seen = self._heartbeats.seen(RUNNING_WITHIN, now)
        running = GaugeMetricFamily("appserver_processes", "Processes whose heartbeat came in the last minute, "
                                    "by role (web, worker, web+worker)", labels=["role"])
        for role in ("web", "worker", "web+worker"):
            running.add_metric([role], seen.by_role.get(role, 0))
        yield running
        yield GaugeMetricFamily(
            "appserver_worker_last_seen_seconds",
            "Seconds since a process that tracks and posts news (worker, or serve/socket without --no-tracker) "
            "last wrote its heartbeat; -1 when none ever did",
            value=(now - seen.last_worker).total_seconds() if seen.last_worker else -1.0)


class _DatabaseFigures(Collector):
    """The figures read from the database, all or none: when it cannot answer, `appserver_database_up 0`
    instead of an error (a scrape that fails looks like a bot that is down)."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("appserver_database_up", "1 when the database answered the last snapshot's "
                               "queries, 0 when it could not be reached (the figures read from it are left out)")
        try:
            figures = [family for collector in self._collectors for family in collector.collect()]
        except Exception as error:
            if not is_database_outage(error):
                raise
            OUTAGES.report("reading the figures for /metrics", error)
            up.add_metric([], 0)
            yield up
            return
        yield from figures
        up.add_metric([], 1)
        yield up


class Metrics:
    def __init__(self, store: RequestStore | None = None) -> None:
        self.registry = CollectorRegistry()
        self.cloud_seconds = Histogram("appserver_cloud_call_seconds", "Cloud call latency", ["operation"],
                                       registry=self.registry)
        self.cloud_errors = Counter("appserver_cloud_errors", "Cloud call failures", ["operation", "code"],
                                    registry=self.registry)
        self.slack_calls = Counter("appserver_slack_calls", "Slack Web API calls", ["method"], registry=self.registry)
        self.slack_errors = Counter("appserver_slack_errors", "Slack Web API errors", ["method", "error"],
                                    registry=self.registry)
        # Slack news put back to wait (Slack away: by its reason) and given up (a fault in the bot).
        self.news_retried = Counter("appserver_slack_news_retried", "Slack news put back to wait, by reason",
                                    ["reason"], registry=self.registry)
        self.news_given_up = Counter("appserver_slack_news_given_up", "Slack news given up, by reason", ["reason"],
                                     registry=self.registry)
        # Requests refused at the door, by reason (their content is never logged).
        self.refused = Counter("appserver_slack_refused", "Requests to /slack/events refused before Bolt", ["reason"],
                               registry=self.registry)
        self.last_cloud_success: float | None = None
        if store is not None:
            self.registry.register(_DatabaseFigures([_StoreCollector(store), _OperationsCollector(store)]))
        self._snapshot: bytes | None = None
        self._snapshot_at = 0.0
        self._making: asyncio.Task[bytes] | None = None

    async def snapshot(self) -> bytes:
        """The exposition text, made again only when the last one is `SNAPSHOT_SECONDS` old; scrapes meanwhile
        share it, and scrapes during its making wait for the same one (or take the previous one after a while)."""
        if self._snapshot is not None and time.monotonic() - self._snapshot_at < SNAPSHOT_SECONDS:
            return self._snapshot
        if self._making is None:
            self._making = asyncio.create_task(self._make(), name="metrics snapshot")
        making = asyncio.shield(self._making)
        if self._snapshot is None:
            return await making
        try:
            return await asyncio.wait_for(making, SNAPSHOT_WAIT_SECONDS)
        except TimeoutError:
            return self._snapshot

    async def _make(self) -> bytes:
        try:
            payload = await asyncio.to_thread(generate_latest, self.registry)
            self._snapshot, self._snapshot_at = payload, time.monotonic()
            return payload
        finally:
            self._making = None

    def observe_cloud(self, operation: str, seconds: float, outcome: str) -> None:
        self.cloud_seconds.labels(operation).observe(seconds)
        if outcome == "ok":
            self.last_cloud_success = time.time()
        else:
            self.cloud_errors.labels(operation, outcome).inc()
