"""The use cases: submit, approve, reject, cancel, expire, and send approved requests to the cloud.

No Slack and no HTTP in here: the cloud and the approver directory are ports, the store is the
database. Every decision is a compare-and-set in the store, so double clicks, Slack retries, restarts
and several replicas cannot decide twice or order twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from bot.cloud.client import Cloud
from bot.cloud.discounts import DiscountRef
from bot.cloud.errors import CloudError, describe
from bot.cloud.models import (
    ORDER_COMPLETED,
    ORDER_PENDING_PAYMENT,
    ORDER_PROCESSING,
    AppServer,
    CustomerOrder,
    JobDetailV2,
    OrderDetails,
    OrderDiscount,
)
from bot.cloud.quote import PriceQuote
from bot.lifecycle import State
from bot.notify import Event
from bot.payment import charge_words, discount_words, read_discounts, same_charge
from bot.policy import AutoApproved, Guardrails, Refusal, approval_rule, daily_refusal, pending_refusal
from bot.price import quote_of
from bot.progress import Progress
from bot.reconcile import Candidates, Lookup, Reconciler, late_answer_ids
from bot.spec import CreateAppServersRequest, CreateAppServersResponse, SpecError, parse_spec
from bot.store.inline import WouldWait
from bot.store.models import AppRequest, utcnow
from bot.store.repository import (
    AlreadyLinked,
    Earlier,
    NewRequest,
    OverDailyCap,
    OverPendingCap,
    Recheck,
    RequestStore,
    Transition,
    server_ids,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_REQUEUES = 5
# An unknown outcome is announced with what the lookup found; without a lookup, after this long anyway.
NEWS_WAITS_FOR_LOOKUP = timedelta(seconds=60)


class CloudPort(Protocol):
    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse: ...
    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]: ...
    async def list_new_workspace_orders(self, begin: datetime, end: datetime) -> list[CustomerOrder]: ...
    async def show_order(self, order_id: str) -> OrderDetails: ...
    async def show_job_detail(self, job_id: str) -> JobDetailV2: ...
    async def list_order_discounts(self, order_id: str) -> list[OrderDiscount]: ...
    async def pay_order(self, order_id: str, discount: DiscountRef | None = None) -> None: ...


class ApproverDirectory(Protocol):
    async def group_members(self, group_id: str) -> set[str]: ...


class Refused(Exception):
    """A guardrail refused the request as it was stored (a check that only the store's transaction can make)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.sentence)
        self.refusal = refusal


class DirectoryUnavailable(Exception):
    """A user group's members could not be read (and no fresh copy is cached): nobody is granted anything."""


class CachedDirectory:
    """Caches user-group members for a while. A failing lookup fails closed: an expired copy is not used."""

    def __init__(self, inner: ApproverDirectory, ttl_seconds: float = 300.0, max_groups: int = 256) -> None:
        self._inner = inner
        self._ttl = ttl_seconds
        self._max_groups = max_groups  # the configured groups; a bound all the same
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def group_members(self, group_id: str) -> set[str]:
        cached = self._cache.get(group_id)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        try:
            members = await self._inner.group_members(group_id)
        except Exception as error:  # the directory is another service
            self._cache.pop(group_id, None)
            log.warning("could not read the members of user group %s: %s", group_id, type(error).__name__)
            raise DirectoryUnavailable(f"Slack did not tell who is in user group {group_id}.") from error
        self._cache.pop(group_id, None)
        self._cache[group_id] = (time.monotonic(), members)
        while len(self._cache) > self._max_groups:
            self._cache.pop(next(iter(self._cache)))
        return members


@dataclass(frozen=True)
class Policy:
    approvers: frozenset[str] = frozenset()
    postpaid_requires_approval: bool = False
    approval_ttl: timedelta = timedelta(hours=24)
    remind_after: timedelta = timedelta(minutes=60)  # then again as long after, up to `max_reminders` in all
    max_reminders: int = 3
    # Without APPROVAL_CHANNEL a round's reminder goes to each channel requests were asked in, listing its own.
    remind_per_channel: bool = False
    submit_lease: timedelta = timedelta(seconds=90)
    first_poll_delay: timedelta = timedelta(seconds=10)
    # After a payment with no answer, how long the billing service gets before "still unpaid" is believed.
    payment_settles: timedelta = timedelta(minutes=2)
    guardrails: Guardrails = field(default_factory=Guardrails)


class Outcome(StrEnum):
    DONE = "done"
    NOT_FOUND = "not_found"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"
    NOT_REQUESTER = "not_requester"
    ALREADY_DECIDED = "already_decided"
    WRONG_STATE = "wrong_state"
    EXPIRED = "expired"
    REASON_REQUIRED = "reason_required"
    SERVERS_FOUND = "servers_found"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_UNKNOWN = "payment_unknown"
    NOT_A_CANDIDATE = "not_a_candidate"
    CHECK_FAILED = "check_failed"
    NOT_AS_SHOWN = "not_as_shown"
    TOO_EARLY = "too_early"
    LINK_REFUSED = "link_refused"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    sentence: str
    request: AppRequest | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DONE


@dataclass(frozen=True)
class SubmitResult:
    request: AppRequest
    created: bool


def tally(earlier: list[Earlier]) -> AutoApproved:
    """What a person had approved without an approver, from the rows the store read: servers and the monthly
    estimates stored with them (a request with no price stored counts as one whose cost is unknown)."""
    priced = [quote.monthly_estimate() for e in earlier if (quote := _quote(e.price_json)) is not None]
    known = [m for m in priced if m is not None]
    return AutoApproved(requests=len(earlier), servers=sum(e.servers for e in earlier),
                        monthly_cost=sum(known, Decimal(0)), unpriced=len(earlier) - len(known))


def _quote(price_json: str | None) -> PriceQuote | None:
    if not price_json:
        return None
    try:
        return PriceQuote.model_validate_json(price_json)
    except ValueError:  # a price stored by another version: unknown, as no price is
        return None


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


def _to_second(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _candidates_changed(request_id: str, shown: str | None) -> str:
    if shown is None:
        return (f"This button does not say which candidates it was for (it is from an older card), so nothing was "
                f"done. Choose on {request_id} from its card or the app's Home tab as they stand now.")
    return (f"What the cloud shows for {request_id} changed since this card listed it, so nothing was done. "
            "Look at its card or the app's Home tab as they stand now, and choose again.")


def _link_refused_sentence(request_id: str, owners: dict[str, str]) -> str:
    held = "; ".join(f"{linked} is already linked to {owner}" for linked, owner in owners.items())
    return f"{held}. An order or a job belongs to one request at most, so it was not linked to {request_id}."


@dataclass
class Workflow:
    store: RequestStore
    cloud: CloudPort
    directory: ApproverDirectory
    policy: Policy = field(default_factory=Policy)
    worker_id: str = field(default_factory=default_worker_id)

    def __post_init__(self) -> None:
        self.reconciler = Reconciler(self.store, self.cloud, self.policy.submit_lease)

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The store is synchronous (SQLAlchemy); keep it off the event loop.
        return await asyncio.to_thread(fn, *args, **kwargs)

    # Approvers ---------------------------------------------------------------------------------

    async def is_approver(self, user_id: str) -> bool:
        """For what is shown (lists, App Home): a directory that cannot answer shows nothing (fails closed)."""
        try:
            return await self.is_listed(user_id, self.policy.approvers)
        except DirectoryUnavailable:
            return False

    async def is_listed(self, user_id: str, ids: frozenset[str]) -> bool:
        """The user is one of `ids`, or in one of its user groups; `DirectoryUnavailable` if that cannot be told."""
        if user_id in ids:
            return True
        groups = [g for g in ids if g.startswith("S")]
        memberships: list[set[str]] = await asyncio.gather(*(self.directory.group_members(g) for g in groups))
        return any(user_id in members for members in memberships)

    # Submitting a request ----------------------------------------------------------------------

    def approval_rule(self, spec: CreateAppServersRequest, price: PriceQuote | None = None,
                      earlier: AutoApproved | None = None) -> str | None:
        """Why a person decides this request (None: it goes out at once). `earlier`: what the requester had
        approved without an approver in the last day; None counts the request alone."""
        return approval_rule(self.policy.guardrails, prepaid=spec.is_prepaid, servers=spec.subscription_num,
                             postpaid_requires_approval=self.policy.postpaid_requires_approval,
                             monthly_cost=price.monthly_estimate() if price else None, earlier=earlier)

    def needs_approval(self, spec: CreateAppServersRequest, price: PriceQuote | None = None) -> bool:
        return self.approval_rule(spec, price) is not None

    async def approval_rule_for(self, spec: CreateAppServersRequest, price: PriceQuote | None,
                                requester_id: str) -> str | None:
        """`approval_rule` with what the requester had approved without an approver in the last day (read only
        when the request alone would go out at once). The form asks for a reason when this says a person decides;
        the store's transaction judges again."""
        rule = self.approval_rule(spec, price)
        if rule is not None:
            return rule
        earlier = await self._db(self.store.approved_without_approver, requester_id, utcnow() - timedelta(days=1))
        return self.approval_rule(spec, price, tally(earlier))

    async def pending_refusal(self, requester_id: str) -> Refusal | None:
        """Refuses one more request that would wait when the person has MAX_PENDING_PER_USER waiting already."""
        waiting = await self._db(self.store.waiting_for_a_person, requester_id)
        return pending_refusal(self.policy.guardrails, waiting=waiting)

    async def submit(
        self,
        spec: CreateAppServersRequest,
        requester_id: str,
        *,
        channel_id: str | None = None,
        thread_ts: str | None = None,
        team_id: str | None = None,
        reason: str | None = None,
        progress_json: str | None = None,
        price: PriceQuote | None = None,
    ) -> AppRequest:
        """Store a validated request: waiting for approval, or approved at once and queued. The price quoted
        is stored with it and in its audit log: what the approver saw. The person's guardrails are judged again
        in the storing transaction (`Refused`), and a request within the auto-approval limits alone waits for an
        approver when what they had approved without one in the last day takes it past them."""
        base = Progress.model_validate_json(progress_json) if progress_json else Progress(total=spec.subscription_num)

        def request(rule: str | None) -> NewRequest:
            approval = rule is not None
            return NewRequest(
                requester_id=requester_id, spec_json=spec.canonical_json(), spec_hash=spec.spec_hash(),
                charging_mode=spec.charging_mode, subscription_num=spec.subscription_num,
                server_group_id=spec.server_group_id, channel_id=channel_id, thread_ts=thread_ts, team_id=team_id,
                reason=reason, expires_at=utcnow() + self.policy.approval_ttl if approval else None,
                remind_at=utcnow() + self.policy.remind_after if approval else None,
                # The rule goes with the request, so its card says why a person decides it.
                progress_json=base.model_copy(update={"approval_rule": rule}).model_dump_json(),
                decided_at=None if approval else utcnow(),
                price_json=price.model_dump_json() if price else None,
                price_summary=price.summary() if price else None,
            )

        rule = self.approval_rule(spec, price)
        guardrails = self.policy.guardrails
        # One transaction: the row, its "created" audit row and, without a human decision, "auto_approved".
        auto = (f"pay-per-use, {spec.subscription_num} server(s), within AUTO_APPROVE_MAX_SERVERS "
                f"({guardrails.auto_approve_max_servers}) with what was approved without an approver in the last 24 hours")
        if (limit := guardrails.auto_approve_max_monthly_cost) is not None and price is not None:
            auto += f", an estimated {price.monthly_estimate()} a month within AUTO_APPROVE_MAX_MONTHLY_COST ({limit})"
        recheck = None if rule is not None else Recheck(
            rule=lambda earlier: self.approval_rule(spec, price, tally(earlier)), held=request)
        try:
            return await self._db(self.store.create, request(rule),
                                  State.PENDING_APPROVAL if rule is not None else State.APPROVED, requester_id,
                                  None if rule is not None else auto, guardrails.max_servers_per_user_per_day,
                                  pending_cap=guardrails.max_pending_per_user, recheck=recheck)
        except OverDailyCap as over:
            refusal = daily_refusal(guardrails, already=over.already, servers=spec.subscription_num)
            raise Refused(refusal or Refusal("MAX_SERVERS_PER_USER_PER_DAY", str(over))) from None
        except OverPendingCap as over:
            refusal = pending_refusal(guardrails, waiting=over.waiting)
            raise Refused(refusal or Refusal("MAX_PENDING_PER_USER", str(over))) from None

    # Deciding ----------------------------------------------------------------------------------

    async def _refuse(self, request_id: str, user_id: str, action: str, outcome: Outcome, sentence: str,
                      row: AppRequest | None) -> Decision:
        if row is not None:
            await self.audit(request_id, user_id, action, allowed=False, detail=f"{outcome.value}: {sentence}")
        return Decision(outcome, sentence, row)

    async def get(self, request_id: str) -> AppRequest | None:
        """A request, read at once when the database can answer without waiting (the usual case), else on a
        thread."""
        try:
            return self.store.get_now(request_id)
        except WouldWait:
            return await self._db(self.store.get, request_id)

    async def audit(self, request_id: str, actor: str, action: str, *, allowed: bool, detail: str | None = None) -> None:
        """An attempt that changed nothing, in the request's audit log: at once when the database can take it
        (the usual case), else on a thread."""
        if not self.store.audit_now(request_id, actor, action, allowed=allowed, detail=detail):
            await self._db(self.store.audit, request_id, actor, action, allowed=allowed, detail=detail)

    async def check_decider(self, request_id: str, user_id: str, action: str, *,
                            own: str = "You cannot decide on your own request; another approver has to.",
                            not_approver: str = "Only the configured approvers can decide on requests.",
                            known: AppRequest | None = None) -> Decision | AppRequest:
        """The request, when `user_id` may act on it; otherwise the audited refusal (`own` and `not_approver`
        say it in the words of the action). `known` is the request as the caller just read it (the decision
        itself is a conditional write, so a read a moment old decides nothing)."""
        row = known if known is not None and known.id == request_id else await self.get(request_id)
        if row is None:
            return Decision(Outcome.NOT_FOUND, f"There is no request {request_id}.")
        if row.requester_id == user_id:
            return await self._refuse(request_id, user_id, action, Outcome.SELF_APPROVAL, own, row)
        try:
            approver = await self.is_listed(user_id, self.policy.approvers)
        except DirectoryUnavailable as unavailable:
            return await self._refuse(request_id, user_id, action, Outcome.CHECK_FAILED,
                                      f"I could not check that you are an approver: {unavailable} Nothing was done; "
                                      "try again in a minute.", row)
        if not approver:
            return await self._refuse(request_id, user_id, action, Outcome.NOT_APPROVER, not_approver, row)
        if row.state == State.PENDING_APPROVAL and row.expires_at and row.expires_at < utcnow():
            await self.expire(row)
            fresh = await self._db(self.store.get, request_id)
            return await self._refuse(request_id, user_id, action, Outcome.EXPIRED,
                                      f"Request {request_id} expired on {_when(row.expires_at)} without a decision.",
                                      fresh)
        return row

    def _lost_sentence(self, row: AppRequest) -> tuple[Outcome, str]:
        state = State(row.state)
        if state == State.EXPIRED:
            return Outcome.EXPIRED, f"Request {row.id} expired on {_when(row.expires_at)} without a decision."
        if state == State.CANCELLED:
            return Outcome.WRONG_STATE, f"Request {row.id} was cancelled by the requester."
        if row.decided_by:
            verb = "rejected" if state == State.REJECTED else "approved"
            return Outcome.ALREADY_DECIDED, f"<@{row.decided_by}> already {verb} {row.id} at {_when(row.decided_at)}."
        return Outcome.WRONG_STATE, f"Request {row.id} is not waiting for a decision (it is {state.value})."

    async def approve(self, request_id: str, user_id: str, known: AppRequest | None = None) -> Decision:
        checked = await self.check_decider(request_id, user_id, "approve", known=known)
        if isinstance(checked, Decision):
            return checked
        if checked.state != State.PENDING_APPROVAL:  # decided already (nothing moves back): no write to try
            return await self._decision_from(Transition(False, checked), request_id, user_id, "approve", "")
        now = utcnow()
        result = await self._db(
            self.store.transition, request_id, State.PENDING_APPROVAL, State.APPROVED,
            actor=user_id, action="approve", changes={"decided_by": user_id, "decided_at": now},
            detail=f"approved spec {checked.spec_hash}" + (f"; {price.summary()}" if (price := quote_of(checked)) else ""),
            news=Event.DECIDED,
        )
        return await self._decision_from(result, request_id, user_id, "approve",
                                          f"<@{user_id}> approved {request_id}.")

    async def reject(self, request_id: str, user_id: str, reason: str) -> Decision:
        if not reason or not reason.strip():
            return Decision(Outcome.REASON_REQUIRED, "Please give a reason for the rejection.")
        checked = await self.check_decider(request_id, user_id, "reject")
        if isinstance(checked, Decision):
            return checked
        if checked.state != State.PENDING_APPROVAL:
            return await self._decision_from(Transition(False, checked), request_id, user_id, "reject", "")
        result = await self._db(
            self.store.transition, request_id, State.PENDING_APPROVAL, State.REJECTED,
            actor=user_id, action="reject",
            changes={"decided_by": user_id, "decided_at": utcnow(), "decision_reason": reason.strip()[:2000],
                     "finished_at": utcnow()},
            detail=reason.strip()[:2000], news=Event.DECIDED,
        )
        return await self._decision_from(result, request_id, user_id, "reject",
                                          f"<@{user_id}> rejected {request_id}: {reason.strip()}")

    async def _decision_from(self, result: Transition | None, request_id: str, user_id: str, action: str,
                             sentence: str) -> Decision:
        if result is None:
            return Decision(Outcome.NOT_FOUND, f"There is no request {request_id}.")
        if result.won:
            return Decision(Outcome.DONE, sentence, result.request)
        outcome, lost = self._lost_sentence(result.request)
        return await self._refuse(request_id, user_id, action, outcome, lost, result.request)

    async def refuse_if_decided(self, row: AppRequest, user_id: str, action: str) -> Decision | None:
        """Who decided, audited, when the request no longer waits for a decision (before any form opens)."""
        if row.state == State.PENDING_APPROVAL:
            return None
        outcome, sentence = self._lost_sentence(row)
        return await self._refuse(row.id, user_id, action, outcome, sentence, row)

    async def cancel(self, request_id: str, user_id: str) -> Decision:
        row = await self._db(self.store.get, request_id)
        if row is None:
            return Decision(Outcome.NOT_FOUND, f"There is no request {request_id}.")
        if row.requester_id != user_id:
            return await self._refuse(request_id, user_id, "cancel", Outcome.NOT_REQUESTER,
                                      "Only the person who asked can cancel a request.", row)
        result = await self._db(
            self.store.transition, request_id, frozenset({State.PENDING_APPROVAL, State.APPROVED}), State.CANCELLED,
            actor=user_id, action="cancel", changes={"finished_at": utcnow()}, news=Event.FINISHED,
        )
        if result is not None and result.won:
            return Decision(Outcome.DONE, f"Request {request_id} is cancelled.", result.request)
        current = result.request if result else row
        return await self._refuse(request_id, user_id, "cancel", Outcome.WRONG_STATE,
                                  f"Request {request_id} can no longer be cancelled: it is {current.state}.", current)

    async def expire(self, row: AppRequest) -> bool:
        result = await self._db(
            self.store.transition, row.id, State.PENDING_APPROVAL, State.EXPIRED, actor="bot", action="expire",
            changes={"finished_at": utcnow()}, detail=f"no decision by {_when(row.expires_at)}", news=Event.FINISHED,
        )
        return bool(result and result.won)

    async def expire_due(self) -> list[AppRequest]:
        expired = []
        for row in await self._db(self.store.due_for_expiry):
            if await self.expire(row):
                fresh = await self._db(self.store.get, row.id)
                expired.append(fresh or row)
        return expired

    async def remind_due(self) -> int:
        """Queue the reminders that are due: a round for the approvers (one message listing what waits), the
        requester shortly before expiry."""
        warn_before = min(timedelta(hours=1), self.policy.approval_ttl / 4)
        return await self._db(self.store.queue_reminders, every=self.policy.remind_after,
                              most=self.policy.max_reminders, warn_before=warn_before,
                              per_channel=self.policy.remind_per_channel)

    # Sending to the cloud ----------------------------------------------------------------------

    async def submit_due(self, limit: int = 10) -> list[SubmitResult]:
        """The outbox worker: claim approved requests and call CreateAppServers once for each."""
        claimed = await self.claim_approved(limit)
        return list(await asyncio.gather(*(self.send(row) for row in claimed)))

    async def claim_approved(self, limit: int) -> list[AppRequest]:
        """Approved requests, moved to `submitting` and leased to this worker: each is sent once, by `send`."""
        return await self._db(self.store.claim_for_submit, self.worker_id, self.policy.submit_lease, limit)

    async def send(self, row: AppRequest) -> SubmitResult:
        """Call CreateAppServers for a request this worker claimed. Cancelled midway (a stop), the request
        stays leased in `submitting` and is recovered as after a crash once the lease runs out."""
        actor = f"worker:{self.worker_id}"
        try:
            spec = parse_spec(json.loads(row.spec_json))
        except (SpecError, ValueError) as invalid:
            refused = await self._finish(row, State.SUBMIT_FAILED, actor, "spec_invalid",
                                         f"The stored request is no longer valid, so nothing was ordered: {invalid}")
            return SubmitResult(refused, False)
        if spec.spec_hash() != row.spec_hash:
            # The stored body is not the one that was approved: refuse to order anything.
            refused = await self._finish(row, State.SUBMIT_FAILED, actor, "spec_mismatch",
                                         "The stored request no longer matches what was approved, so nothing was ordered.")
            return SubmitResult(refused, False)
        try:
            response = await self.cloud.create_app_servers(spec)
        except CloudError as error:
            return SubmitResult(await self._after_create_error(row, error, actor), False)
        except Exception as error:  # a bug or an unexpected answer: we cannot know what the cloud did
            log.exception("create for %s ended unexpectedly", row.id)
            return SubmitResult(await self._unknown_outcome(row, actor, f"unexpected {type(error).__name__}"), False)
        now = utcnow()
        changes = {"job_id": response.job_id, "order_id": response.order_id, "submitted_at": now,
                   "lease_owner": None, "lease_until": None, "next_poll_at": now + self.policy.first_poll_delay}
        try:
            result = await self._db(
                self.store.transition, row.id, frozenset({State.SUBMITTING, State.NEEDS_ATTENTION}), State.SUBMITTED,
                actor=actor, action="submitted", changes=changes, lease_owner=self.worker_id,
                detail=f"job {response.job_id}" if response.job_id else f"order {response.order_id}",
                news=Event.SUBMITTED,
            )
        except AlreadyLinked as held:
            return SubmitResult(await self._answer_held_elsewhere(row, held, actor), True)
        if result is None or not result.won:
            return SubmitResult(await self._link_late_answer(row, response, actor), True)
        return SubmitResult(result.request, True)

    async def _link_late_answer(self, row: AppRequest, response: CreateAppServersResponse, actor: str) -> AppRequest:
        """The create answered after this worker's lease ran out (the request was moved to needs_attention,
        and perhaps queued again by an approver): the answer is still ours, so link it. That also stops a
        resend that has not gone out yet."""
        now, request_id = utcnow(), row.id
        ids = late_answer_ids(response)
        changes = {"job_id": response.job_id, "order_id": response.order_id, "submitted_at": now,
                   "lease_owner": None, "lease_until": None, "next_poll_at": now, "lookup_found": True,
                   "outcome_sentence": None, "candidates_json": None}
        try:
            result = await self._db(
                self.store.transition, request_id, frozenset({State.NEEDS_ATTENTION, State.APPROVED}), State.SUBMITTED,
                actor=actor, action="late_create_answer_linked", changes=changes,
                detail=f"the create answered after its lease ran out: {ids}", news=Event.SUBMITTED,
            )
        except AlreadyLinked as held:
            return await self._answer_held_elsewhere(row, held, actor)
        if result is not None and result.won:
            return result.request
        current = result.request if result else await self._db(self.store.get, request_id)
        if current is not None and (current.job_id, current.order_id) == (response.job_id, response.order_id):
            return current  # a lookup already linked exactly this
        log.error("request %s: the cloud answered a late create (%s) but the request is %s; recorded in the audit log",
                  request_id, ids, current.state if current else "gone")
        if current is not None:
            await self._db(self.store.audit, request_id, actor, "late_create_answer", allowed=True,
                           detail=f"not linked (the request is {current.state}): {ids}")
        return current or row

    async def _answer_held_elsewhere(self, row: AppRequest, held: AlreadyLinked, actor: str) -> AppRequest:
        """The cloud answered this create with an order or a job another request holds (an approver linked it
        there meanwhile): refused, never sent again, and flagged on the card for an approver to settle."""
        sentence = (_link_refused_sentence(row.id, held.owners) + " The cloud answered this request's create with "
                    "it, so the request is never sent again: an approver must settle which request it belongs to.")
        await self._flag_link_refused(row.id, actor, "late_create_answer", sentence, answered=True)
        return await self._db(self.store.get, row.id) or row

    async def _finish(self, row: AppRequest, state: State, actor: str, action: str, sentence: str) -> AppRequest:
        result = await self._db(
            self.store.transition, row.id, frozenset({State.SUBMITTING, State.NEEDS_ATTENTION}), state,
            actor=actor, action=action, lease_owner=self.worker_id, detail=sentence, news=Event.FINISHED,
            changes={"outcome_sentence": sentence, "last_error": sentence, "lease_owner": None, "lease_until": None,
                     "finished_at": utcnow() if state == State.SUBMIT_FAILED else None},
        )
        return result.request if result else row

    async def _after_create_error(self, row: AppRequest, error: CloudError, actor: str) -> AppRequest:
        sentence = describe(error)
        if error.outcome_unknown:
            return await self._unknown_outcome(row, actor, sentence)
        if (error.throttled or not error.reached_service) and row.attempts < MAX_REQUEUES:
            # The cloud provably did not act: put it back in the queue for a later attempt.
            result = await self._db(
                self.store.transition, row.id, State.SUBMITTING, State.APPROVED, actor=actor, action="requeued",
                lease_owner=self.worker_id, detail=sentence,
                changes={"last_error": sentence, "lease_owner": None, "lease_until": None},
            )
            return result.request if result else row
        return await self._finish(row, State.SUBMIT_FAILED, actor, "submit_failed", sentence)

    async def _unknown_outcome(self, row: AppRequest, actor: str, why: str) -> AppRequest:
        sentence = (f"The cloud did not confirm the order ({why.rstrip('.')}). It may or may not have been created, "
                    "so the bot will not resend it; it is looking for what was created.")
        result = await self._db(
            self.store.transition, row.id, State.SUBMITTING, State.NEEDS_ATTENTION, actor=actor,
            action="outcome_unknown", lease_owner=self.worker_id, detail=why,
            changes={"outcome_sentence": sentence, "last_error": why},
            news=Event.ATTENTION, news_delay=NEWS_WAITS_FOR_LOOKUP,
        )
        current = result.request if result else row
        await self.look_for_created(current)
        return await self._db(self.store.get, row.id) or current

    async def recover_stale(self) -> list[AppRequest]:
        """After a crash: submissions whose worker's lease ran out have an unknown outcome."""
        recovered = []
        for row in await self._db(self.store.stale_submissions):
            why = f"the worker {row.lease_owner} stopped while ordering"
            sentence = (f"The bot stopped while ordering ({why}). The order may or may not have reached the cloud, "
                        "so the bot will not resend it; it is looking for what was created.")
            result = await self._db(
                self.store.transition, row.id, State.SUBMITTING, State.NEEDS_ATTENTION,
                actor=f"worker:{self.worker_id}", action="recovered_stale", detail=why,
                changes={"outcome_sentence": sentence, "last_error": why, "lease_owner": None, "lease_until": None},
                news=Event.ATTENTION, news_delay=NEWS_WAITS_FOR_LOOKUP,
            )
            if result is not None and result.won:
                await self.look_for_created(result.request)
                fresh = await self._db(self.store.get, row.id)
                recovered.append(fresh or result.request)
        return recovered

    async def look_for_created(self, row: AppRequest) -> Lookup:
        """Find what an unanswered create made. Link it only when it is certainly ours; otherwise keep the
        candidates for an approver to choose from (`choose_candidate`)."""
        try:
            lookup = await self.reconciler.look(row)
        except CloudError as error:
            await self._db(self.store.audit, row.id, "bot", "lookup_failed", allowed=True, detail=describe(error))
            return Lookup(False, checked=False)
        if not lookup.checked:
            await self._db(self.store.audit, row.id, "bot", "lookup_failed", allowed=True,
                           detail="the cloud's answer could not be read")
            return lookup
        since, until = self.reconciler.window(row)
        now = utcnow()
        if lookup.found:
            detail = (f"found job {lookup.job_id}" if lookup.job_id else f"found order {lookup.order_id}") + \
                f" with {len(lookup.server_ids)} server(s): {', '.join(lookup.server_ids)}"
        elif lookup.candidates:
            detail = f"not certain; {len(lookup.candidates)} candidate(s) for an approver: " + \
                "; ".join(c.detail for c in lookup.candidates)
        elif now >= until:
            detail = f"nothing created between {_when(since)} and {_when(until)}"
        else:  # never state a window that has not passed yet
            detail = (f"nothing created between {_to_second(since)} and {_to_second(now)} so far; what the create "
                      f"made may still show up until {_to_second(until)}")
        linked = lookup.job_id or lookup.order_id

        def record(fresh: AppRequest) -> dict[str, Any] | None:
            """The look's findings on the row as it stands: only while it needs attention, and keeping what an
            approver ruled out meanwhile."""
            if fresh.state != State.NEEDS_ATTENTION:
                return None
            candidates = Candidates.of(fresh)
            ruled = set(candidates.ruled_out)
            candidates.items = [c for c in lookup.candidates if c.id not in ruled]
            candidates.resend_from = until
            found = lookup.found and linked not in ruled
            changes: dict[str, Any] = {"lookup_at": now, "lookup_found": found,
                                       "candidates_json": candidates.model_dump_json()}
            if found:
                changes.update(job_id=lookup.job_id, order_id=lookup.order_id,
                               server_ids_json=json.dumps(list(lookup.server_ids)))
            return changes

        try:
            # A later look (Send again) may change what the card lists: it is edited. The first look's news waits
            # for it and is released instead.
            written = await self._db(self.store.update_where, row.id, record, actor="bot", action="lookup",
                                     detail=detail, release_news=True,
                                     news=Event.REDRAW if row.lookup_at is not None else None)
        except AlreadyLinked as held:
            await self._flag_link_refused(row.id, "bot", "lookup", _link_refused_sentence(row.id, held.owners))
            return Lookup(False, checked=False)
        if written is None or not written.won:
            return Lookup(False, checked=False)  # the request moved on meanwhile (a late answer linked it)
        if written.request.lookup_found:
            # Certainly ours: follow it like any answered create (to payment, to its servers).
            await self._db(self.store.transition, row.id, State.NEEDS_ATTENTION, State.SUBMITTED, actor="bot",
                           action="lookup_linked", detail=detail, news=Event.SUBMITTED,
                           changes={"submitted_at": row.submitted_at or now, "next_poll_at": now,
                                    "lease_owner": None, "lease_until": None})
            return lookup
        if lookup.found:  # ruled out by an approver while the bot looked
            return Lookup(False, candidates=lookup.candidates)
        return lookup

    async def _flag_link_refused(self, request_id: str, actor: str, action: str, sentence: str, *,
                                 answered: bool = False) -> None:
        """A link the store refused, shown on the card for an approver to settle. `answered`: the cloud did
        answer this request's create, so it is never sent again; a resend already queued is stopped."""
        def flag(fresh: AppRequest) -> dict[str, Any] | None:
            candidates = Candidates.of(fresh)
            candidates.link_refused = sentence
            candidates.create_answered = candidates.create_answered or answered
            return {"candidates_json": candidates.model_dump_json()}

        changes: dict[str, Any] = {"outcome_sentence": sentence, "last_error": sentence, "lease_owner": None,
                                   "lease_until": None}
        current = await self._db(self.store.get, request_id)
        if current is not None and answered and current.state in (State.SUBMITTING, State.APPROVED):
            changes.update(flag(current) or {})
            await self._db(self.store.transition, request_id, frozenset({State.SUBMITTING, State.APPROVED}),
                           State.NEEDS_ATTENTION, actor=actor, action="link_refused", detail=sentence,
                           changes=changes, news=Event.ATTENTION)
        else:
            await self._db(self.store.update_where, request_id, flag, actor=actor, action="link_refused",
                           detail=sentence, news=Event.REDRAW)
        log.warning("request %s: %s", request_id, sentence)

    async def choose_candidate(self, request_id: str, user_id: str, candidate_id: str | None,
                               shown: str | None) -> Decision:
        """An approver says which candidate is ours (`candidate_id`), or that none is (None), about the candidates
        their card showed (`shown`, the key of that set): a choice about another set is refused. Recorded."""
        action = "choose_candidate" if candidate_id else "rule_out_candidates"
        checked = await self.check_decider(request_id, user_id, action)
        if isinstance(checked, Decision):
            return checked
        candidates = Candidates.of(checked)
        if checked.state != State.NEEDS_ATTENTION or not candidates.items:
            return await self._refuse(request_id, user_id, action, Outcome.WRONG_STATE,
                                      f"Request {request_id} has nothing waiting for a choice (it is {checked.state}).",
                                      checked)
        if shown is None or shown != candidates.key():
            return await self._refuse(request_id, user_id, action, Outcome.NOT_AS_SHOWN,
                                      _candidates_changed(request_id, shown), checked)

        def as_shown(row: AppRequest) -> bool:  # checked again in the write: a look may have replaced them
            return row.state == State.NEEDS_ATTENTION and not row.lookup_found and Candidates.of(row).key() == shown

        if candidate_id is None:
            ruled = [c.id for c in candidates.items]

            def rule_out(row: AppRequest) -> dict[str, Any] | None:
                if not as_shown(row):
                    return None
                fresh = Candidates.of(row)
                fresh.ruled_out = sorted({*fresh.ruled_out, *ruled})
                fresh.items = []
                return {"candidates_json": fresh.model_dump_json(), "lookup_found": False}

            result = await self._db(self.store.update_where, request_id, rule_out, actor=user_id, action=action,
                                    detail=f"none of these is ours: {', '.join(ruled)}", news=Event.ATTENTION)
            if result is None:
                return Decision(Outcome.NOT_FOUND, f"There is no request {request_id}.")
            if not result.won:
                return await self._refuse(request_id, user_id, action, Outcome.NOT_AS_SHOWN,
                                          _candidates_changed(request_id, shown), result.request)
            return Decision(Outcome.DONE, f"<@{user_id}> ruled out {', '.join(ruled)} for {request_id}.",
                            result.request)
        chosen = candidates.find(candidate_id)
        if chosen is None:
            return await self._refuse(request_id, user_id, action, Outcome.NOT_A_CANDIDATE,
                                      f"{candidate_id} is not one of the candidates for {request_id}.", checked)
        ids = {"order_ids": [chosen.id]} if chosen.kind == "order" else {"job_ids": [chosen.id]}
        now = utcnow()
        candidates.items = [chosen]
        try:
            if owners := await self._db(self.store.owners_of, request_id, **ids):
                raise AlreadyLinked(owners)
            result = await self._db(
                self.store.transition, request_id, State.NEEDS_ATTENTION, State.SUBMITTED, actor=user_id,
                action=action, require=as_shown,
                changes={"job_id": chosen.id if chosen.kind == "job" else None,
                         "order_id": chosen.id if chosen.kind == "order" else None,
                         "submitted_at": checked.submitted_at or now, "next_poll_at": now, "lookup_found": True,
                         "outcome_sentence": None, "candidates_json": candidates.model_dump_json()},
                detail=f"{chosen.kind} {chosen.id} is ours: {chosen.detail}", news=Event.SUBMITTED,
            )
        except AlreadyLinked as held:
            sentence = _link_refused_sentence(request_id, held.owners)
            await self._flag_link_refused(request_id, user_id, action, sentence)
            return await self._refuse(request_id, user_id, action, Outcome.LINK_REFUSED, sentence, checked)
        if result is not None and not result.won and result.request.state == State.NEEDS_ATTENTION:
            return await self._refuse(request_id, user_id, action, Outcome.NOT_AS_SHOWN,
                                      _candidates_changed(request_id, shown), result.request)
        return await self._decision_from(result, request_id, user_id, action,
                                          f"<@{user_id}> linked {request_id} to {chosen.kind} {chosen.id}.")

    async def retry_after_attention(self, request_id: str, user_id: str) -> Decision:
        """An approver sends an unanswered create again, only after a fresh look finds nothing."""
        checked = await self.check_decider(request_id, user_id, "retry")
        if isinstance(checked, Decision):
            return checked
        if checked.state != State.NEEDS_ATTENTION:
            return await self._refuse(request_id, user_id, "retry", Outcome.WRONG_STATE,
                                      f"Request {request_id} does not need attention (it is {checked.state}).", checked)
        if Candidates.of(checked).items and not checked.lookup_found:
            return await self._refuse(request_id, user_id, "retry", Outcome.SERVERS_FOUND,
                                      "The cloud shows servers or an order that may be from this request, so it must "
                                      "not be sent again; choose on the card whether it is ours.", checked)
        if Candidates.of(checked).create_answered:
            return await self._refuse(request_id, user_id, "retry", Outcome.SERVERS_FOUND,
                                      f"The cloud answered the create of {request_id}, so it must never be sent "
                                      "again; settle on the card which request its order belongs to.", checked)
        # What the create made may show up in the cloud until its window closes (a lagging order list, a slow
        # gateway): only a look after that, finding nothing, allows another create.
        _, until = self.reconciler.window(checked)
        if utcnow() < until:
            return await self._refuse(request_id, user_id, "retry", Outcome.TOO_EARLY,
                                      f"Request {request_id} can be sent again from {_to_second(until)}: until then "
                                      "what the first try made may still show up in the cloud. Nothing was sent.",
                                      checked)
        lookup = await self.look_for_created(checked)
        if lookup.found or lookup.needs_choice:
            return await self._refuse(request_id, user_id, "retry", Outcome.SERVERS_FOUND,
                                      "The cloud shows servers or an order that may be from this request, so it must "
                                      "not be sent again; choose on the card whether it is ours.",
                                      await self._db(self.store.get, request_id))
        fresh = await self._db(self.store.get, request_id)
        looked_at = fresh.lookup_at if fresh is not None else None
        if fresh is None or not lookup.checked or fresh.lookup_found is not False or looked_at is None:
            return await self._refuse(request_id, user_id, "retry", Outcome.WRONG_STATE,
                                      "The bot could not check the cloud just now; try again in a minute.", fresh)

        def still_clean(row: AppRequest) -> bool:  # no other look or choice landed since this one
            candidates = Candidates.of(row)
            return (row.lookup_found is False and row.lookup_at == looked_at and looked_at >= until
                    and not candidates.items and not candidates.create_answered)

        result = await self._db(
            self.store.transition, request_id, State.NEEDS_ATTENTION, State.APPROVED, actor=user_id,
            action="retry_after_attention", require=still_clean,
            detail=f"nothing created between {_when(self.reconciler.window(checked)[0])} and {_when(until)}, "
                   f"looked at {_to_second(looked_at)}; sent again by an approver",
            changes={"outcome_sentence": None, "job_id": None, "order_id": None},
        )
        if result is not None and not result.won and result.request.state == State.NEEDS_ATTENTION:
            return await self._refuse(request_id, user_id, "retry", Outcome.WRONG_STATE,
                                      f"Another look at the cloud for {request_id} came in between, so nothing was sent; "
                                      "look at its card as it stands now.", result.request)
        return await self._decision_from(result, request_id, user_id, "retry",
                                          f"<@{user_id}> sent {request_id} to the cloud again.")

    async def pay_order(self, request_id: str, user_id: str) -> Decision:
        """An approver pays a yearly/monthly order that waits for payment; once, however often clicked.
        Only an order linked to the request with certainty is ever paid."""
        checked = await self.check_decider(
            request_id, user_id, "pay_order",
            own="You asked for this order, so an approver pays it: paying charges the company's cloud account, "
                "and a second person confirms what is bought.",
            not_approver="Only the configured approvers can pay orders: paying charges the company's cloud account.")
        if isinstance(checked, Decision):
            return checked
        if not checked.order_id or checked.state != State.AWAITING_PAYMENT:
            return await self._refuse(request_id, user_id, "pay_order", Outcome.WRONG_STATE,
                                      f"Request {request_id} has no order waiting for payment (it is "
                                      f"{checked.state}).", checked)
        progress = Progress.of(checked)
        if progress.proxy_payment_at is not None:
            return await self._refuse(request_id, user_id, "pay_order", Outcome.ALREADY_DECIDED,
                                      f"The payment of {request_id}'s order already waits for the master account "
                                      "(Billing Center); nothing was paid again.", checked)
        holder = await self._db(self.store.mark_payment, request_id, user_id)
        if holder is not None and not await self._unpaid_after_unknown(checked, progress, holder, user_id):
            return await self._refuse(request_id, user_id, "pay_order", Outcome.ALREADY_DECIDED,
                                      f"<@{holder}> already paid (or is paying) the order of {request_id}.", checked)
        # Right before paying, the discounts again: Pay charges only what its prompt showed.
        fresh = progress.model_copy()
        await read_discounts(self.cloud, checked.order_id, fresh)
        if not same_charge(fresh, progress):
            await self._db(self.store.clear_payment, request_id)
            now_charged = charge_words(fresh)
            await self._db(self.store.update_fields, request_id, actor=user_id, action="pay_order",
                           detail=f"not paid: the charge changed since the prompt; now {now_charged}",
                           news=Event.PAYMENT_CHANGED, progress_json=fresh.model_dump_json())
            return Decision(Outcome.NOT_AS_SHOWN, f"What paying {request_id} charges changed since the card showed "
                            f"it: it is now {now_charged}. Nothing was paid; the card shows the new amount.",
                            await self._db(self.store.get, request_id))
        progress = fresh
        discount = progress.discount
        try:
            await self.cloud.pay_order(checked.order_id, discount.ref if discount else None)
        except CloudError as error:
            sentence = describe(error)
            if not error.outcome_unknown:
                await self._db(self.store.clear_payment, request_id)  # nothing was paid: allow another try
                await self._db(self.store.audit, request_id, user_id, "pay_order", allowed=True,
                               detail=f"failed: {sentence}")
                return Decision(Outcome.PAYMENT_FAILED, f"The payment did not go through. {sentence}", checked)
            progress.payment_unknown_at = utcnow()
            await self._db(self.store.update_fields, request_id, actor=user_id, action="pay_order",
                           detail=f"outcome unknown: {sentence}", progress_json=progress.model_dump_json())
            return Decision(Outcome.PAYMENT_UNKNOWN, f"The billing service did not confirm the payment ({sentence}) "
                            "The bot does not pay again; the order's status will show whether it was paid.", checked)
        progress.charged_amount, progress.charged_with = progress.to_charge(), discount_words(progress)
        charged = charge_words(progress)
        # A 204 is not proof of payment (a finance-hosted member's payment becomes a proxy order): ask billing.
        if not await self._billing_shows_paid(checked.order_id):
            progress.proxy_payment_at = utcnow()
            await self._db(self.store.update_fields, request_id, actor=user_id, action="pay_order",
                           detail=f"sent payment of order {checked.order_id} ({charged}); billing does not show it "
                                  "paid: it waits for the master account (proxy payment)",
                           news=Event.PAYMENT_WAITS, progress_json=progress.model_dump_json(), next_poll_at=utcnow())
            return Decision(Outcome.DONE, f"<@{user_id}> sent the payment of order {checked.order_id} ({charged}); "
                            "billing does not show it paid yet: it waits for the master account in the Billing Center.",
                            await self._db(self.store.get, request_id))
        progress.order_paid = True
        detail = f"paid order {checked.order_id}: {charged}"
        result = await self._db(
            self.store.transition, request_id, State.AWAITING_PAYMENT, State.PROVISIONING, actor=user_id,
            action="pay_order", changes={"progress_json": progress.model_dump_json(), "next_poll_at": utcnow()},
            detail=detail, news=Event.PAID,
        )
        if result is None or not result.won:  # the tracker saw the order move first: the payment stands
            await self._db(self.store.update_fields, request_id, actor=user_id, action="pay_order", detail=detail,
                           news=Event.PAID, progress_json=progress.model_dump_json())
        return Decision(Outcome.DONE, f"<@{user_id}> paid the order {checked.order_id}: {charged}.",
                        await self._db(self.store.get, request_id))

    async def _billing_shows_paid(self, order_id: str) -> bool:
        """Whether billing shows the order paid (processing or completed) right after PayOrders answered."""
        try:
            status = (await self.cloud.show_order(order_id)).order_info.status
        except CloudError:
            return False  # not confirmed: the tracker keeps following the order and says when it is paid
        return status in (ORDER_PROCESSING, ORDER_COMPLETED)

    async def _unpaid_after_unknown(self, row: AppRequest, progress: Progress, holder: str, user_id: str) -> bool:
        """A payment whose answer never came holds the order. Once the billing service has had time to settle
        it and still shows the order unpaid, another click may pay: BSS pays an order at most once."""
        started = progress.payment_unknown_at
        if started is None or utcnow() - started < self.policy.payment_settles or not row.order_id:
            return False
        try:
            status = (await self.cloud.show_order(row.order_id)).order_info.status
        except CloudError:
            return False
        if status != ORDER_PENDING_PAYMENT:
            return False
        return await self._db(self.store.take_over_payment, row.id, holder, user_id)


class CloudAdapter:
    """The cloud port on top of the real clients."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud

    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse:
        return await self._cloud.workspace.create_app_servers(request)

    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]:
        return await self._cloud.workspace.list_servers(server_group_id=server_group_id)

    async def list_new_workspace_orders(self, begin: datetime, end: datetime) -> list[CustomerOrder]:
        return await self._cloud.billing.list_new_workspace_orders(begin, end)

    async def show_order(self, order_id: str) -> OrderDetails:
        return await self._cloud.billing.show_order(order_id)

    async def show_job_detail(self, job_id: str) -> JobDetailV2:
        return await self._cloud.workspace.show_job_detail(job_id)

    async def list_order_discounts(self, order_id: str) -> list[OrderDiscount]:
        return await self._cloud.billing.list_order_discounts(order_id)

    async def pay_order(self, order_id: str, discount: DiscountRef | None = None) -> None:
        await self._cloud.billing.pay_order(order_id, discount)


__all__ = ["CloudAdapter", "Decision", "Outcome", "Policy", "Workflow", "server_ids"]
