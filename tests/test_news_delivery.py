"""Slack news is delivered or kept, never dropped: the real courier, notifier and writer against the fake Slack
Web API over loopback, on SQLite and PostgreSQL. Slack away for a while (429 with Retry-After, then 503), a post
whose answer was lost, a channel that is gone, a message deleted in Slack; two couriers sharing Slack's tiers."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.courier import Courier, CourierConfig
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.notify import Event
from bot.sandbox.server import BackgroundServer
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import DatabasePace, SlackWriter, new_web_client
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.models import AppRequest, utcnow
from bot.store.news import NewsStore
from bot.store.pace import SharedPace
from bot.store.repository import NewRequest, RequestStore
from tests.fake_slack import FakeSlack, dm_channel
from tests.specs import office_body

REQUESTS_CHANNEL, APPROVALS, NOTIFY = "C0REQ", "C0APPROVALS", "C0NOTIFY"
QUICK = CourierConfig(concurrency=8, lease=timedelta(seconds=30), tick_seconds=0.05,
                      retry_in=timedelta(milliseconds=200), max_retry_in=timedelta(seconds=1), max_attempts=3,
                      shutdown_grace_seconds=1.0)
POST_INTERVAL, UPDATE_INTERVAL = 0.3, 0.2


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


@dataclass
class Worker:
    """What one `worker` process runs to tell Slack: its own engine, writer (pace in the database) and courier."""

    courier: Courier
    metrics: Metrics
    engine: Engine


def a_worker(url: str, slack: tuple[FakeSlack, str], owner: str, *, timeout: float = 5.0) -> Worker:
    fake, api = slack
    engine = make_engine(url)
    store = RequestStore(engine)
    metrics = Metrics()
    writer = SlackWriter(new_web_client(fake.token, api), metrics, post_interval=POST_INTERVAL,
                         update_interval=UPDATE_INTERVAL, edit_window=0, pace=DatabasePace(SharedPace(engine)),
                         workspace_post_interval=0, timeout=timeout)
    notifier = SlackNotifier(writer, store, APPROVALS, NOTIFY, sandbox=False)
    return Worker(Courier(NewsStore(engine), store, notifier, owner, QUICK, metrics=metrics), metrics, engine)


@pytest.fixture
async def workers(database_url: str, engine: Engine,
                  slack: tuple[FakeSlack, str]) -> AsyncIterator[list[Worker]]:
    """Two workers on the database, running; stopped and closed afterwards."""
    running = [a_worker(database_url, slack, name) for name in ("worker-a", "worker-b")]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.courier.run(stop)) for w in running]
    yield running
    stop.set()
    await asyncio.gather(*tasks)
    for w in running:
        w.engine.dispose()


def a_request(store: RequestStore, n: int, state: State = State.PENDING_APPROVAL) -> AppRequest:
    spec = parse_spec(office_body())
    return store.create(NewRequest(f"U0ASK{n:03d}", spec.canonical_json(), spec.spec_hash(), "prePaid", 1, "g",
                                   channel_id=REQUESTS_CHANNEL), state, f"U0ASK{n:03d}")


def through_its_life(store: RequestStore, row: AppRequest) -> None:
    """Approved, ordered, done: each step's news queued with it, as the lifecycle and the tracker queue it."""
    store.transition(row.id, State.PENDING_APPROVAL, State.APPROVED, actor="U0APPROVER", action="approve",
                     changes={"decided_by": "U0APPROVER", "decided_at": utcnow()}, news=Event.DECIDED)
    store.transition(row.id, State.APPROVED, State.SUBMITTING, actor="w", action="claim_submit")
    store.transition(row.id, State.SUBMITTING, State.SUBMITTED, actor="w", action="submitted",
                     changes={"job_id": f"job-{row.id}"}, news=Event.SUBMITTED)
    store.transition(row.id, State.SUBMITTED, State.SUCCEEDED, actor="w", action="succeeded", news=Event.FINISHED)


def markers(fake: FakeSlack) -> list[str]:
    """The news posts Slack has, by their marker (a digest carries one for each outcome in it)."""
    found: list[str] = []
    for message in fake.messages:
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        found += payload.get("keys") or ([payload["key"]] if "key" in payload else [])
    return found


def outcomes(fake: FakeSlack, channel: str, row: AppRequest) -> list[dict[str, Any]]:
    """The messages in `channel` telling the outcome of `row`: a reply in its thread, or a line of a digest."""
    found = []
    for message in fake.posted(channel):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        keys = payload.get("keys") or [payload.get("key")]
        if row.id in message["text"] and any(str(k).endswith((":final", ":outcome")) for k in keys):
            found.append(message)
    return found


def busiest_window(times: list[float], seconds: float) -> int:
    """The most calls in any `seconds` long window."""
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + seconds) for i, start in enumerate(times)), default=0)


async def until(check: Any, timeout: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_news_waits_while_slack_is_away_and_is_delivered_once_in_order_when_it_is_back(
    engine: Engine, slack: tuple[FakeSlack, str], workers: list[Worker]
) -> None:
    fake, _ = slack
    store, news = RequestStore(engine), NewsStore(engine)
    # Slack rate limits every call for 2 s (Retry-After 1), then answers 503 for 2 s more.
    limited = fake.away(2.0, 429, retry_after=1)
    fake.away(2.0, 503, after=2.0)
    rows = [a_request(store, n) for n in range(6)]
    for row in rows:
        through_its_life(store, row)
    for w in workers:
        w.courier.wake()
    await until(lambda: time.time() > limited.start + 3.8, what="the end of the outage")
    # Nothing was posted, and no request's news left the queue while Slack was away.
    assert fake.messages == []
    assert {n.request_id for n in news.pending()} == {r.id for r in rows}
    await until(lambda: news.backlog() == 0, what="every piece of news delivered")

    assert len(markers(fake)) == len(set(markers(fake)))  # no post twice
    for row in rows:
        fresh = store.get(row.id)
        assert fresh is not None and fresh.thread_ts
        heads = [m for m in fake.posted(REQUESTS_CHANNEL) if "thread_ts" not in m and row.id in m["text"]
                 and str((m.get("metadata") or {}).get("event_payload", {}).get("key")).endswith(":head")]
        assert [h["ts"] for h in heads] == [fresh.thread_ts]
        # In the order it happened: the approval in the thread, then the outcome (in the thread, or in a digest
        # of outcomes when several waited for the channel at once), once.
        replies = fake.posted(REQUESTS_CHANNEL, thread_ts=fresh.thread_ts)
        assert [m["metadata"]["event_payload"]["key"].split(":")[1] for m in replies][:1] == ["decided"]
        [outcome] = outcomes(fake, REQUESTS_CHANNEL, fresh)
        assert float(outcome["ts"]) > float(replies[0]["ts"])
        assert len(outcomes(fake, NOTIFY, fresh)) == 1
        # The head and the card end showing the request as it is: done.
        last_head_edit = [c for c in fake.of("chat.update") if c["ts"] == fresh.thread_ts][-1]
        assert last_head_edit["text"].endswith("Done")
    retried = defaultdict(float)
    for w in workers:
        for sample in w.metrics.news_retried.collect()[0].samples:
            if sample.name.endswith("_total"):
                retried[sample.labels["reason"]] += sample.value
    assert retried["ratelimited"] >= 1 and retried["http_503"] >= 1
    assert {w.courier.owner for w in workers} == {"worker-a", "worker-b"}


async def test_two_workers_share_one_budget_per_method_and_channel(
    engine: Engine, slack: tuple[FakeSlack, str], workers: list[Worker]
) -> None:
    fake, _ = slack
    store, news = RequestStore(engine), NewsStore(engine)
    rows = [a_request(store, n) for n in range(12)]  # every thread in one channel, every card in another
    for row in rows:
        through_its_life(store, row)
    for w in workers:
        w.courier.wake()
    await until(lambda: news.backlog() == 0, timeout=120, what="every piece of news delivered")
    posts: dict[str, list[float]] = defaultdict(list)
    for call in fake.calls:
        if call["method"] == "chat.postMessage":
            posts[call["args"]["channel"]].append(call["at"])
    updates = [c["at"] for c in fake.calls if c["method"] == "chat.update"]
    window = 1.5
    # Each budget is one call per interval across both workers (one more for a call that arrived late).
    for channel in (REQUESTS_CHANNEL, APPROVALS, NOTIFY):
        assert busiest_window(posts[channel], window) <= window / POST_INTERVAL + 1, channel
    assert busiest_window(updates, window) <= window / UPDATE_INTERVAL + 1
    told_by = {w.courier.owner: w.metrics.slack_calls.labels("chat.postMessage")._value.get() for w in workers}
    assert all(count > 0 for count in told_by.values()), told_by  # both workers did part of the work


def test_a_slot_is_taken_by_one_process_only(database_url: str, engine: Engine) -> None:
    first, second = SharedPace(make_engine(database_url)), SharedPace(make_engine(database_url))
    now = time.time()
    assert first.take("chat.update", 1.2, now=now) == 0.0
    assert second.take("chat.update", 1.2, now=now + 0.1) == pytest.approx(1.1)  # the other's slot: wait
    assert second.take("chat.postMessage C1", 1.0, now=now + 0.1) == 0.0  # another budget
    assert second.take("chat.update", 1.2, now=now + 1.2) == 0.0
    first.hold("chat.update", 30, now=now + 1.3)  # Slack said Retry-After: 30
    assert first.take("chat.update", 1.2, now=now + 2.5) == pytest.approx(28.8)
    first.engine.dispose()
    second.engine.dispose()


async def test_a_post_whose_answer_was_lost_is_found_in_slack_and_not_posted_twice(
    database_url: str, engine: Engine, slack: tuple[FakeSlack, str]
) -> None:
    fake, _ = slack
    fake.lose_for_seconds = 2.0
    fake.lose_answers("chat.postMessage")  # the head reaches Slack; its answer never comes back
    worker = a_worker(database_url, slack, "w", timeout=0.5)
    store, news = RequestStore(engine), NewsStore(engine)
    row = a_request(store, 1)
    await worker.courier.deliver_due()
    assert len(fake.posted(REQUESTS_CHANNEL)) == 1  # in Slack, but the bot never heard
    [waiting] = news.pending(row.id)
    assert waiting.last_error == "timeout" and waiting.sent_json and "since" in waiting.sent_json
    await until(lambda: all(n.available_at <= utcnow() for n in news.pending(row.id)), what="the retry")
    await worker.courier.deliver_due()
    assert news.pending(row.id) == []
    assert len(fake.posted(REQUESTS_CHANNEL)) == 1  # found, not posted again
    assert fake.of("conversations.history")[0]["include_all_metadata"] in (True, "true", "1")
    fresh = store.get(row.id)
    assert fresh is not None and fresh.thread_ts == fake.posted(REQUESTS_CHANNEL)[0]["ts"]
    assert len(fake.posted(APPROVALS)) == 1  # and the rest of that news went on
    worker.engine.dispose()


async def test_a_lost_post_in_a_dm_is_looked_for_in_the_dm(
    database_url: str, engine: Engine, slack: tuple[FakeSlack, str]
) -> None:
    fake, _ = slack
    fake.lose_for_seconds = 2.0
    worker = a_worker(database_url, slack, "w", timeout=0.5)
    store, news = RequestStore(engine), NewsStore(engine)
    spec = parse_spec(office_body())
    row = store.create(NewRequest("U0ASK005", spec.canonical_json(), spec.spec_hash(), "prePaid", 1, "g"),
                       State.PENDING_APPROVAL, "U0ASK005")  # from the app's Home: its thread is in the DM
    fake.lose_answers("chat.postMessage")
    await worker.courier.deliver_due()
    await until(lambda: all(n.available_at <= utcnow() for n in news.pending(row.id)), what="the retry")
    await worker.courier.deliver_due()
    assert news.pending(row.id) == []
    dm = dm_channel(row.requester_id)
    assert len([m for m in fake.posted(dm) if "thread_ts" not in m]) == 1
    assert fake.of("conversations.open") and fake.of("conversations.history")[0]["channel"] == dm
    fresh = store.get(row.id)
    assert fresh is not None and fresh.channel_id == dm
    worker.engine.dispose()


async def test_a_channel_that_is_gone_sends_the_thread_to_the_dm_and_warns_the_operator(
    database_url: str, engine: Engine, slack: tuple[FakeSlack, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = slack
    worker = a_worker(database_url, slack, "w")
    store = RequestStore(engine)
    row = a_request(store, 3)
    await worker.courier.deliver_due()
    fake.gone_channels.add(REQUESTS_CHANNEL)  # the channel is archived and deleted after the thread began
    through_its_life(store, row)
    with caplog.at_level(logging.WARNING):
        await worker.courier.deliver_due()
    assert NewsStore(engine).pending(row.id) == []
    dm = fake.posted(dm_channel(row.requester_id))
    # The replies go to the requester's DM; the head, found gone at its next edit, follows them there.
    assert [m["metadata"]["event_payload"]["key"].split(":")[1] for m in dm][:2] == ["decided-dm", "final-dm"]
    fresh = store.get(row.id)
    assert fresh is not None and fresh.channel_id == dm_channel(row.requester_id)
    assert any(r.levelno == logging.WARNING and row.id in r.getMessage() and REQUESTS_CHANNEL in r.getMessage()
               and "channel_not_found" in r.getMessage() for r in caplog.records)
    worker.engine.dispose()


async def test_a_head_deleted_in_slack_is_posted_anew_on_the_next_edit(
    database_url: str, engine: Engine, slack: tuple[FakeSlack, str]
) -> None:
    fake, _ = slack
    worker = a_worker(database_url, slack, "w")
    store = RequestStore(engine)
    row = a_request(store, 4)
    await worker.courier.deliver_due()
    before = store.get(row.id)
    assert before is not None and before.thread_ts
    fake.delete(REQUESTS_CHANNEL, before.thread_ts)
    through_its_life(store, row)
    await worker.courier.deliver_due()
    after = store.get(row.id)
    assert after is not None and after.thread_ts and after.thread_ts != before.thread_ts
    heads = [m for m in fake.posted(REQUESTS_CHANNEL) if "thread_ts" not in m]
    assert [h["ts"] for h in heads] == [before.thread_ts, after.thread_ts]
    assert NewsStore(engine).pending(row.id) == []
    worker.engine.dispose()


async def test_outcomes_ending_together_share_digests_and_each_requester_is_told_once(
    engine: Engine, slack: tuple[FakeSlack, str], workers: list[Worker]
) -> None:
    fake, _ = slack
    store, news = RequestStore(engine), NewsStore(engine)
    rows = [a_request(store, n, State.SUBMITTED) for n in range(30)]
    for w in workers:
        w.courier.wake()
    await until(lambda: news.backlog() == 0, what="the threads posted")
    for row in rows:
        store.transition(row.id, State.SUBMITTED, State.SUCCEEDED, actor="w", action="succeeded", news=Event.FINISHED)
    for w in workers:
        w.courier.wake()
    await until(lambda: news.backlog() == 0, timeout=120, what="every outcome told and every head redrawn")
    digests = [m for m in fake.posted(REQUESTS_CHANNEL) if "keys" in (m.get("metadata") or {}).get("event_payload", {})]
    assert digests  # 30 outcomes waited for one channel: they shared posts
    for row in rows:
        fresh = store.get(row.id)
        assert fresh is not None
        [told] = outcomes(fake, REQUESTS_CHANNEL, fresh)
        assert f"<@{row.requester_id}>" in json.dumps(told)  # the requester is notified
        assert len(outcomes(fake, NOTIFY, fresh)) == 1
        assert [c for c in fake.of("chat.update") if c["ts"] == fresh.thread_ts][-1]["text"].endswith("Done")
    posts_to_notify = len(fake.posted(NOTIFY))
    assert posts_to_notify < len(rows)
