"""What an operator may change: cancel a request, mark it failed, post its thread and card anew, send its
Slack news again.

Each change is a compare-and-set on the version of the row the checks read, written with its audit row and
its Slack news in one transaction: a worker that moved the request meanwhile wins, and the operator is told
to look again. Money first: nothing here ever sends a create, and a request whose create may have made an
order is never closed while that order could still turn up unlinked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import col, select

from bot.lifecycle import FINAL_STATES, IN_FLIGHT_STATES, State, TransitionRefused, can_move
from bot.notify import Event
from bot.reconcile import LOOKUP_SKEW, Candidates, Lookup
from bot.store.db import Sessions
from bot.store.models import AppRequest, AuditEvent, SlackNews, utcnow
from bot.store.news import news_row

MAX_REASON = 2000
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,31}")
# Looks at the cloud for what an unanswered create made, and records what it found (the workflow's own look).
Looker = Callable[[AppRequest], Awaitable[Lookup]]


class AdminRefused(Exception):
    """Nothing was changed; the message says why and what to do, in one sentence."""


@dataclass(frozen=True)
class Done:
    sentence: str
    request: AppRequest


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "an unknown time"


def _linked(row: AppRequest) -> str:
    parts = [f"job {row.job_id}" if row.job_id else "", f"order {row.order_id}" if row.order_id else ""]
    return " and ".join(p for p in parts if p) or "nothing linked"


class OperatorActions:
    def __init__(self, engine: Engine, *, actor: str, submit_lease: timedelta, look: Looker | None = None) -> None:
        self._db = Sessions(engine)
        self.actor = actor[:64]
        self.submit_lease = submit_lease
        self._look = look  # None: this process cannot see the bot's cloud (the built-in sandbox)

    # Reading and writing ------------------------------------------------------------------------

    def _get(self, request_id: str) -> AppRequest:
        with self._db.read() as session:
            row = session.get(AppRequest, request_id)
        if row is None:
            raise AdminRefused(f"There is no request {request_id}.")
        return row

    def _refuse(self, row: AppRequest, action: str, sentence: str) -> AdminRefused:
        """The refusal, written to the request's audit log as every refused click is."""
        with self._db.write() as session:
            session.add(AuditEvent(request_id=row.id, actor=self.actor, action=action, old_state=row.state,
                                   new_state=row.state, spec_hash=row.spec_hash, allowed=False, detail=sentence))
        return AdminRefused(sentence)

    def _write(self, seen: AppRequest, *, action: str, detail: str, new: State | None = None,
               changes: dict[str, Any] | None = None, news: Event | None = None) -> AppRequest:
        """Change the row only if it is still the version the checks read; audit it and queue its news."""
        if new is not None and not can_move(State(seen.state), new):
            raise TransitionRefused(State(seen.state), new)
        now = utcnow()
        values: dict[str, Any] = {"version": seen.version + 1, "updated_at": now, **(changes or {})}
        if new is not None:
            values["state"] = new.value
        with self._db.write() as session:
            result = session.execute(update(AppRequest).where(col(AppRequest.id) == seen.id,
                                                              col(AppRequest.version) == seen.version)
                                     .values(**values).execution_options(synchronize_session=False))
            won = result.rowcount == 1  # type: ignore[attr-defined]
            if won:
                session.add(AuditEvent(request_id=seen.id, actor=self.actor, action=action, old_state=seen.state,
                                       new_state=new.value if new else seen.state, spec_hash=seen.spec_hash,
                                       detail=detail, at=now))
                if news is not None:
                    session.add(SlackNews(**news_row(seen.id, news, now=now)))
        current = self._get(seen.id)
        if not won:
            raise self._refuse(current, action, f"{seen.id} changed while this ran (it is {current.state} now), so "
                                                "nothing was done: look again with `appserver-bot admin show`.")
        return current

    @staticmethod
    def _reason(reason: str) -> str:
        text = " ".join(reason.split())
        if not text:
            raise AdminRefused("Give a reason (--reason): the requester reads it and the audit log keeps it.")
        return text[:MAX_REASON]

    # Cancel -------------------------------------------------------------------------------------

    def cancel(self, request_id: str, reason: str) -> Done:
        """Cancel a request nothing was sent for yet (waiting for approval, or approved and not claimed)."""
        why = self._reason(reason)
        row = self._get(request_id)
        state = State(row.state)
        if state not in (State.PENDING_APPROVAL, State.APPROVED):
            raise self._refuse(row, "admin_cancel", self._why_not_cancel(row))
        sentence = f"Cancelled by an operator: {why}"
        now = utcnow()
        done = self._write(row, action="admin_cancel", detail=why, new=State.CANCELLED, news=Event.FINISHED,
                           changes={"finished_at": now, "outcome_sentence": sentence, "remind_at": None})
        return Done(f"{row.id} is cancelled (it was {row.state}); its thread and card will say so: {why}", done)

    def _why_not_cancel(self, row: AppRequest) -> str:
        state = State(row.state)
        if state in FINAL_STATES:
            return f"{row.id} has already ended ({row.state}); nothing to cancel."
        if state == State.SUBMITTING:
            return self._create_in_flight(row)
        if state == State.NEEDS_ATTENTION:
            return (f"{row.id} cannot be cancelled: its create got no answer and may have made an order. Once a "
                    "look at the cloud finds nothing, `appserver-bot admin fail` closes it; if something was found, "
                    "an approver says on its card whether it is ours.")
        return (f"{row.id} was already ordered ({_linked(row)}), so cancelling here would not stop it: cancel the "
                "order in the cloud, then `appserver-bot admin fail` it so the bot stops following it.")

    def _create_in_flight(self, row: AppRequest) -> str:
        return (f"{row.id} is being sent to the cloud right now (by {row.lease_owner}, since "
                f"{_when(row.submit_started_at)}), and the create has no idempotency key: wait for its answer, or for "
                "its worker's lease to end, when the bot looks for what it made; then try again.")

    # Fail ---------------------------------------------------------------------------------------

    async def fail(self, request_id: str, reason: str) -> Done:
        """Mark a request that was sent to the cloud as failed. The job or order it holds stays linked to it (and
        to no other request); a create with no answer is closed only when a look after its window found nothing."""
        why = self._reason(reason)
        row = self._get(request_id)
        state = State(row.state)
        if state in (State.PENDING_APPROVAL, State.APPROVED):
            raise self._refuse(row, "admin_fail", f"Nothing was ordered for {row.id} ({row.state}): use "
                                                  "`appserver-bot admin cancel` instead.")
        if state in FINAL_STATES:
            raise self._refuse(row, "admin_fail", f"{row.id} has already ended ({row.state}); nothing to mark.")
        if state == State.SUBMITTING:
            raise self._refuse(row, "admin_fail", self._create_in_flight(row))
        if state == State.NEEDS_ATTENTION:
            row = await self._nothing_created(row)
        if state == State.AWAITING_PAYMENT and row.payment_by:
            raise self._refuse(row, "admin_fail", f"{row.payment_by} paid, or is paying, the order {row.order_id} of "
                                                  f"{row.id}: wait until the bot sees whether the payment went through.")
        sentence = f"An operator closed it: {why}"
        now = utcnow()
        done = self._write(row, action="admin_fail", detail=f"{why} ({_linked(row)})", new=State.FAILED,
                           news=Event.FINISHED,
                           changes={"finished_at": now, "outcome_sentence": sentence, "lease_owner": None,
                                    "lease_until": None, "next_poll_at": None})
        if state in IN_FLIGHT_STATES:
            after = (f" The bot no longer follows {_linked(row)}, which stays linked to {row.id}: check it in the "
                     "cloud" + (" (an unpaid order can still be paid in the Billing Center until its deadline)"
                                if state == State.AWAITING_PAYMENT else " (servers may still be created)") + ".")
        else:
            after = " A look at the cloud after its create's window found nothing it made."
        return Done(f"{row.id} is marked failed (it was {row.state}); its thread and card will say so.{after}", done)

    def window_end(self, row: AppRequest) -> datetime:
        """Until when the cloud could act on the request's create (as the reconciler's lookup window)."""
        start = row.submit_started_at or row.updated_at
        return start + self.submit_lease + LOOKUP_SKEW

    async def _nothing_created(self, row: AppRequest) -> AppRequest:
        """The request as it stands once a look after its create's window found nothing; otherwise refused."""
        now = utcnow()
        if row.lease_until is not None and row.lease_until > now:
            raise self._refuse(row, "admin_fail", f"{row.id} is held by the worker {row.lease_owner} until "
                                                  f"{_when(row.lease_until)}: try again after that.")
        if Candidates.of(row).items:
            raise self._refuse(row, "admin_fail", self._choice_waits(row))
        end = self.window_end(row)
        if now < end:
            raise self._refuse(row, "admin_fail", f"The cloud could still act on {row.id}'s create until "
                                                  f"{_when(end)}: try again after that, when a look can tell.")
        if row.lookup_found is False and row.lookup_at is not None and row.lookup_at >= end:
            return row
        if self._look is None:
            raise self._refuse(row, "admin_fail", f"{row.id} needs a look at the cloud after {_when(end)}, and this "
                                                  "command cannot see the bot's built-in sandbox cloud: set the cloud "
                                                  "credentials the bot uses, or let an approver use its card.")
        lookup = await self._look(row)
        fresh = self._get(row.id)
        if lookup.found or State(fresh.state) != State.NEEDS_ATTENTION:
            raise AdminRefused(f"The look at the cloud found what {row.id}'s create made ({_linked(fresh)}) and linked "
                               f"it, so it is followed again (it is {fresh.state} now); nothing was marked failed.")
        if Candidates.of(fresh).items:
            raise self._refuse(fresh, "admin_fail", self._choice_waits(fresh))
        if not lookup.checked or fresh.lookup_found is not False:
            raise self._refuse(fresh, "admin_fail", f"The cloud could not be asked what {row.id}'s create made, so "
                                                    "nothing was marked failed: try again in a minute.")
        return fresh

    @staticmethod
    def _choice_waits(row: AppRequest) -> str:
        count = len(Candidates.of(row).items)
        return (f"The cloud shows {count} order(s) or job(s) that may be what {row.id}'s create made: an approver "
                "says on its card whether one is ours (\"This one is ours\" / \"None of these\"); try again after.")

    # Slack ----------------------------------------------------------------------------------------

    def repost(self, request_id: str, channel: str | None = None) -> Done:
        """Post the request's thread head (and its approval card, if it has or had one) anew, e.g. after they were
        deleted or their channel archived; later news goes to the new messages."""
        if channel is not None and not _CHANNEL_ID.fullmatch(channel):
            raise AdminRefused(f"{channel!r} is not a Slack channel id (C…, G… or D…, from the channel's details).")
        row = self._get(request_id)
        changes: dict[str, Any] = {"thread_ts": None, "approval_ts": None}
        if channel:
            changes["channel_id"] = channel
        where = f" in {channel}" if channel else ""
        before = f"thread {row.channel_id} {row.thread_ts or '-'}, card {row.approval_channel_id} {row.approval_ts or '-'}"
        done = self._write(row, action="admin_repost", detail=f"posted anew{where}; before: {before}",
                           news=Event.CREATED, changes=changes)
        card = " and its approval card" if row.approval_ts or row.approval_channel_id or \
            State(row.state) == State.PENDING_APPROVAL else ""
        return Done(f"{row.id}'s thread{card} will be posted anew{where} by the next worker.", done)

    def requeue(self, request_id: str) -> Done:
        """Make the request's waiting Slack news due now, its tries counted afresh (after Slack was away). With
        none waiting (news given up after a fault in the bot leaves the queue), queue a redraw: the thread's head
        and the card are edited to show the request as it is now."""
        row = self._get(request_id)
        now = utcnow()
        with self._db.write() as session:
            waiting = list(session.exec(select(SlackNews.id).where(SlackNews.request_id == row.id)))
            if waiting:
                session.execute(update(SlackNews).where(col(SlackNews.request_id) == row.id)
                                .values(available_at=now, attempts=0).execution_options(synchronize_session=False))
                detail = f"{len(waiting)} piece(s) of Slack news due again"
                sentence = f"{detail} for {row.id}; the next worker delivers them."
            else:
                session.add(SlackNews(**news_row(row.id, Event.REDRAW, now=now)))
                detail = "no news waited: its thread and card redrawn as it stands"
                sentence = (f"No Slack news waited for {row.id}: its thread and card will be redrawn as it stands now "
                            f"(`appserver-bot admin repost {row.id}` posts them anew if they are gone).")
            session.add(AuditEvent(request_id=row.id, actor=self.actor, action="admin_requeue_news",
                                   old_state=row.state, new_state=row.state, spec_hash=row.spec_hash,
                                   detail=detail, at=now))
        return Done(sentence, self._get(row.id))
