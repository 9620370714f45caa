"""Finding what a create made when its answer never came, and linking it only when it is certainly ours.

CreateAppServers has no idempotency key, and an account has other people and other services ordering at
the same second: a new order or job in the same minute is no evidence. A candidate is ours only when
it matches what was asked: for an order, a new Workspace purchase whose line items have the request's
period and number of servers (in a combined transaction, each Workspace order in `sub_order_infos` is
such a candidate, and the transaction itself is not); for a job, one whose servers are in the request's
group and whose sub-jobs number the servers asked for. Exactly one fit is linked; anything else goes to
an approver.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from bot.cloud.errors import CloudError
from bot.cloud.models import (
    WORKSPACE_SERVICE_TYPE,
    AppServer,
    CustomerOrder,
    JobDetailV2,
    OrderDetails,
    SubOrder,
    parse_cloud_time,
)
from bot.money import money
from bot.spec import CreateAppServersRequest, CreateAppServersResponse, SpecError, parse_spec
from bot.store.models import AppRequest
from bot.store.repository import RequestStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# How far before the recorded submit time something may have been created (clock skew between us and the
# cloud), and after the create's lease ran out (the cloud may still have been working on our call).
LOOKUP_SKEW = timedelta(minutes=2)
MAX_CANDIDATES = 5  # a card can offer this many; more means the window is busy and a person must look anyway
ORDER_WORDS = {3: "paid, processing", 4: "cancelled", 5: "paid", 6: "unpaid"}


class ReconcilePort(Protocol):
    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]: ...
    async def list_new_workspace_orders(self, begin: datetime, end: datetime) -> list[CustomerOrder]: ...
    async def show_order(self, order_id: str) -> OrderDetails: ...
    async def show_job_detail(self, job_id: str) -> JobDetailV2: ...


class Candidate(BaseModel):
    """Something in the cloud that may be what our create made."""

    kind: Literal["order", "job"]
    id: str
    created_at: datetime | None = None
    detail: str  # what it is, in words, for the approver who decides
    fits: bool  # it matches what was asked (service, period, count / group, count)
    amount: Decimal | None = None  # an order's amount as billing states it
    currency: str | None = None


KEY_CHARS = 12  # as many hex characters of a candidate set's hash as a button carries


class Candidates(BaseModel):
    """The candidates found last, and the ids an approver ruled out (never offered or linked again)."""

    items: list[Candidate] = Field(default_factory=list)
    ruled_out: list[str] = Field(default_factory=list)
    # The end of the window in which the unanswered create could have been acted on: Send again is refused
    # before it, since an order may still show up late.
    resend_from: datetime | None = None
    # The cloud answered this create (with something another request holds): it must never be sent again.
    create_answered: bool = False
    # A link the bot or an approver tried and the store refused (one order or job, one request), in words.
    link_refused: str | None = None

    @classmethod
    def of(cls, request: AppRequest) -> Candidates:
        return cls.model_validate_json(request.candidates_json) if request.candidates_json else cls()

    def find(self, candidate_id: str) -> Candidate | None:
        return next((c for c in self.items if c.id == candidate_id), None)

    def key(self) -> str:
        """What a choice is bound to: the set of candidates shown, order aside. A click whose key is not the
        request's now was made on something else than what it holds."""
        listed = "\n".join(sorted(f"{c.kind}:{c.id}" for c in self.items))
        return hashlib.sha256(listed.encode()).hexdigest()[:KEY_CHARS]


@dataclass(frozen=True)
class Lookup:
    """What the bot found: `found` means linked with certainty; `candidates` wait for an approver."""

    found: bool
    job_id: str | None = None
    order_id: str | None = None
    server_ids: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    checked: bool = True  # False when the cloud could not be asked

    @property
    def needs_choice(self) -> bool:
        return not self.found and bool(self.candidates)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "an unknown time"


def order_fits(details: OrderDetails, spec: CreateAppServersRequest) -> bool:
    """A line item of Workspace with the request's period and number of servers."""
    extend = spec.create_server_extend_param
    if extend is None:
        return False
    return any(
        item.service_type_code == WORKSPACE_SERVICE_TYPE and item.period_type == extend.period_type
        and item.period_num == extend.period_num and item.subscription_num == spec.subscription_num
        for item in details.order_line_items
    )


def _workspace_orders(parent: SubOrder, subs: list[SubOrder]) -> list[SubOrder]:
    """A combined transaction's orders that can be a Workspace purchase, dated as the transaction when undated."""
    return [sub.model_copy(update={"create_time": sub.create_time or parent.create_time}) for sub in subs
            if sub.service_type_code in (None, WORKSPACE_SERVICE_TYPE)]


def plain_orders(orders: list[CustomerOrder]) -> list[SubOrder]:
    """Each listed order, with a combined transaction replaced by its Workspace orders."""
    plain: list[SubOrder] = []
    for order in orders:
        plain.extend(_workspace_orders(order, order.sub_order_infos) if order.sub_order_infos else [order])
    return list({o.order_id: o for o in plain}.values())


def describe_order(order: SubOrder, details: OrderDetails | None) -> str:
    parts = [f"order {order.order_id}"]
    if details is not None:
        for item in details.order_line_items[:2]:
            unit = {2: "month", 3: "year"}.get(item.period_type or 0, "period")
            count = item.subscription_num if item.subscription_num is not None else "?"
            num = item.period_num if item.period_num is not None else "?"
            plural = "" if num == 1 else "s"
            parts.append(f"{count} × {item.product_id or item.service_type_code or 'item'}, {num} {unit}{plural}")  # noqa: RUF001
        info = details.order_info
        if info.amount_after_discount is not None:
            parts.append(money(info.amount_after_discount, info.currency))
        parts.append(ORDER_WORDS.get(info.status, f"status {info.status}"))
    parts.append(f"placed {_when(parse_cloud_time(order.create_time))}")
    return " · ".join(parts)


@dataclass
class Reconciler:
    store: RequestStore
    cloud: ReconcilePort
    submit_lease: timedelta

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def window(self, row: AppRequest) -> tuple[datetime, datetime]:
        """When our create could have been acted on: from its start (less clock skew) to the end of its lease."""
        start = row.submit_started_at or row.updated_at
        return start - LOOKUP_SKEW, start + self.submit_lease + LOOKUP_SKEW

    async def look(self, row: AppRequest) -> Lookup:
        try:
            spec = parse_spec(json.loads(row.spec_json))
        except (SpecError, ValueError):
            return Lookup(False, checked=False)
        ruled_out = set(Candidates.of(row).ruled_out)
        try:
            if spec.is_prepaid:
                return await self._find_order(row, spec, ruled_out)
            return await self._find_job(row, spec, ruled_out)
        except CloudError:
            raise
        except Exception:  # an unexpected answer: say nothing was checked rather than guess
            log.exception("looking for what %s created failed", row.id)
            return Lookup(False, checked=False)

    async def _open_orders(self, row: AppRequest, orders: list[CustomerOrder],
                           ruled_out: set[str]) -> list[tuple[SubOrder, OrderDetails]]:
        """The orders that may be ours (a combined transaction's Workspace orders in its place), with details."""
        plain = plain_orders(orders)
        taken = await self._db(self.store.linked_elsewhere, row.id, order_ids=[o.order_id for o in plain])
        open_orders = [o for o in plain if o.order_id not in taken and o.order_id not in ruled_out]
        open_orders = open_orders[:MAX_CANDIDATES * 4]
        details = await asyncio.gather(*(self.cloud.show_order(o.order_id) for o in open_orders))
        return list(zip(open_orders, details, strict=True))

    async def _find_order(self, row: AppRequest, spec: CreateAppServersRequest, ruled_out: set[str]) -> Lookup:
        begin, end = self.window(row)
        orders = await self.cloud.list_new_workspace_orders(begin, end)
        read = await self._open_orders(row, orders, ruled_out)
        if not read:
            return Lookup(False)
        fitting = [(o, d) for o, d in read if order_fits(d, spec)]
        if len(fitting) == 1 and not await self._others_in_doubt(row, begin, end) \
                and not await self._db(self.store.linked_elsewhere, row.id, order_ids=[fitting[0][0].order_id]):
            order, _ = fitting[0]
            servers = await self.cloud.list_servers(server_group_id=row.server_group_id)
            return Lookup(True, order_id=order.order_id,
                          server_ids=tuple(s.id for s in servers if s.order_id == order.order_id))
        shown = fitting or read
        return Lookup(False, candidates=tuple(
            Candidate(kind="order", id=o.order_id, created_at=parse_cloud_time(o.create_time),
                      detail=describe_order(o, d), fits=bool(fitting), amount=d.order_info.amount_after_discount,
                      currency=d.order_info.currency)
            for o, d in shown[:MAX_CANDIDATES]))

    async def _find_job(self, row: AppRequest, spec: CreateAppServersRequest, ruled_out: set[str]) -> Lookup:
        begin, end = self.window(row)
        servers = await self.cloud.list_servers(server_group_id=row.server_group_id)
        fresh = [s for s in servers if s.job_id and (created := parse_cloud_time(s.create_time))
                 and begin <= created <= end]
        by_job: dict[str, list[AppServer]] = {}
        for server in fresh:
            if server.job_id and server.job_id not in ruled_out:
                by_job.setdefault(server.job_id, []).append(server)
        taken = await self._db(self.store.linked_elsewhere, row.id, job_ids=sorted(by_job))
        jobs = {job_id: members for job_id, members in by_job.items() if job_id not in taken}
        if not jobs:
            return Lookup(False)
        fits: list[tuple[str, tuple[str, ...]]] = []
        for job_id, members in jobs.items():
            ids = await self._job_servers(job_id, members, spec.subscription_num)
            if ids is not None:
                fits.append((job_id, ids))
        if len(fits) == 1 and not await self._others_in_doubt(row, begin, end, group=True) \
                and not await self._db(self.store.linked_elsewhere, row.id, job_ids=[fits[0][0]]):
            job_id, ids = fits[0]
            return Lookup(True, job_id=job_id, server_ids=ids)
        fitting_ids = {job_id for job_id, _ in fits}
        shown = [(job_id, jobs[job_id]) for job_id in (fitting_ids or jobs)]
        return Lookup(False, candidates=tuple(
            Candidate(kind="job", id=job_id, fits=bool(fitting_ids),
                      created_at=min((t for s in members if (t := parse_cloud_time(s.create_time))), default=None),
                      detail=f"job {job_id} · {len(members)} server(s) in the group: "
                             f"{', '.join(s.name or s.id for s in members[:5])}")
            for job_id, members in shown[:MAX_CANDIDATES]))

    async def _others_in_doubt(self, row: AppRequest, begin: datetime, end: datetime, *, group: bool = False) -> bool:
        """Another of our creates, unanswered too, could have made the one fit: ask a person. Any create whose own
        window (its start, less skew, to its lease's end) meets ours counts. Its answer may be recorded while we
        look, so the one fit is checked again after this (is it linked now?): a create answered before this
        check shows there, one still unanswered shows here."""
        return bool(await self._db(self.store.creates_in_doubt, row.id, begin - self.submit_lease - LOOKUP_SKEW,
                                   end + LOOKUP_SKEW, charging_mode=row.charging_mode,
                                   server_group_id=row.server_group_id if group else None))

    async def _job_servers(self, job_id: str, members: list[AppServer], count: int) -> tuple[str, ...] | None:
        """The job's servers when the job is a create of exactly `count` servers in our group, else None."""
        try:
            detail = await self.cloud.show_job_detail(job_id)
        except CloudError as error:
            if error.retryable_read:
                raise
            # ShowJobDetail is not published everywhere: the servers the group shows are all we know.
            return tuple(s.id for s in members) if len(members) == count else None
        if detail.job_type not in (None, "CREATE_SERVER"):
            return None
        total = detail.sub_jobs_total if detail.sub_jobs_total is not None else len(detail.sub_jobs)
        if total != count:
            return None
        # Our members are this group's servers of this job, so the job built in our group; its sub-jobs name
        # every server it made (rolled-back ones included), the group only those that exist.
        resources = tuple(s.job_resource_info.resource_id for s in detail.sub_jobs
                          if s.job_resource_info and s.job_resource_info.resource_id)
        return resources or tuple(s.id for s in members)


def late_answer_ids(response: CreateAppServersResponse) -> str:
    return ", ".join(f"{k} {v}" for k, v in (("job", response.job_id), ("order", response.order_id)) if v)
