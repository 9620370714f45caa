"""Prometheus metrics, one registry per running bot (so tests and several apps in a process don't collide)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.store.models import utcnow
from bot.store.news import NewsStore
from bot.store.repository import RequestStore


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
            self.registry.register(_StoreCollector(store))

    def observe_cloud(self, operation: str, seconds: float, outcome: str) -> None:
        self.cloud_seconds.labels(operation).observe(seconds)
        if outcome == "ok":
            self.last_cloud_success = time.time()
        else:
            self.cloud_errors.labels(operation, outcome).inc()
