"""The tracker against the sandbox over loopback HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud, build_cloud
from bot.lifecycle import FINAL_STATES, State
from bot.notify import Event
from bot.policy import Guardrails
from bot.progress import Progress
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.settings import Settings
from bot.slack import messages
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.models import AppRequest
from bot.store.news import NewsStore
from bot.store.repository import RequestStore, server_ids
from bot.store.schema import migrate
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CloudAdapter, Policy, Workflow
from tests.specs import office_body, prepaid_body
from tests.tracking import cycle_until
from tests.workflows import NoGroups

APPROVER = "U0APPROVER"
FAST = TrackerConfig(interval=timedelta(seconds=0.1), first_delay=timedelta(seconds=0.05),
                     poll_lease=timedelta(seconds=5))


class NewsLog:
    """What Slack will be told, in order: the news queued in the database (no courier runs here)."""

    def __init__(self, store: RequestStore) -> None:
        self.news = NewsStore(store.engine)

    def of(self, request_id: str) -> list[Event]:
        return [Event(n.event) for n in self.news.pending(request_id)]


def make_tracker(store: RequestStore, cloud: Cloud, worker: str = "tracker-1",
                 config: TrackerConfig = FAST) -> tuple[Tracker, NewsLog]:
    # Many requests from one person, all going out at once: the guardrails are another test's subject.
    rails = Guardrails(auto_approve_max_servers=100, max_pending_per_user=1000)
    workflow = Workflow(store, CloudAdapter(cloud), NoGroups(), Policy(
        approvers=frozenset({APPROVER}), first_poll_delay=config.first_delay, guardrails=rails), worker_id=worker)
    return Tracker(store, cloud, workflow, config), NewsLog(store)


async def run_until(tracker: Tracker, store: RequestStore, ids: list[str], timeout: float = 30.0) -> list[AppRequest]:
    stop = asyncio.Event()
    task = asyncio.create_task(tracker.run(stop))
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            rows = [store.get(i) for i in ids]
            if all(r is not None and State(r.state) in FINAL_STATES for r in rows):
                return [r for r in rows if r is not None]
            assert asyncio.get_running_loop().time() < deadline, [(r.id, r.state) for r in rows if r]
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


@pytest.mark.slow
async def test_jobs_of_varied_lengths_each_reach_their_end(store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    tracker, news = make_tracker(store, cloud)
    ids = []
    for seconds, count in ((0.2, 1), (0.8, 3), (1.5, 2)):
        sandbox.config.job_seconds = seconds
        ids.append((await tracker.workflow.submit(parse_spec(office_body(count=count)), "U0ASKER")).id)
        await tracker.cycle()  # submits it now, with this job length
        await tracker.creates_answered()
    rows = await run_until(tracker, store, ids)
    sandbox.config.job_seconds = 0.6
    assert [r.state for r in rows] == ["succeeded"] * 3
    assert [len(server_ids(r)) for r in rows] == [1, 3, 2]
    for row in rows:
        events = news.of(row.id)
        assert events[:2] == [Event.CREATED, Event.SUBMITTED] and events[-1] is Event.FINISHED
        assert events.count(Event.FINISHED) == 1
        assert Progress.of(row).ready == row.subscription_num
    assert Progress.of(rows[0]).expected_end is not None  # from ShowJob on the first poll
    assert len(sandbox.calls("CreateAppServers")) == 3


@pytest.mark.slow
async def test_a_job_whose_sub_jobs_partly_fail_is_partly_done_with_the_reason(store: RequestStore, cloud: Cloud,
                                                                               sandbox: Sandbox) -> None:
    sandbox.state.fail_next_jobs = 2
    tracker, _ = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(office_body(count=3)), "U0ASKER")
    alone = await tracker.workflow.submit(parse_spec(office_body(count=1)), "U0ASKER")
    [done, failed] = await run_until(tracker, store, [row.id, alone.id])
    assert done.state == State.PARTLY_DONE and len(server_ids(done)) == 2  # not a red "failed"
    assert done.outcome_sentence and done.outcome_sentence.startswith("1 failed: WKS.00211401")
    assert "refunds" in done.outcome_sentence
    assert messages.partial_text(done).startswith("Partly done: 2 of 3 ready (")
    # Nothing created at all is a failure, with the cloud's reason.
    assert failed.state == State.FAILED and failed.outcome_sentence and "WKS.00211401" in failed.outcome_sentence
    assert server_ids(failed) == []


@pytest.mark.slow
async def test_an_order_that_is_never_paid_ends_clearly(store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.config.payment_window_seconds = 1.0
    try:
        tracker, news = make_tracker(store, cloud)
        row = await tracker.workflow.submit(parse_spec(prepaid_body()), "U0ASKER")
        assert (await tracker.workflow.approve(row.id, APPROVER)).ok
        [done] = await run_until(tracker, store, [row.id])
    finally:
        sandbox.config.payment_window_seconds = 7 * 24 * 3600
    assert done.state == State.FAILED and done.outcome_sentence and "no servers were created" in done.outcome_sentence
    assert news.of(row.id).count(Event.PAYMENT_DUE) == 1  # the payment prompt, once
    assert Progress.of(done).payment_deadline is not None


@pytest.mark.slow
async def test_an_order_paid_by_an_approver_completes(store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    tracker, news = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(prepaid_body(count=2)), "U0ASKER")
    await tracker.workflow.approve(row.id, APPROVER)
    for _ in range(40):
        await tracker.cycle()
        if Event.PAYMENT_DUE in news.of(row.id):
            break
        await asyncio.sleep(0.05)
    assert Event.PAYMENT_DUE in news.of(row.id)
    clicks = await asyncio.gather(*(tracker.workflow.pay_order(row.id, APPROVER) for _ in range(5)))
    assert sum(c.ok for c in clicks) == 1  # a double click pays once
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.SUCCEEDED and len(server_ids(done)) == 2
    assert len(sandbox.calls("PayOrders")) == 1


@pytest.mark.slow
async def test_throttling_and_faults_slow_polling_down_but_every_request_ends(
    store: RequestStore, sandbox: Sandbox, settings: Settings
) -> None:
    cloud = build_cloud(settings.model_copy(update={"cloud_retry_attempts": 1}))
    try:
        tracker, _ = make_tracker(store, cloud)
        ids = [(await tracker.workflow.submit(parse_spec(office_body(count=1)), "U0ASKER")).id for _ in range(4)]
        await tracker.cycle()
        sandbox.faults.configure(FaultSettings(rate=0.5, kinds=["429", "503"], seed=3,
                                               operations=["ShowJob", "ShowJobDetail"]))
        rows = await run_until(tracker, store, ids, timeout=60)
    finally:
        await cloud.aclose()
    assert {r.state for r in rows} == {"succeeded"}
    assert any(c["status"] in (429, 503) for c in sandbox.calls("ShowJobDetail") + sandbox.calls("ShowJob"))
    assert len(sandbox.calls("CreateAppServers")) == 4


@pytest.mark.slow
async def test_where_show_job_detail_is_not_published_the_tracker_follows_with_show_job(
    store: RequestStore, cloud: Cloud, sandbox: Sandbox
) -> None:
    sandbox.faults.add(ScriptedFault(operation="ShowJobDetail", kind="404", count=1000))
    tracker, news = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(office_body(count=2)), "U0ASKER")
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.SUCCEEDED and len(server_ids(done)) == 2
    assert Progress.of(done).ready == 2
    assert len(sandbox.calls("ShowJob")) >= 2  # the first poll, and every poll after v2 said 404
    assert {c["status"] for c in sandbox.calls("ShowJobDetail")} == {404}
    assert news.of(row.id)[-1] is Event.FINISHED


@pytest.mark.slow
async def test_a_tracker_restarted_mid_job_resumes_from_the_database(store: RequestStore, cloud: Cloud,
                                                                    sandbox: Sandbox) -> None:
    sandbox.config.job_seconds = 60.0  # longer than the test: the job ends when the test says so
    try:
        first, _ = make_tracker(store, cloud, "tracker-before")
        row = await first.workflow.submit(parse_spec(office_body(count=2)), "U0ASKER")
        mid = await cycle_until(first, store, row.id, lambda r: r.state == State.PROVISIONING,
                                what="the job being built")
        assert mid.job_id  # the first tracker stops here, mid-job
        sandbox.state.jobs[mid.job_id].duration = 0.0  # the job ends while no tracker runs
        second, news = make_tracker(store, cloud, "tracker-after")
        [done] = await run_until(second, store, [row.id])
    finally:
        sandbox.config.job_seconds = 0.6
    assert done.state == State.SUCCEEDED and len(server_ids(done)) == 2
    assert news.of(row.id)[-1] is Event.FINISHED
    assert len(sandbox.calls("CreateAppServers")) == 1


@pytest.mark.slow  # two trackers on PostgreSQL: the fast loop runs store logic on SQLite only
async def test_two_trackers_on_postgres_poll_each_job_one_at_a_time(postgres_url: str, settings: Settings,
                                                                    sandbox: Sandbox) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    store = RequestStore(engine)
    sandbox.config.job_seconds = 1.0
    polls: dict[str, list[tuple[str, float, float]]] = defaultdict(list)

    def record(request_id: str, worker: str, start: float, end: float) -> None:
        polls[request_id].append((worker, start, end))

    clouds = [build_cloud(settings), build_cloud(settings)]
    try:
        trackers = []
        for index, cloud in enumerate(clouds):
            tracker, _ = make_tracker(store, cloud, f"replica-{index}")
            tracker.on_poll = record
            trackers.append(tracker)
        ids = [(await trackers[0].workflow.submit(parse_spec(office_body(count=1)), "U0ASKER")).id for _ in range(50)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(t.run(stop)) for t in trackers]
        rows: list[Any] = []
        for _ in range(600):
            rows = [store.get(i) for i in ids]
            if all(State(r.state) in FINAL_STATES for r in rows):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        sandbox.config.job_seconds = 0.6
        for cloud in clouds:
            await cloud.aclose()
        engine.dispose()
    assert [r.state for r in rows] == ["succeeded"] * 50
    assert len(sandbox.calls("CreateAppServers")) == 50
    workers = {w for entries in polls.values() for w, _, _ in entries}
    assert workers == {"replica-0", "replica-1"}  # both took part
    for request_id, entries in polls.items():
        ordered = sorted(entries, key=lambda e: e[1])
        for (_, _, end), (_, start, _) in itertools.pairwise(ordered):
            assert start >= end, f"{request_id} was polled by two trackers at once"


@pytest.mark.slow
async def test_paying_with_too_little_balance_says_so_and_allows_another_try(store: RequestStore, cloud: Cloud,
                                                                            sandbox: Sandbox) -> None:
    tracker, _ = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(prepaid_body()), "U0ASKER")
    await tracker.workflow.approve(row.id, APPROVER)
    await cycle_until(tracker, store, row.id, lambda r: r.state == State.AWAITING_PAYMENT)
    sandbox.state.balance = Decimal(1)
    refused = await tracker.workflow.pay_order(row.id, APPROVER)
    assert not refused.ok and "balance is not enough" in refused.sentence and "request id" in refused.sentence
    sandbox.state.balance = Decimal(1_000_000)
    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.SUCCEEDED
    assert [c["status"] for c in sandbox.calls("PayOrders")] == [400, 204]
    details = [e.detail or "" for e in store.audit_log(row.id) if e.action == "pay_order"]
    assert details[0].startswith("failed") and details[1].startswith(f"paid order {done.order_id}: CNY ")


async def test_a_sub_job_without_a_status_is_not_a_failure_and_aborting_is(store: RequestStore, cloud: Cloud,
                                                                          sandbox: Sandbox) -> None:
    tracker, _ = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(office_body(count=2)), "U0ASKER")
    await tracker.workflow.submit_due()
    submitted = store.get(row.id)
    assert submitted is not None and submitted.job_id
    job = sandbox.state.jobs[submitted.job_id]
    job.status_overrides = {0: None}  # the cloud has no status for one sub-job yet
    sandbox.config.job_seconds = 60.0
    job.duration = 60.0
    for _ in range(40):
        await tracker.cycle()
        current = store.get(row.id)
        if current is not None and Progress.of(current).polls >= 2:
            break
        await asyncio.sleep(0.05)
    assert current is not None and current.state == State.PROVISIONING
    assert Progress.of(current).polls >= 2 and Progress.of(current).failed == 0  # ShowJobDetail was read
    job.status_overrides = {0: "ABORTING"}
    job.duration = 0.0  # the job itself has ended: with a sub-job aborting, the request is only partly done
    sandbox.config.job_seconds = 0.6
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.PARTLY_DONE and Progress.of(done).failed == 1 and len(server_ids(done)) == 1


@pytest.mark.slow
async def test_a_refusal_that_needs_a_person_is_said_once_in_the_thread(store: RequestStore, cloud: Cloud,
                                                                        sandbox: Sandbox) -> None:
    tracker, news = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(prepaid_body(auto_pay=True)), "U0ASKER")
    await tracker.workflow.approve(row.id, APPROVER)
    sandbox.faults.add(ScriptedFault(operation="ShowCustomerOrderDetails", kind="404", count=3))
    current = await cycle_until(tracker, store, row.id, lambda r: Progress.of(r).cloud_errors >= 2, make_due=True)
    assert current.last_error and "APIGW.0101" in current.last_error
    assert news.of(row.id).count(Event.TROUBLE) == 1
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.SUCCEEDED


async def test_an_account_id_that_cannot_be_found_is_one_sentence_in_the_thread(store: RequestStore, cloud: Cloud,
                                                                               sandbox: Sandbox) -> None:
    sandbox.config.list_no_domains = True
    sandbox.faults.add(ScriptedFault(operation="GetCallerIdentity", kind="403"))  # STS cannot say either
    try:
        tracker, news = make_tracker(store, cloud)
        row = await tracker.workflow.submit(parse_spec(prepaid_body(auto_pay=True)), "U0ASKER")
        await tracker.workflow.approve(row.id, APPROVER)
        current = await cycle_until(tracker, store, row.id, lambda r: Progress.of(r).cloud_errors >= 2,
                                    make_due=True)
    finally:
        sandbox.config.list_no_domains = False
    assert current.last_error and "HUAWEICLOUD_SDK_DOMAIN_ID" in current.last_error
    assert news.of(row.id).count(Event.TROUBLE) == 1  # said once, not on every poll
    assert len(sandbox.calls("KeystoneListAuthDomains")) == 1  # the refusal is remembered, not retried in a loop
