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
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from bot.cloud.client import Cloud
from bot.cloud.errors import CloudError, describe
from bot.cloud.models import AppServer, CustomerOrderList, parse_cloud_time
from bot.lifecycle import State
from bot.notify import Event
from bot.policy import Guardrails, approval_rule
from bot.spec import CreateAppServersRequest, CreateAppServersResponse, SpecError, parse_spec
from bot.store.models import AppRequest, utcnow
from bot.store.repository import NewRequest, RequestStore, Transition, server_ids

log = logging.getLogger(__name__)
T = TypeVar("T")

# How far before the recorded submit time a server may have been created (clock skew between us and the cloud).
LOOKUP_SKEW = timedelta(minutes=2)
MAX_REQUEUES = 5
# An unknown outcome is announced with what the lookup found; without a lookup, after this long anyway.
NEWS_WAITS_FOR_LOOKUP = timedelta(seconds=60)


class CloudPort(Protocol):
    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse: ...
    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]: ...
    async def list_orders_since(self, since: datetime) -> CustomerOrderList: ...
    async def pay_order(self, order_id: str) -> None: ...


class ApproverDirectory(Protocol):
    async def group_members(self, group_id: str) -> set[str]: ...


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
    submit_lease: timedelta = timedelta(seconds=90)
    first_poll_delay: timedelta = timedelta(seconds=10)
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
    CHECK_FAILED = "check_failed"
    NOT_AS_SHOWN = "not_as_shown"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    sentence: str
    request: AppRequest | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DONE


@dataclass(frozen=True)
class Lookup:
    """What the bot found in the cloud for a create whose answer it never got."""

    found: bool
    job_id: str | None = None
    order_id: str | None = None
    server_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SubmitResult:
    request: AppRequest
    created: bool


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


@dataclass
class Workflow:
    store: RequestStore
    cloud: CloudPort
    directory: ApproverDirectory
    policy: Policy = field(default_factory=Policy)
    worker_id: str = field(default_factory=default_worker_id)

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

    def approval_rule(self, spec: CreateAppServersRequest) -> str | None:
        return approval_rule(self.policy.guardrails, prepaid=spec.is_prepaid, servers=spec.subscription_num,
                             postpaid_requires_approval=self.policy.postpaid_requires_approval)

    def needs_approval(self, spec: CreateAppServersRequest) -> bool:
        return self.approval_rule(spec) is not None

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
    ) -> AppRequest:
        """Store a validated request: waiting for approval, or approved at once and queued."""
        approval = self.needs_approval(spec)
        new = NewRequest(
            requester_id=requester_id, spec_json=spec.canonical_json(), spec_hash=spec.spec_hash(),
            charging_mode=spec.charging_mode, subscription_num=spec.subscription_num,
            server_group_id=spec.server_group_id, channel_id=channel_id, thread_ts=thread_ts, team_id=team_id,
            reason=reason, expires_at=utcnow() + self.policy.approval_ttl if approval else None,
            progress_json=progress_json, decided_at=None if approval else utcnow(),
        )
        # One transaction: the row, its "created" audit row and, without a human decision, "auto_approved".
        auto = (f"pay-per-use, {spec.subscription_num} server(s), within AUTO_APPROVE_MAX_SERVERS "
                f"({self.policy.guardrails.auto_approve_max_servers})")
        return await self._db(self.store.create, new, State.PENDING_APPROVAL if approval else State.APPROVED,
                              requester_id, None if approval else auto)

    # Deciding ----------------------------------------------------------------------------------

    async def _refuse(self, request_id: str, user_id: str, action: str, outcome: Outcome, sentence: str,
                      row: AppRequest | None) -> Decision:
        if row is not None:
            await self._db(self.store.audit, request_id, user_id, action, allowed=False,
                           detail=f"{outcome.value}: {sentence}")
        return Decision(outcome, sentence, row)

    async def check_decider(self, request_id: str, user_id: str, action: str) -> Decision | AppRequest:
        row = await self._db(self.store.get, request_id)
        if row is None:
            return Decision(Outcome.NOT_FOUND, f"There is no request {request_id}.")
        if row.requester_id == user_id:
            return await self._refuse(request_id, user_id, action, Outcome.SELF_APPROVAL,
                                      "You cannot decide on your own request; another approver has to.", row)
        try:
            approver = await self.is_listed(user_id, self.policy.approvers)
        except DirectoryUnavailable as unavailable:
            return await self._refuse(request_id, user_id, action, Outcome.CHECK_FAILED,
                                      f"I could not check that you are an approver: {unavailable} Nothing was done; "
                                      "try again in a minute.", row)
        if not approver:
            return await self._refuse(request_id, user_id, action, Outcome.NOT_APPROVER,
                                      "Only the configured approvers can decide on requests.", row)
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

    async def approve(self, request_id: str, user_id: str) -> Decision:
        checked = await self.check_decider(request_id, user_id, "approve")
        if isinstance(checked, Decision):
            return checked
        if checked.state != State.PENDING_APPROVAL:  # decided already (nothing moves back): no write to try
            return await self._decision_from(Transition(False, checked), request_id, user_id, "approve", "")
        now = utcnow()
        result = await self._db(
            self.store.transition, request_id, State.PENDING_APPROVAL, State.APPROVED,
            actor=user_id, action="approve", changes={"decided_by": user_id, "decided_at": now},
            detail=f"approved spec {checked.spec_hash}", news=Event.DECIDED,
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

    # Sending to the cloud ----------------------------------------------------------------------

    async def submit_due(self, limit: int = 10) -> list[SubmitResult]:
        """The outbox worker: claim approved requests and call CreateAppServers once for each."""
        claimed = await self._db(self.store.claim_for_submit, self.worker_id, self.policy.submit_lease, limit)
        return list(await asyncio.gather(*(self._send(row) for row in claimed)))

    async def _send(self, row: AppRequest) -> SubmitResult:
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
        result = await self._db(
            self.store.transition, row.id, frozenset({State.SUBMITTING, State.NEEDS_ATTENTION}), State.SUBMITTED,
            actor=actor, action="submitted", changes=changes, lease_owner=self.worker_id,
            detail=f"job {response.job_id}" if response.job_id else f"order {response.order_id}",
            news=Event.SUBMITTED,
        )
        if result is None or not result.won:
            log.error("request %s: created (%s) but the row moved on; recorded in the audit log",
                      row.id, response.job_id or response.order_id)
            await self._db(self.store.audit, row.id, actor, "late_create_answer", allowed=True,
                           detail=f"job {response.job_id} order {response.order_id}")
        return SubmitResult(result.request if result else row, True)

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
        """Find what an unanswered create made: new servers in the group, or a new order."""
        since = (row.submit_started_at or row.updated_at) - LOOKUP_SKEW
        try:
            lookup = await (self._find_order(row, since) if row.charging_mode == "prePaid"
                            else self._find_job(row, since))
        except CloudError as error:
            await self._db(self.store.audit, row.id, "bot", "lookup_failed", allowed=True, detail=describe(error))
            return Lookup(False)
        changes: dict[str, Any] = {"lookup_at": utcnow(), "lookup_found": lookup.found}
        if lookup.found:
            changes.update(job_id=lookup.job_id, order_id=lookup.order_id,
                           server_ids_json=json.dumps(list(lookup.server_ids)))
            detail = (f"found job {lookup.job_id}" if lookup.job_id else f"found order {lookup.order_id}") + \
                f" with {len(lookup.server_ids)} server(s): {', '.join(lookup.server_ids)}"
        else:
            detail = f"nothing created since {_when(since)}"
        await self._db(self.store.update_fields, row.id, actor="bot", action="lookup", detail=detail,
                       release_news=True, **changes)
        return lookup

    async def _find_job(self, row: AppRequest, since: datetime) -> Lookup:
        servers = await self.cloud.list_servers(server_group_id=row.server_group_id)
        fresh = [s for s in servers if s.job_id and (created := parse_cloud_time(s.create_time)) and created >= since]
        taken = await self._db(self.store.linked_elsewhere, row.id, job_ids=sorted({s.job_id for s in fresh if s.job_id}))
        by_job: dict[str, list[str]] = {}
        for server in fresh:
            if server.job_id and server.job_id not in taken:
                by_job.setdefault(server.job_id, []).append(server.id)
        if len(by_job) != 1:
            # None found, or several unlinked jobs we cannot tell apart: a human decides.
            return Lookup(False) if not by_job else Lookup(True, server_ids=tuple(i for ids in by_job.values() for i in ids))
        job_id, ids = next(iter(by_job.items()))
        return Lookup(True, job_id=job_id, server_ids=tuple(ids))

    async def _find_order(self, row: AppRequest, since: datetime) -> Lookup:
        orders = await self.cloud.list_orders_since(since)
        ids = [o.order_id for o in orders.order_infos]
        taken = await self._db(self.store.linked_elsewhere, row.id, order_ids=ids)
        candidates = [i for i in ids if i not in taken]
        if not candidates:
            return Lookup(False)
        if len(candidates) > 1:
            return Lookup(True)
        servers = await self.cloud.list_servers(server_group_id=row.server_group_id)
        return Lookup(True, order_id=candidates[0],
                      server_ids=tuple(s.id for s in servers if s.order_id == candidates[0]))

    async def retry_after_attention(self, request_id: str, user_id: str) -> Decision:
        """An approver sends an unanswered create again, only after a fresh look finds nothing."""
        checked = await self.check_decider(request_id, user_id, "retry")
        if isinstance(checked, Decision):
            return checked
        if checked.state != State.NEEDS_ATTENTION:
            return await self._refuse(request_id, user_id, "retry", Outcome.WRONG_STATE,
                                      f"Request {request_id} does not need attention (it is {checked.state}).", checked)
        lookup = await self.look_for_created(checked)
        if lookup.found:
            return await self._refuse(request_id, user_id, "retry", Outcome.SERVERS_FOUND,
                                      "The cloud shows servers or an order from this request, so it must not be "
                                      "sent again.", await self._db(self.store.get, request_id))
        fresh = await self._db(self.store.get, request_id)
        if fresh is None or fresh.lookup_found is not False:
            return await self._refuse(request_id, user_id, "retry", Outcome.WRONG_STATE,
                                      "The bot could not check the cloud just now; try again in a minute.", fresh)
        result = await self._db(
            self.store.transition, request_id, State.NEEDS_ATTENTION, State.APPROVED, actor=user_id,
            action="retry_after_attention", detail="a fresh lookup found nothing; sent again by an approver",
            changes={"outcome_sentence": None, "job_id": None, "order_id": None},
        )
        return await self._decision_from(result, request_id, user_id, "retry",
                                          f"<@{user_id}> sent {request_id} to the cloud again.")


    async def pay_order(self, request_id: str, user_id: str) -> Decision:
        """An approver pays a yearly/monthly order that waits for payment; once, however often clicked."""
        checked = await self.check_decider(request_id, user_id, "pay_order")
        if isinstance(checked, Decision):
            return checked
        if not checked.order_id or checked.state not in (State.SUBMITTED, State.PROVISIONING):
            return await self._refuse(request_id, user_id, "pay_order", Outcome.WRONG_STATE,
                                      f"Request {request_id} has no order waiting for payment.", checked)
        holder = await self._db(self.store.mark_payment, request_id, user_id)
        if holder is not None:
            return await self._refuse(request_id, user_id, "pay_order", Outcome.ALREADY_DECIDED,
                                      f"<@{holder}> already paid (or is paying) the order of {request_id}.", checked)
        try:
            await self.cloud.pay_order(checked.order_id)
        except CloudError as error:
            sentence = describe(error)
            if not error.outcome_unknown:
                await self._db(self.store.clear_payment, request_id)  # nothing was paid: allow another try
            await self._db(self.store.audit, request_id, user_id, "pay_order", allowed=True, detail=f"failed: {sentence}")
            return Decision(Outcome.PAYMENT_FAILED, f"The payment did not go through. {sentence}", checked)
        await self._db(self.store.audit, request_id, user_id, "pay_order", allowed=True,
                       detail=f"paid order {checked.order_id}")
        return Decision(Outcome.DONE, f"<@{user_id}> paid the order {checked.order_id}.",
                        await self._db(self.store.get, request_id))


class CloudAdapter:
    """The cloud port on top of the real clients."""

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud

    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse:
        return await self._cloud.workspace.create_app_servers(request)

    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]:
        return await self._cloud.workspace.list_servers(server_group_id=server_group_id)

    async def list_orders_since(self, since: datetime) -> CustomerOrderList:
        return await self._cloud.billing.list_orders_since(since)

    async def pay_order(self, order_id: str) -> None:
        await self._cloud.billing.pay_order(order_id)


__all__ = ["CloudAdapter", "Decision", "Outcome", "Policy", "Workflow", "server_ids"]
