"""The tracker: follows every job (pay-per-use) and order (prepaid) to its end.

Each cycle it expires stale approvals, recovers crashed submissions, sends approved requests (the
outbox), then leases the requests whose next poll is due (as many as its budget of cloud calls allows)
and polls each once. When each is polled next is `bot.poll_schedule`'s choice. What the polls learned
(progress, state changes, their audit rows and the news for Slack) is written at the end of the cycle
in one transaction of batched statements. Everything it knows lives in the database, so a restart
resumes where it stopped, and leases keep several trackers from polling the same request at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.cloud.client import Cloud
from bot.cloud.errors import AccountIdUnavailable, CloudError, describe
from bot.cloud.models import (
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_PENDING_PAYMENT,
    ORDER_PROCESSING,
    OrderInfo,
    parse_cloud_time,
)
from bot.lifecycle import IN_FLIGHT_STATES, State
from bot.notify import Event
from bot.outage import OUTAGES, is_database_outage
from bot.payment import read_discounts
from bot.poll_schedule import Allowance, Load, Pace
from bot.progress import Progress
from bot.store.models import AppRequest, utcnow
from bot.store.repository import Move, RequestStore
from bot.workflow import Workflow

log = logging.getLogger(__name__)

SUCCESS = "SUCCESS"
UNKNOWN = "UNKNOWN"  # a sub-job the cloud gave no status: neither ready nor failed
FAILED_STATES = frozenset({"FAILED", "ABNORMAL", "ROLLBACK", "ABORTING"})
V1_STATUS = {0: "FAILED", 1: "SUCCESS", 2: "RUNNING", 3: "WAITING"}
ORDER_PAID_STATES = frozenset({ORDER_PROCESSING, ORDER_COMPLETED})
MAX_BACKOFF_FACTOR = 10
PROXY_REMIND_BEFORE = timedelta(hours=24)  # a proxy payment still not made this close to the deadline
FIRST_LOOK_SLACK = timedelta(seconds=1)  # a first look due within a tick of its turn is taken now


@dataclass(frozen=True)
class TrackerConfig:
    interval: timedelta = timedelta(seconds=30)  # the slowest any request is polled
    first_delay: timedelta = timedelta(seconds=2)
    budget_per_second: float = 5.0  # cloud calls a second, shared by the requests in flight
    fastest: timedelta = timedelta(seconds=2)  # the quickest the same request is polled again
    after_end: timedelta = timedelta(seconds=0.5)  # a job is looked at this long after its expected end
    max_concurrent_calls: int = 8
    batch: int = 200
    poll_lease: timedelta = timedelta(seconds=60)  # a poll in progress is not taken by another tracker
    max_creates: int = 10  # CreateAppServers calls in flight at once, each beside the cycle
    # A completed order's servers are read until all are listed or this passes (ORDER_RESOURCES_GRACE_MINUTES).
    resources_grace: timedelta = timedelta(minutes=10)

    @property
    def pace(self) -> Pace:
        return Pace(self.budget_per_second, self.interval, self.fastest, self.after_end)


@dataclass(frozen=True)
class SubJob:
    status: str
    server_id: str | None
    error: str | None


@dataclass(frozen=True)
class JobView:
    status: str  # WAITING RUNNING SUCCESS FAILED
    sub_jobs: tuple[SubJob, ...]
    expected_end: datetime | None
    error: str | None


def _error(code: str | None, message: str | None) -> str | None:
    if not code and not message:
        return None
    return " ".join(p for p in (code, f"“{message.strip().rstrip('.')}”" if message else None) if p)


@dataclass
class Tracker:
    store: RequestStore
    cloud: Cloud
    workflow: Workflow
    config: TrackerConfig = field(default_factory=TrackerConfig)
    on_poll: Callable[[str, str, float, float], None] | None = None  # (request, worker, start, end)
    on_news: Callable[[], None] | None = None  # news was queued for Slack: wake the courier
    allowance: Allowance = field(default_factory=Allowance)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _load: Load = field(default_factory=lambda: Load(0, 0))
    # What this cycle's polls learned, written together at its end.
    _saves: list[dict[str, Any]] = field(default_factory=list)
    _moves: list[Move] = field(default_factory=list)
    _news: list[tuple[str, Event]] = field(default_factory=list)
    last_cycle_at: float | None = None

    # Creates run beside the cycle, never inside it: a create that hangs (the gateway waits long before it
    # answers) must not hold up the polls of every other request.
    _creates: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def worker_id(self) -> str:
        return self.workflow.worker_id

    def wake(self) -> None:
        """Run a cycle now (a request was approved) instead of at the next tick."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        tick = min(self.config.interval.total_seconds(), 1.0)
        while not stop.is_set():
            try:
                if await self.cycle() >= self.config.batch:
                    continue  # a full batch: more are due now, so no pause before the next
            except Exception as error:  # the database or a bug: keep the loop alive, say so
                if is_database_outage(error):
                    OUTAGES.report("running the tracker's cycle", error)
                else:
                    log.exception("tracker cycle failed; trying again shortly")
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def cycle(self) -> int:
        """One pass; returns how many requests were taken (polled, or their first look put off)."""
        changed = bool(await self.workflow.expire_due())
        changed |= bool(await self.workflow.remind_due())
        changed |= bool(await self.workflow.recover_stale())
        await self._start_creates()
        lease = max(self.config.interval * 2, self.config.poll_lease)
        self._load = Load(*await asyncio.to_thread(self.store.in_flight_load))
        gate = asyncio.Semaphore(self.config.max_concurrent_calls)

        async def guarded(row: AppRequest) -> bool:
            async with gate:
                return await self.poll(row)

        room = min(self.config.batch, self.allowance.available(self.config.pace.rate(self._load)))
        taken = 0
        while room > 0:
            due = await asyncio.to_thread(self.store.claim_due_for_tracking, self.worker_id, lease, room)
            called = sum(await asyncio.gather(*(guarded(row) for row in due)))
            self.allowance.spend(called)
            taken += len(due)
            # A first look put off made no cloud call: its place goes to the next request due, in this cycle,
            # so the regular polls and the looks at expected ends keep the whole allowance.
            room = min(len(due) - called, self.config.batch - taken) if len(due) == room else 0
        saves, moves, news = self._saves, self._moves, self._news
        self._saves, self._moves, self._news = [], [], []
        if saves or moves:
            await asyncio.to_thread(self.store.apply_cycle, self.worker_id, saves, moves, news)
        if (changed or moves or news) and self.on_news is not None:
            self.on_news()
        self.last_cycle_at = time.time()
        return taken

    # Creating -----------------------------------------------------------------------------------

    async def _start_creates(self) -> None:
        """Claim approved requests (up to `max_creates` in flight) and send each in a task of its own."""
        room = self.config.max_creates - len(self._creates)
        if room <= 0:
            return
        for row in await self.workflow.claim_approved(room):
            task = asyncio.create_task(self._create(row), name=f"create {row.id}")
            self._creates.add(task)
            task.add_done_callback(self._creates.discard)

    async def _create(self, row: AppRequest) -> None:
        try:
            await self.workflow.send(row)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if is_database_outage(error):
                OUTAGES.report("recording the answer to a create", error)
            else:
                log.exception("sending %s to the cloud failed", row.id)
        if self.on_news is not None:
            self.on_news()
        self.wake()  # its first poll, or the next approved request

    @property
    def creates_in_flight(self) -> int:
        return len(self._creates)

    async def creates_answered(self) -> None:
        """Until every create in flight has its answer recorded (for callers that drive cycles one by one)."""
        while self._creates:
            await asyncio.gather(*list(self._creates), return_exceptions=True)

    async def stop_creates(self, grace: float) -> None:
        """At a stop: give the creates in flight `grace` seconds to be answered, then cancel them. A cancelled
        create's request stays leased in `submitting`; once the lease runs out it is looked for in the cloud,
        as after a crash (the create may have reached it: it is never sent again blindly)."""
        if not self._creates:
            return
        pending = set(self._creates)
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            log.warning("stopping while %s waits for the cloud's answer; the request waits out its lease, then the "
                        "bot looks for what the create made", task.get_name().removeprefix("create "))
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)

    # Polling ------------------------------------------------------------------------------------

    def _first_look_can_wait(self, row: AppRequest) -> bool:
        """Under load a request's first look waits for its share of the budget (up to a third of the interval, where
        a fixed interval used to look first): looking sooner would cost one cloud call more than a fixed interval
        did. It is put off without a call."""
        progress = Progress.of(row)
        if progress.polls or progress.cloud_errors or row.submitted_at is None or row.state != State.SUBMITTED:
            return False
        # At most a third of the interval: the first look learns when a job should end, so it cannot wait long.
        turn = row.submitted_at + min(self.config.pace.gap(self._load),
                                      max(self.config.first_delay, self.config.interval / 3))
        if utcnow() + FIRST_LOOK_SLACK >= turn:
            return False
        self._saves.append({"id": row.id, "progress_json": row.progress_json or progress.model_dump_json(),
                            "last_error": row.last_error, "next_poll_at": turn})
        return True

    async def poll(self, row: AppRequest) -> bool:
        """Poll one request; False when its first look was put off, without a cloud call."""
        if self._first_look_can_wait(row):
            return False
        started = time.time()
        try:
            # An order decides payment; a job in the same answer shows the servers being built once it is paid.
            if row.order_id and not (row.job_id and Progress.of(row).order_paid):
                await self._poll_order(row)
            elif row.job_id:
                await self._poll_job(row, Progress.of(row))
            else:
                await self._finish(row, State.FAILED, "The cloud returned neither a job nor an order to follow.", [])
        except CloudError as error:
            # A refusal that will not pass by itself (credentials, permissions, the account id) is said once
            # in the thread; throttling and outages only slow the polling down.
            passing = error.retryable_read or (isinstance(error, AccountIdUnavailable) and error.transient)
            await self._back_off(row, describe(error), needs_person=not passing)
        except Exception as error:
            log.exception("polling %s failed", row.id)
            await self._back_off(row, f"unexpected {type(error).__name__}")
        finally:
            if self.on_poll is not None:
                self.on_poll(row.id, self.worker_id, started, time.time())
        return True

    async def _back_off(self, row: AppRequest, sentence: str, *, needs_person: bool = False) -> None:
        progress = Progress.of(row)
        progress.cloud_errors += 1
        factor = min(2 ** progress.cloud_errors, MAX_BACKOFF_FACTOR)
        tell = needs_person and not progress.error_reported
        progress.error_reported = progress.error_reported or needs_person
        self._saves.append({"id": row.id, "progress_json": progress.model_dump_json(), "last_error": sentence,
                            "next_poll_at": utcnow() + self.config.interval * factor})
        if tell:
            self._news.append((row.id, Event.TROUBLE))

    async def _job_view(self, job_id: str, first: bool) -> JobView:
        ws = self.cloud.workspace
        if not first:
            try:
                detail = await ws.show_job_detail(job_id)
                subs = tuple(SubJob(s.status or UNKNOWN, s.job_resource_info.resource_id if s.job_resource_info else None,
                                    _error(s.error_code, s.error_message)) for s in detail.sub_jobs)
                return JobView(detail.status, subs, None, None)
            except CloudError as error:
                if error.retryable_read:
                    raise
                log.warning("ShowJobDetail for %s failed (%s); using ShowJob", job_id, describe(error))
        # ShowJob (v1) on the first poll: it also says when the job is expected to end.
        job = await ws.show_job(job_id)
        subs = tuple(SubJob(UNKNOWN if s.job_status is None else V1_STATUS.get(s.job_status, "RUNNING"),
                            next((e.resource_id for e in s.entities if e.resource_id), None),
                            _error(s.execute_code, s.execute_message)) for s in job.sub_jobs)
        return JobView(V1_STATUS.get(job.job_status, "RUNNING"), subs, parse_cloud_time(job.expected_end_time),
                       _error(job.execute_code, job.execute_message))

    async def _poll_job(self, row: AppRequest, progress: Progress, before: Progress | None = None) -> None:
        assert row.job_id is not None
        view = await self._job_view(row.job_id, first=not progress.expected_end)
        before = before or progress.model_copy()
        progress.polls += 1
        progress.cloud_errors = 0
        progress.error_reported = False
        progress.total = max(len(view.sub_jobs), row.subscription_num)
        progress.ready = sum(1 for s in view.sub_jobs if s.status == SUCCESS)
        progress.failed = sum(1 for s in view.sub_jobs if s.status in FAILED_STATES)
        progress.expected_end = view.expected_end or progress.expected_end
        progress.failures = [s.error for s in view.sub_jobs if s.status in FAILED_STATES and s.error][:5]
        ready_ids = [s.server_id for s in view.sub_jobs if s.status == SUCCESS and s.server_id]
        ended = view.status in FAILED_STATES or (view.status == SUCCESS and progress.failed)
        if view.status == SUCCESS and not progress.failed:
            await self._finish(row, State.SUCCEEDED, None, ready_ids, progress)
        elif ended and progress.ready:  # some servers are there: partly done, not a red "failed"
            missing = progress.total - progress.ready
            reasons = "; ".join(dict.fromkeys(progress.failures)) or view.error or "the cloud gave no reason"
            await self._finish(row, State.PARTLY_DONE, f"{missing} failed: {reasons}. The cloud refunds failed "
                               "creations.", ready_ids, progress)
        elif ended:
            await self._finish(row, State.FAILED, self._job_failure(progress, view), ready_ids, progress)
        else:
            await self._continue(row, progress, before, State.PROVISIONING)

    @staticmethod
    def _job_failure(progress: Progress, view: JobView) -> str:
        reasons = "; ".join(dict.fromkeys(progress.failures)) or view.error or "the cloud gave no reason"
        if progress.ready:
            head = f"The cloud could not create {progress.failed or progress.total - progress.ready} of " \
                   f"{progress.total} servers ({progress.ready} were created)"
        else:
            head = "The cloud could not create the servers"
        return f"{head}: {reasons}. Failed creations are refunded by the cloud."

    async def _poll_order(self, row: AppRequest) -> None:
        assert row.order_id is not None
        details = await self.cloud.billing.show_order(row.order_id)
        info = details.order_info
        progress = Progress.of(row)
        before = progress.model_copy()
        progress.polls += 1
        progress.cloud_errors = 0
        progress.error_reported = False
        _read_order(progress, info)
        if info.status == ORDER_CANCELLED:
            await self._finish(row, State.FAILED, "The order was cancelled (in the Billing Center, or because it was "
                                                  "not paid in time), so no servers were created.", [], progress)
        elif info.status == ORDER_PENDING_PAYMENT:
            deadline = progress.payment_deadline
            if deadline is not None and utcnow() > deadline:
                await self._finish(row, State.FAILED, f"The order was not paid by its deadline "
                                   f"({deadline:%Y-%m-%d %H:%M UTC}), so no servers were created.", [], progress)
            else:
                # What Pay would charge, read before the prompt shows it (and again at Pay).
                await read_discounts(self.cloud.billing, row.order_id, progress)
                if self._proxy_reminder_due(progress):
                    progress.proxy_reminded = True
                    self._news.append((row.id, Event.PAYMENT_REMIND))
                await self._continue(row, progress, before, State.AWAITING_PAYMENT, Event.PAYMENT_DUE)
        elif info.status in ORDER_PAID_STATES:
            if progress.proxy_payment_at is not None and not progress.order_paid and row.state == State.AWAITING_PAYMENT:
                progress.order_paid = True  # the master account paid the proxy order: now it is paid
                await self._continue(row, progress, before, State.PROVISIONING, Event.PAID)
                return
            progress.order_paid = True
            if row.job_id:
                await self._poll_job(row, progress, before)  # the job builds what the order bought
            elif info.status == ORDER_COMPLETED:
                await self._order_completed(row, progress, before)
            else:
                await self._continue(row, progress, before, State.PROVISIONING)
        else:  # pending review, to be confirmed, …: the cloud is still working on it
            await self._continue(row, progress, before)

    @staticmethod
    def _proxy_reminder_due(progress: Progress) -> bool:
        """A payment waiting for the master account: the approvers are reminded once, a day before the order
        lapses (at once when less is left)."""
        deadline = progress.payment_deadline
        return (progress.proxy_payment_at is not None and not progress.proxy_reminded and deadline is not None
                and deadline - utcnow() <= PROXY_REMIND_BEFORE)

    async def _order_completed(self, row: AppRequest, progress: Progress, before: Progress) -> None:
        assert row.order_id is not None
        resources = await self.cloud.billing.list_order_resources(row.order_id)
        ids = [r.resource_id for r in resources if r.is_main_resource in (None, 1)]
        progress.ready, ordered = len(ids), row.subscription_num
        if len(ids) >= ordered:
            await self._finish(row, State.SUCCEEDED, None, ids, progress)
            return
        # Servers that fail to open are unsubscribed by billing and the order still completes: wait a while for
        # the rest to be listed, then say how many opened.
        progress.order_completed_at = progress.order_completed_at or utcnow()
        if utcnow() - progress.order_completed_at < self.config.resources_grace:
            await self._continue(row, progress, before, State.PROVISIONING)
            return
        missing = ordered - len(ids)
        them = "it" if missing == 1 else "them"
        if ids:
            await self._finish(row, State.PARTLY_DONE, f"{missing} failed to open and billing refunds {them}.", ids,
                               progress)
        else:
            await self._finish(row, State.FAILED, f"The order completed, but none of its {ordered} servers opened "
                               f"within {_minutes(self.config.resources_grace)}; billing refunds what fails to "
                               "open.", [], progress)

    async def _continue(self, row: AppRequest, progress: Progress, before: Progress, target: State | None = None,
                        event: Event = Event.PROGRESS) -> None:
        """Keep following the request; move it to `target` first when it is not there yet."""
        next_poll = self.config.pace.next_poll(utcnow(), self._load, target or State(row.state), progress.expected_end)
        changes: dict[str, Any] = {"progress_json": progress.model_dump_json(), "last_error": None,
                                   "next_poll_at": next_poll, "lease_owner": None, "lease_until": None}
        if target is not None and target != row.state:
            expected = frozenset({State.SUBMITTED} if target == State.AWAITING_PAYMENT
                                 else {State.SUBMITTED, State.AWAITING_PAYMENT})
            self._moves.append(Move(row.id, expected, target, target.value, changes, news=event))
            return
        self._saves.append({"id": row.id, "progress_json": changes["progress_json"], "last_error": None,
                            "next_poll_at": changes["next_poll_at"]})
        if event is Event.PROGRESS and not progress.same_view(before):
            self._news.append((row.id, event))
        elif event is Event.PAYMENT_DUE and not progress.same_view(before):
            self._news.append((row.id, Event.PAYMENT_CHANGED))  # what Pay charges changed: redraw its prompt

    async def _finish(self, row: AppRequest, state: State, sentence: str | None, server_ids: list[str],
                      progress: Progress | None = None) -> None:
        changes: dict[str, Any] = {"server_ids_json": json.dumps(server_ids), "outcome_sentence": sentence,
                                   "finished_at": utcnow(), "next_poll_at": None, "lease_owner": None,
                                   "lease_until": None, "last_error": None}
        if progress is not None:
            changes["progress_json"] = progress.model_dump_json()
        self._moves.append(Move(row.id, frozenset(IN_FLIGHT_STATES), state, state.value, changes,
                                detail=sentence or f"{len(server_ids)} server(s): {', '.join(server_ids)}",
                                news=Event.FINISHED))


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"


def _read_order(progress: Progress, info: OrderInfo) -> None:
    """What the order itself says: its status, the exact amount to pay and by when."""
    progress.order_status = info.status
    progress.payment_deadline = parse_cloud_time(info.pending_payment_end_time) or progress.payment_deadline
    if info.amount_after_discount is not None:
        progress.order_amount = info.amount_after_discount
    if info.official_amount is not None:
        progress.order_official_amount = info.official_amount
    progress.order_currency = info.currency or progress.order_currency
