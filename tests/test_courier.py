"""The Slack news outbox and its courier, on SQLite and PostgreSQL: order per request, nothing lost
when Slack fails or a courier dies, one courier per request across replicas, and a tracker cycle's
writes in a constant number of statements."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from bot.courier import Courier, CourierConfig
from bot.lifecycle import State
from bot.metrics import Metrics
from bot.notify import Event
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import SlackWriter, new_web_client
from bot.spec import parse_spec
from bot.store.models import AppRequest, utcnow
from bot.store.news import NewsStore
from bot.store.repository import Move, NewRequest, RequestStore
from tests.fake_slack import FakeSlack
from tests.specs import office_body

FAST = CourierConfig(concurrency=4, lease=timedelta(seconds=30), tick_seconds=0.05,
                     retry_in=timedelta(milliseconds=100), max_attempts=3, shutdown_grace_seconds=1.0)


class RecordingNotifier:
    """What Slack was told, by which courier; it can be told to fail for some requests."""

    def __init__(self, name: str = "courier", log: list[tuple[str, str, Event]] | None = None,
                 pause: float = 0.0) -> None:
        self.name = name
        self.log = log if log is not None else []
        self.pause = pause
        self.failing: dict[str, int] = {}  # request id → how many more calls fail

    async def request_changed(self, request: AppRequest, event: Event) -> None:
        if self.failing.get(request.id, 0) > 0:
            self.failing[request.id] -= 1
            raise ConnectionError("Slack is down")
        await asyncio.sleep(self.pause)
        self.log.append((self.name, request.id, event))

    def of(self, request_id: str) -> list[Event]:
        return [e for _, r, e in self.log if r == request_id]


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


def new_request(store: RequestStore, state: State = State.APPROVED) -> AppRequest:
    spec = parse_spec(office_body())
    return store.create(NewRequest("U0ASKER", spec.canonical_json(), spec.spec_hash(), "postPaid", 1, "g",
                                   channel_id="C0REQ"), state, "U0ASKER")


def in_flight(store: RequestStore, count: int, owner: str) -> list[AppRequest]:
    """`count` submitted requests leased to tracker `owner`, as after claim_due_for_tracking."""
    rows = [new_request(store) for _ in range(count)]
    for row in rows:
        store.transition(row.id, State.APPROVED, State.SUBMITTING, actor="t", action="claim_submit")
        store.transition(row.id, State.SUBMITTING, State.SUBMITTED, actor="t", action="submitted",
                         changes={"job_id": f"job-{row.id}", "next_poll_at": utcnow() - timedelta(seconds=1)},
                         news=Event.SUBMITTED)
    claimed = store.claim_due_for_tracking(owner, timedelta(minutes=1), limit=count + 1)
    assert len(claimed) == count
    return rows


def courier(store: RequestStore, notifier: RecordingNotifier, owner: str = "c1",
            config: CourierConfig = FAST) -> Courier:
    return Courier(NewsStore(store.engine), store, notifier, owner, config)


async def test_news_goes_out_in_order_and_older_redraws_are_folded_into_later_news(store: RequestStore) -> None:
    [row] = in_flight(store, 1, "t1")
    progress = {"id": row.id, "progress_json": "{}", "last_error": None, "next_poll_at": utcnow()}
    store.apply_cycle("t1", [progress], [], [(row.id, Event.PROGRESS)])
    store.claim_due_for_tracking("t1", timedelta(minutes=1), now=utcnow() + timedelta(seconds=5))
    store.apply_cycle("t1", [], [Move(row.id, frozenset({State.SUBMITTED}), State.SUCCEEDED, "succeeded",
                                      {"lease_owner": None, "next_poll_at": None}, news=Event.FINISHED)], [])
    notifier = RecordingNotifier()
    await courier(store, notifier).deliver_due()
    # CREATED and SUBMITTED came with the request; SUBMITTED and the progress only redraw the messages, which
    # FINISHED redraws too: they are not sent.
    assert notifier.of(row.id) == [Event.CREATED, Event.FINISHED]
    assert NewsStore(store.engine).pending() == []
    fresh = store.get(row.id)
    assert fresh is not None and fresh.news_owner is None and fresh.state == State.SUCCEEDED


async def test_a_failed_delivery_is_retried_later_and_holds_back_only_its_own_request(store: RequestStore) -> None:
    first, second = new_request(store), new_request(store)
    store.transition(first.id, State.APPROVED, State.CANCELLED, actor="U0ASKER", action="cancel", news=Event.FINISHED)
    notifier = RecordingNotifier()
    notifier.failing[first.id] = 1
    await courier(store, notifier).deliver_due()
    assert notifier.of(first.id) == [] and notifier.of(second.id) == [Event.CREATED]
    waiting = NewsStore(store.engine).pending(first.id)
    assert [(n.event, n.attempts) for n in waiting] == [("created", 1), ("finished", 0)]
    assert all(n.available_at > utcnow() for n in waiting)  # both wait: the thread stays in order
    await asyncio.sleep(0.15)
    await courier(store, notifier).deliver_due()
    assert notifier.of(first.id) == [Event.CREATED, Event.FINISHED]


@pytest.mark.slow
async def test_news_that_keeps_failing_is_given_up_loudly_after_its_attempts(
    store: RequestStore, caplog: pytest.LogCaptureFixture
) -> None:
    row = new_request(store)
    notifier = RecordingNotifier()
    notifier.failing[row.id] = FAST.max_attempts
    metrics = Metrics()
    for _ in range(FAST.max_attempts):
        await Courier(NewsStore(store.engine), store, notifier, "c1", FAST, metrics=metrics).deliver_due()
        await asyncio.sleep(0.45)
    assert NewsStore(store.engine).pending(row.id) == []
    assert any("gave up telling Slack" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert metrics.news_given_up.labels("error")._value.get() == 1  # on /metrics, by reason


async def test_news_of_a_courier_that_died_is_delivered_by_another_after_its_lease(store: RequestStore) -> None:
    row = new_request(store)
    news = NewsStore(store.engine)
    [taken] = news.claim("dead", timedelta(minutes=1), 10)  # claimed, then the process died
    assert taken.request_id == row.id
    notifier = RecordingNotifier()
    await courier(store, notifier, "alive").deliver_due()
    assert notifier.log == []  # the lease still holds
    lease_runs_out(store, row.id)
    await courier(store, notifier, "alive").deliver_due()
    assert notifier.of(row.id) == [Event.CREATED]


def lease_runs_out(store: RequestStore, request_id: str) -> None:
    """What the clock would do: the courier holding the request's news has not renewed its lease."""
    store.update_fields(request_id, actor="test", action="clock", news_until=utcnow() - timedelta(seconds=1))


async def test_two_couriers_tell_each_request_once_and_in_order(store: RequestStore) -> None:
    rows = [new_request(store, State.PENDING_APPROVAL) for _ in range(30)]
    for row in rows:
        store.transition(row.id, State.PENDING_APPROVAL, State.APPROVED, actor="U0APPROVER", action="approve",
                         news=Event.DECIDED)
        store.transition(row.id, State.APPROVED, State.CANCELLED, actor="U0ASKER", action="cancel",
                         news=Event.FINISHED)
    log: list[tuple[str, str, Event]] = []
    couriers = [courier(store, RecordingNotifier(name, log, pause=0.01), name) for name in ("a", "b")]
    await asyncio.gather(*(c.deliver_due() for c in couriers))
    for row in rows:
        told = [(who, e) for who, r, e in log if r == row.id]
        assert [e for _, e in told] == [Event.CREATED, Event.DECIDED, Event.FINISHED]
    assert {who for who, _, _ in log} == {"a", "b"}  # the work was shared
    assert NewsStore(store.engine).pending() == []


async def test_the_courier_loop_is_woken_by_news_and_stops_cleanly(store: RequestStore) -> None:
    notifier = RecordingNotifier()
    worker = courier(store, notifier, config=CourierConfig(tick_seconds=30))  # only a wake gets it going
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.sleep(0.1)
    row = new_request(store)
    worker.wake()
    for _ in range(500):
        if notifier.of(row.id):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert notifier.of(row.id) == [Event.CREATED]


def count_statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(engine, "before_cursor_execute", before)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("count", [20, 400])
def test_a_tracker_cycle_writes_in_the_same_statements_for_20_or_400_requests(store: RequestStore, count: int) -> None:
    rows = in_flight(store, count, "t1")
    half = count // 2
    finished = [Move(r.id, frozenset({State.SUBMITTED}), State.SUCCEEDED, "succeeded",
                     {"server_ids_json": json.dumps(["s"]), "lease_owner": None, "next_poll_at": None},
                     news=Event.FINISHED) for r in rows[:half]]
    saves = [{"id": r.id, "progress_json": "{}", "last_error": None, "next_poll_at": utcnow()} for r in rows[half:]]
    statements = count_statements(store.engine)
    moved = store.apply_cycle("t1", saves, finished, [(r.id, Event.PROGRESS) for r in rows[half:]])
    assert moved == {r.id for r in rows[:half]}
    # BEGIN, lease check, the moves, their audit rows, the saves, the news, COMMIT (SQLite adds BEGIN itself).
    assert len([s for s in statements if s.upper() not in ("BEGIN", "COMMIT")]) == 5
    # Each request's CREATED and SUBMITTED, and now one FINISHED or PROGRESS.
    assert len(NewsStore(store.engine).pending()) == 3 * count
    assert {store.get(r.id).state for r in rows[:half]} == {State.SUCCEEDED}  # type: ignore[union-attr]


def test_a_cycle_does_not_touch_rows_another_tracker_holds(store: RequestStore) -> None:
    [row] = in_flight(store, 1, "t1")
    move = Move(row.id, frozenset({State.SUBMITTED}), State.FAILED, "failed", {"lease_owner": None}, news=Event.FINISHED)
    assert store.apply_cycle("t2", [], [move], []) == set()
    fresh = store.get(row.id)
    assert fresh is not None and fresh.state == State.SUBMITTED
    assert [n.event for n in NewsStore(store.engine).pending(row.id)] == ["created", "submitted"]


async def test_created_news_delivered_again_posts_the_thread_and_the_card_once(
    store: RequestStore, fake_slack: tuple[FakeSlack, str]
) -> None:
    slack, url = fake_slack
    writer = SlackWriter(new_web_client(slack.token, url), post_interval=0, update_interval=0, edit_window=0)
    notifier = SlackNotifier(writer, store, "C0APPROVALS", None, sandbox=False)
    row = new_request(store, State.PENDING_APPROVAL)
    await notifier.request_changed(row, Event.CREATED)
    again = store.get(row.id)
    assert again is not None and again.thread_ts and again.approval_ts
    await notifier.request_changed(again, Event.CREATED)  # a retry after Slack failed half-way through
    top_level = [c["channel"] for c in slack.of("chat.postMessage") if not c.get("thread_ts")]
    assert top_level == ["C0REQ", "C0APPROVALS"]


async def test_a_courier_that_lost_its_lease_stops_and_the_new_owner_goes_on(store: RequestStore) -> None:
    row = new_request(store)
    store.transition(row.id, State.APPROVED, State.CANCELLED, actor="U0ASKER", action="cancel", news=Event.FINISHED)
    log: list[tuple[str, str, Event]] = []
    slack_holds, slack_answers = asyncio.Event(), asyncio.Event()

    class StalledSlack(RecordingNotifier):
        async def request_changed(self, request: AppRequest, event: Event) -> None:
            slack_holds.set()
            await slack_answers.wait()
            await super().request_changed(request, event)

    first = asyncio.create_task(courier(store, StalledSlack("a", log), "a").deliver_due())
    await asyncio.wait_for(slack_holds.wait(), timeout=10)
    lease_runs_out(store, row.id)  # while Slack holds courier a's first call
    await courier(store, RecordingNotifier("b", log), "b").deliver_due()
    slack_answers.set()
    await first
    assert [e for who, _, e in log if who == "b"] == [Event.CREATED, Event.FINISHED]
    assert [e for who, _, e in log if who == "a"] == [Event.CREATED]  # the call under way; then it stopped
    assert NewsStore(store.engine).pending() == []


async def test_news_waiting_for_a_lookup_is_not_overtaken_by_later_news(store: RequestStore) -> None:
    row = new_request(store)
    store.transition(row.id, State.APPROVED, State.SUBMITTING, actor="w", action="claim_submit")
    store.transition(row.id, State.SUBMITTING, State.NEEDS_ATTENTION, actor="w", action="outcome_unknown",
                     news=Event.ATTENTION, news_delay=timedelta(minutes=1))
    store.transition(row.id, State.NEEDS_ATTENTION, State.SUBMITTED, actor="w", action="submitted",
                     news=Event.SUBMITTED)  # a late answer to the create, due at once
    notifier = RecordingNotifier()
    await courier(store, notifier).deliver_due()
    assert notifier.of(row.id) == [Event.CREATED]  # SUBMITTED waits behind ATTENTION
    fresh = store.get(row.id)
    assert fresh is not None and fresh.news_owner is None  # nothing held while it waits
    store.update_fields(row.id, actor="bot", action="lookup", release_news=True, lookup_found=False)  # looked
    await courier(store, notifier).deliver_due()
    assert notifier.of(row.id) == [Event.CREATED, Event.ATTENTION, Event.SUBMITTED]


async def test_a_delivery_waiting_on_slack_keeps_its_lease_while_its_courier_runs(store: RequestStore) -> None:
    row = new_request(store)
    log: list[tuple[str, str, Event]] = []
    slack_holds, slack_answers = asyncio.Event(), asyncio.Event()

    class SlowSlack(RecordingNotifier):  # a post waiting its turn behind Slack's pace for longer than a lease
        async def request_changed(self, request: AppRequest, event: Event) -> None:
            slack_holds.set()
            await slack_answers.wait()
            await super().request_changed(request, event)

    config = dataclasses.replace(FAST, lease=timedelta(seconds=3))
    stop = asyncio.Event()
    running = asyncio.create_task(courier(store, SlowSlack("a", log), "a", config).run(stop))
    await asyncio.wait_for(slack_holds.wait(), timeout=10)
    await asyncio.sleep(4.5)  # longer than the lease it claimed with
    await courier(store, RecordingNotifier("b", log), "b", config).deliver_due()
    slack_answers.set()
    for _ in range(500):
        if log:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(running, timeout=10)
    assert log == [("a", row.id, Event.CREATED)]  # told once, by the courier that held it
