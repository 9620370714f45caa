"""When requests are polled: soon after the submit, just after a job's expected end, within a per-second
budget of cloud calls, and never less often than the interval. The schedule alone in virtual time, then
the tracker against the sandbox over loopback HTTP with a database (no timing assertions: schedules
and counts)."""

from __future__ import annotations

import heapq
import math
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, insert

from bot.cloud.client import Cloud
from bot.lifecycle import State
from bot.poll_schedule import HEADROOM, Allowance, Load, Pace
from bot.progress import Progress
from bot.sandbox import Sandbox
from bot.settings import Settings, SettingsError, load_settings
from bot.spec import parse_spec
from bot.store.models import AppRequest, utcnow
from bot.store.repository import RequestStore
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CloudAdapter, Policy, Workflow
from tests.specs import office_body
from tests.workflows import NoGroups

DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
PACE = Pace(DEFAULTS.poll_budget_per_second, timedelta(seconds=DEFAULTS.poll_interval_seconds),
            timedelta(seconds=2), timedelta(seconds=0.5))
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Clock:
    """The allowance's clock, moved by the test: one tracker tick a second."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# The schedule -------------------------------------------------------------------------------------

def test_the_defaults_look_soon_after_a_submit_and_stay_under_the_gateways_throttling() -> None:
    assert DEFAULTS.poll_first_delay_seconds <= 2  # was 10
    assert DEFAULTS.poll_budget_per_second <= 10  # the 10/s Huawei documents for order reads and its gateway shows
    assert DEFAULTS.poll_interval_seconds == 30


def test_the_budget_is_read_from_the_environment_and_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLL_BUDGET_PER_SECOND", "2.5")
    assert load_settings(_env_file=None).poll_budget_per_second == 2.5
    monkeypatch.setenv("POLL_BUDGET_PER_SECOND", "0")
    with pytest.raises(SettingsError, match="POLL_BUDGET_PER_SECOND"):
        load_settings(_env_file=None)


def test_each_request_gets_its_share_of_the_budget_between_the_fastest_and_the_interval() -> None:
    assert PACE.gap(Load(1, 1)) == timedelta(seconds=2)  # few: every couple of seconds
    assert PACE.gap(Load(40, 40)) == timedelta(seconds=40 * HEADROOM / PACE.budget_per_second)
    assert PACE.gap(Load(10_000, 10_000)) == PACE.interval  # many: the interval, as before
    # Orders waiting for a person to pay do not take a share.
    assert PACE.gap(Load(1_000, 1)) == timedelta(seconds=2)
    assert PACE.rate(Load(10, 10)) == PACE.budget_per_second
    assert PACE.rate(Load(10_000, 10_000)) == pytest.approx(HEADROOM * 10_000 / 30)


def test_a_job_is_polled_just_after_its_expected_end_when_that_comes_before_its_turn() -> None:
    many = Load(100, 100)  # a 25 s turn
    near = T0 + timedelta(seconds=7)
    assert PACE.next_poll(T0, many, State.PROVISIONING, near) == near + timedelta(seconds=0.5)
    assert PACE.next_poll(T0, many, State.PROVISIONING, T0 + timedelta(minutes=5)) == T0 + PACE.gap(many)
    # An end that has passed (the job runs late) or is unknown: its turn.
    assert PACE.next_poll(T0, many, State.SUBMITTED, T0 - timedelta(seconds=3)) == T0 + PACE.gap(many)
    assert PACE.next_poll(T0, many, State.SUBMITTED, None) == T0 + PACE.gap(many)
    # An order waiting for a person to pay: the interval (the Pay button polls it at once).
    assert PACE.next_poll(T0, Load(1, 0), State.AWAITING_PAYMENT, near) == T0 + PACE.interval


def test_the_allowance_spreads_a_burst_over_time() -> None:
    clock = Clock()
    allowance = Allowance(clock)
    assert allowance.available(5.0) == 5  # a second's worth at once
    allowance.spend(5)
    assert allowance.available(5.0) == 0
    clock.now += 0.5
    assert allowance.available(5.0) == 2
    clock.now += 100  # idle: it does not save up more than a second's worth
    assert allowance.available(5.0) == 5


def fixed_interval_polls(duration: float) -> int:
    """What a job of `duration` seconds cost before: a first look at 10 s, then one every 30 s until it ended."""
    return 1 + math.ceil((duration - 10) / 30)


@pytest.mark.parametrize("in_flight", [1, 7, 100, pytest.param(10_000, marks=pytest.mark.slow)])
def test_in_virtual_time_polls_stay_within_the_budget_and_the_interval_and_endings_are_seen_at_once(
    in_flight: int,
) -> None:
    """N jobs stay in flight (each one that ends is replaced by a new one), polled as `Tracker.run` does:
    a cycle a second, taking the due requests oldest first, as many as the allowance permits."""
    rng = random.Random(in_flight)
    clock = Clock()
    allowance = Allowance(clock)
    ends: dict[int, float] = {}
    durations: dict[int, float] = {}
    last_poll: dict[int, float] = {}
    polls: dict[int, int] = {}
    queue: list[tuple[float, int]] = []

    def submit(at: float) -> None:
        request = len(ends)
        durations[request] = rng.uniform(20, 400)
        ends[request] = at + durations[request]
        last_poll[request], polls[request] = at, 0
        # The first delay, or the request's share of the budget when that is longer, up to a third of the
        # interval (as Tracker.poll waits).
        first = max(2.0, min(PACE.gap(load).total_seconds(), PACE.interval.total_seconds() / 3))
        heapq.heappush(queue, (at + first, request))

    load = Load(in_flight, in_flight)
    for _ in range(in_flight):
        submit(rng.uniform(0, 30))  # the first ones arrive over half a minute, as forms are submitted
    polls_per_second, scheduled, waits, seen_after, finished = [], [], [], [], []
    for second in range(900):
        clock.now = float(second)
        room = allowance.available(PACE.rate(load))
        taken = 0
        while queue and queue[0][0] <= second and taken < room:
            _, request = heapq.heappop(queue)
            taken += 1
            polls[request] += 1
            waits.append(second - last_poll[request])
            last_poll[request] = second
            if second >= ends[request]:
                seen_after.append(second - ends[request])
                finished.append(request)
                submit(float(second))
                continue
            now = T0 + timedelta(seconds=second)
            nxt = PACE.next_poll(now, load, State.PROVISIONING, T0 + timedelta(seconds=ends[request]))
            scheduled.append(nxt - now)
            heapq.heappush(queue, ((nxt - T0).total_seconds(), request))
        allowance.spend(taken)
        polls_per_second.append(taken)
    interval = PACE.interval.total_seconds()
    assert max(polls_per_second) <= PACE.rate(load)  # never more than the allowance a second
    assert max(scheduled) <= PACE.interval  # nobody is scheduled later than the interval
    # ... and is polled then, give or take the tick that sees it due and a second of backlog after a burst.
    assert max(waits) <= interval + 2
    if in_flight / interval > PACE.budget_per_second:
        # Under load: no more than a fixed interval cost (the first look waits for the request's share).
        assert sum(polls[r] for r in finished) <= sum(fixed_interval_polls(durations[r]) for r in finished)
    else:
        assert sum(polls_per_second[60:]) <= PACE.budget_per_second * len(polls_per_second[60:])
    # A job that ends on time is seen within the margin and the tick after its end, whatever the load.
    assert sorted(seen_after)[len(seen_after) // 2] <= 1.5


# The tracker --------------------------------------------------------------------------------------

def _jobs(sandbox_url: str, count: int, seconds: float) -> list[str]:
    ids: list[str] = httpx.post(sandbox_url + "/_sandbox/jobs/bulk", json={"count": count, "seconds": seconds},
                                timeout=60).json()["job_ids"]
    return ids


def _seed(store: RequestStore, job_ids: list[str], *, due: bool, prefix: str = "AS-T") -> list[str]:
    now = utcnow()
    rows = [{"id": f"{prefix}{i:07d}", "requester_id": "U0ASKER", "spec_json": '{"subscription_num": 1}',
             "spec_hash": "0" * 64, "charging_mode": "postPaid", "subscription_num": 1, "server_group_id": "g",
             "state": State.SUBMITTED.value, "job_id": job_id, "server_ids_json": "[]", "created_at": now,
             "updated_at": now, "submitted_at": now - timedelta(hours=1),  # in flight for a while (a restart)
             "next_poll_at": now if due else now + timedelta(hours=1),
             "version": 1, "attempts": 1} for i, job_id in enumerate(job_ids)]
    with store.engine.begin() as connection:
        connection.execute(insert(AppRequest), rows)
    return [r["id"] for r in rows]  # type: ignore[misc]


def _tracker(store: RequestStore, cloud: Cloud, clock: Clock | None = None) -> Tracker:
    first = timedelta(seconds=DEFAULTS.poll_first_delay_seconds)
    workflow = Workflow(store, CloudAdapter(cloud), NoGroups(), Policy(first_poll_delay=first), worker_id="tracker-1")
    config = TrackerConfig(interval=PACE.interval, first_delay=first, budget_per_second=PACE.budget_per_second)
    return Tracker(store, cloud, workflow, config, allowance=Allowance(clock or Clock()))


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


async def test_the_first_poll_after_a_submit_is_soon(store: RequestStore, cloud: Cloud) -> None:
    tracker = _tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(office_body(count=1)), "U0ASKER")
    await tracker.cycle()  # sends it to the cloud
    await tracker.creates_answered()
    sent = store.get(row.id)
    assert sent is not None and sent.state == State.SUBMITTED and sent.next_poll_at and sent.submitted_at
    assert sent.next_poll_at - sent.submitted_at == timedelta(seconds=DEFAULTS.poll_first_delay_seconds)


async def test_a_job_near_its_expected_end_is_polled_just_after_it_and_one_far_from_it_at_its_turn(
    store: RequestStore, cloud: Cloud, sandbox_url: str
) -> None:
    _seed(store, [f"never-due-{i}" for i in range(58)], due=False, prefix="AS-W")  # 60 in flight: a 15 s turn
    near, far = _seed(store, _jobs(sandbox_url, 1, 8) + _jobs(sandbox_url, 1, 300), due=True)
    tracker = _tracker(store, cloud)
    before = utcnow()
    assert await tracker.cycle() == 2
    after = utcnow()
    turn = PACE.gap(Load(60, 60))
    assert turn == timedelta(seconds=15)
    near_row, far_row = store.get(near), store.get(far)
    assert near_row is not None and far_row is not None and near_row.next_poll_at and far_row.next_poll_at
    expected_end = Progress.of(near_row).expected_end  # from ShowJob on the first poll
    assert expected_end is not None and before < expected_end < before + turn
    assert near_row.next_poll_at == expected_end + timedelta(seconds=0.5)
    assert before + turn <= far_row.next_poll_at <= after + turn


async def test_with_many_in_flight_each_cycle_polls_within_the_allowance_and_all_within_the_interval(
    store: RequestStore, cloud: Cloud, sandbox_url: str, sandbox: Sandbox
) -> None:
    ids = _seed(store, _jobs(sandbox_url, 200, 600), due=True)
    clock = Clock()
    tracker = _tracker(store, cloud, clock)
    rate = PACE.rate(Load(200, 200))  # the interval needs 200/30 a second: more than the budget
    assert rate > PACE.budget_per_second
    polled: list[int] = []
    while len(sandbox.calls("ShowJob")) < 200:
        polls_before = len(sandbox.calls("ShowJob"))
        polled.append(await tracker.cycle())
        assert len(sandbox.calls("ShowJob")) - polls_before == polled[-1]  # one cloud call a poll
        clock.now += 1.0  # the next tick
        assert len(polled) <= 100
    assert max(polled) <= rate
    assert sum(polled) == 200
    assert len(polled) <= PACE.interval.total_seconds()  # all 200, due at once, polled within the interval
    for request_id in ids:
        row = store.get(request_id)
        assert row is not None and row.next_poll_at is not None and row.updated_at is not None
        assert row.next_poll_at - row.updated_at <= PACE.interval  # nobody waits longer than the interval


async def test_with_few_in_flight_each_cycle_polls_within_the_budget(store: RequestStore, cloud: Cloud,
                                                                     sandbox_url: str) -> None:
    _seed(store, _jobs(sandbox_url, 12, 600), due=True)
    clock = Clock()
    tracker = _tracker(store, cloud, clock)
    polled = []
    for _ in range(3):
        polled.append(await tracker.cycle())
        clock.now += 1.0
    assert polled == [5, 5, 2]  # the budget a second (12 share it: each is polled every 3 s)


async def test_under_load_a_new_requests_first_look_waits_for_its_share_without_a_cloud_call(
    store: RequestStore, cloud: Cloud, sandbox: Sandbox
) -> None:
    _seed(store, [f"never-due-{i}" for i in range(99)], due=False, prefix="AS-W")  # 100 in flight: a 25 s share
    tracker = _tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(office_body(count=1)), "U0ASKER")
    await tracker.cycle()  # sends it; its first look is due 2 s later
    await tracker.creates_answered()
    sent = store.get(row.id)
    assert sent is not None and sent.next_poll_at and sent.submitted_at
    # Two seconds pass: the first look is due.
    store.update_fields(row.id, actor="test", action="time_passes", next_poll_at=utcnow() - timedelta(milliseconds=1))
    await tracker.cycle()
    waited = store.get(row.id)
    assert waited is not None and waited.next_poll_at is not None
    assert sandbox.calls("ShowJob") == [] and sandbox.calls("ShowJobDetail") == []  # no cloud call for it
    # ... until a third of the interval after the submit, where a fixed interval used to look first.
    assert waited.next_poll_at - sent.submitted_at == min(PACE.gap(Load(100, 100)), PACE.interval / 3)
    assert Progress.of(waited).polls == 0


async def test_a_first_look_put_off_under_load_gives_its_place_in_the_cycle_to_a_request_due_after_it(
    store: RequestStore, cloud: Cloud, sandbox_url: str, sandbox: Sandbox
) -> None:
    _seed(store, [f"never-due-{i}" for i in range(90)], due=False, prefix="AS-W")  # 100 in flight: a 25 s share
    jobs = _seed(store, _jobs(sandbox_url, 5, 600), due=True)  # in flight for a while: due for a regular poll
    # Five requests just submitted, due before them: their first looks wait for their share (no cloud call).
    fresh = _seed(store, [f"just-sent-{i}" for i in range(5)], due=True, prefix="AS-N")
    for request_id in fresh:
        now = utcnow()
        store.update_fields(request_id, actor="test", action="just_sent", submitted_at=now,
                            next_poll_at=now - timedelta(seconds=1))
    tracker = _tracker(store, cloud)  # the allowance's clock stands still: one second's worth, 5 polls
    assert PACE.rate(Load(100, 100)) == PACE.budget_per_second == 5
    # One cycle: the five first looks are put off, and their places go to the five jobs due after them.
    assert await tracker.cycle() == 10
    assert len(sandbox.calls("ShowJob")) == 5
    assert await tracker.cycle() == 0  # the allowance is spent for this second
    for request_id in jobs:
        row = store.get(request_id)
        assert row is not None and Progress.of(row).polls == 1
    for request_id in fresh:
        row = store.get(request_id)
        assert row is not None and Progress.of(row).polls == 0
