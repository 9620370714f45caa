"""What the operator reads: the requests that are stuck or need a person, and one request in full."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, or_
from sqlmodel import col, select

from bot.lifecycle import FINAL_STATES, LABELS, State
from bot.money import money
from bot.price import quote_of
from bot.progress import Progress
from bot.reconcile import Candidates
from bot.store.db import Sessions
from bot.store.models import AppRequest, AuditEvent, SlackNews, utcnow
from bot.store.repository import server_ids


@dataclass(frozen=True)
class Thresholds:
    """When a request counts as stuck: how long in one state, and how long its Slack news may wait."""

    stuck_after: timedelta = timedelta(minutes=30)
    news_after: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class NewsWaiting:
    count: int
    oldest: datetime
    attempts: int  # the most tries any of it has had


@dataclass
class Listed:
    """A request that needs a person, why, and since when it has been in its state."""

    request: AppRequest
    state_since: datetime
    reasons: list[str]
    news: NewsWaiting | None = None
    audit: list[AuditEvent] = field(default_factory=list)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        row = self.request
        return {"id": row.id, "state": row.state, "state_since": self.state_since.isoformat(),
                "seconds_in_state": int((now - self.state_since).total_seconds()),
                "requester": row.requester_id, "reasons": self.reasons,
                "news_waiting": self.news.count if self.news else 0,
                "audit": [audit_dict(e) for e in self.audit]}


def audit_dict(event: AuditEvent) -> dict[str, Any]:
    return {"at": event.at.isoformat(), "actor": event.actor, "action": event.action, "old_state": event.old_state,
            "new_state": event.new_state, "allowed": event.allowed, "detail": event.detail}


def _state_since() -> Any:
    """When each request entered its state: its last audited move into it (the creation for the first state)."""
    return (select(func.max(AuditEvent.at))
            .where(col(AuditEvent.request_id) == col(AppRequest.id), col(AuditEvent.new_state) == col(AppRequest.state),
                   or_(col(AuditEvent.old_state).is_(None), col(AuditEvent.old_state) != col(AuditEvent.new_state)))
            .correlate(AppRequest).scalar_subquery())


def age(delta: timedelta) -> str:
    """"3d 4h", "2h 05m", "7m", "40s": an age an operator reads at a glance."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"



def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"



class AdminReader:
    def __init__(self, engine: Engine) -> None:
        self._db = Sessions(engine)

    def attention(self, thresholds: Thresholds = Thresholds(), *, now: datetime | None = None,
                  limit: int = 50, audit_rows: int = 5) -> list[Listed]:
        """Requests that need a person, oldest in their state first: an unknown create outcome, a create whose
        worker stopped, work no worker picked up, a request the cloud has not moved for `stuck_after`, and Slack
        news that has waited `news_after` or failed."""
        now = now or utcnow()
        cutoff = now - thresholds.stuck_after
        since = _state_since()
        state = col(AppRequest.state)
        needs_person = or_(
            state == State.NEEDS_ATTENTION.value,
            and_(state == State.SUBMITTING.value, col(AppRequest.lease_until) < now),
            and_(state == State.PENDING_APPROVAL.value, col(AppRequest.expires_at) < now),
            and_(state.in_([State.APPROVED.value, State.SUBMITTING.value, State.SUBMITTED.value,
                            State.AWAITING_PAYMENT.value, State.PROVISIONING.value]),
                 # Not coalesce(): that would bind the cutoff without the column type's form of a timestamp.
                 or_(since < cutoff, and_(since.is_(None), col(AppRequest.created_at) < cutoff))),
        )
        with self._db.read() as session:
            rows = list(session.exec(select(AppRequest, since).where(needs_person)
                                     .order_by(since, col(AppRequest.created_at)).limit(limit)))
            news_rows = list(session.exec(
                select(SlackNews.request_id, func.count(), func.min(SlackNews.created_at), func.max(SlackNews.attempts))
                .group_by(col(SlackNews.request_id))
                .having(or_(func.min(SlackNews.created_at) < now - thresholds.news_after,
                            func.max(SlackNews.attempts) > 0))
                .order_by(func.min(SlackNews.created_at)).limit(limit)))
            news = {i: NewsWaiting(count, oldest, attempts) for i, count, oldest, attempts in news_rows}
            listed = {row.id: Listed(row, entered or row.created_at, []) for row, entered in rows}
            missing = [i for i in news if i not in listed]
            if missing:
                for row, entered in session.exec(select(AppRequest, since).where(col(AppRequest.id).in_(missing))):
                    listed[row.id] = Listed(row, entered or row.created_at, [])
            for item in listed.values():
                item.news = news.get(item.request.id)
                item.reasons = reasons(item, now, thresholds)
                if audit_rows:
                    query = (select(AuditEvent).where(AuditEvent.request_id == item.request.id)
                             .order_by(col(AuditEvent.id).desc()).limit(audit_rows))
                    item.audit = list(reversed(list(session.exec(query))))
        return sorted(listed.values(), key=lambda i: i.state_since)[:limit]

    def details(self, request_id: str) -> Details | None:
        with self._db.read() as session:
            found = session.exec(select(AppRequest, _state_since()).where(AppRequest.id == request_id)).first()
            if found is None:
                return None
            row, entered = found
            audit = list(session.exec(select(AuditEvent).where(AuditEvent.request_id == request_id)
                                      .order_by(col(AuditEvent.id))))
            news = list(session.exec(select(SlackNews).where(SlackNews.request_id == request_id)
                                     .order_by(col(SlackNews.id))))
        return Details(row, entered or row.created_at, audit, news)


def reasons(item: Listed, now: datetime, thresholds: Thresholds) -> list[str]:
    """Why a request is listed, in sentences an operator acts on."""
    row, state = item.request, State(item.request.state)
    out: list[str] = []
    waited = age(now - item.state_since)
    if state == State.NEEDS_ATTENTION:
        candidates = Candidates.of(row).items
        if candidates:
            out.append(f"the create's outcome is unknown; {len(candidates)} candidate(s) wait for an approver's "
                       "choice on the card")
        elif row.lookup_found is False:
            out.append(f"the create's outcome is unknown; the bot's last look ({when(row.lookup_at)}) found nothing")
        else:
            out.append("the create's outcome is unknown; the bot has not been able to look at the cloud yet")
    elif state == State.SUBMITTING and row.lease_until is not None and row.lease_until < now:
        out.append(f"a create with no answer: its worker {row.lease_owner} stopped (lease ended "
                   f"{when(row.lease_until)}); a running worker turns it into needs_attention and looks for it")
    elif state == State.PENDING_APPROVAL and row.expires_at is not None and row.expires_at < now:
        out.append(f"past its expiry ({when(row.expires_at)}) but not expired: is a worker running?")
    elif state == State.APPROVED:
        out.append(f"approved {waited} ago and not sent to the cloud: is a worker running?")
    elif state == State.AWAITING_PAYMENT:
        out.append(f"the order {row.order_id} has waited {waited} for an approver to pay it")
    elif state in (State.SUBMITTED, State.PROVISIONING, State.SUBMITTING) and state not in FINAL_STATES:
        linked = f"job {row.job_id}" if row.job_id else (f"order {row.order_id}" if row.order_id else "nothing linked")
        out.append(f"{LABELS[state].lower()} for {waited} ({linked})")
    if row.last_error and state not in FINAL_STATES and state != State.NEEDS_ATTENTION:
        out.append(f"last error: {row.last_error}")
    if item.news is not None:
        tried = f", tried up to {item.news.attempts} time(s)" if item.news.attempts else ""
        out.append(f"{item.news.count} Slack message(s) not delivered, the oldest queued "
                   f"{age(now - item.news.oldest)} ago{tried}")
    return out


@dataclass(frozen=True)
class Details:
    request: AppRequest
    state_since: datetime
    audit: list[AuditEvent]
    news: list[SlackNews]

    def facts(self) -> list[tuple[str, str]]:
        """(label, value) lines: state, who, ids, amounts, where it lives in Slack."""
        row = self.request
        state = State(row.state)
        progress = Progress.of(row)
        lines = [("state", f"{row.state} ({LABELS[state]}) since {when(self.state_since)}"),
                 ("requester", row.requester_id),
                 ("asked", f"{row.subscription_num} server(s), {row.charging_mode}, group {row.server_group_id}"),
                 ("created", when(row.created_at))]
        if row.decided_by:
            lines.append(("decided", f"by {row.decided_by} at {when(row.decided_at)}"
                          + (f": {row.decision_reason}" if row.decision_reason else "")))
        if quote := quote_of(row):
            lines.append(("estimate", quote.summary()))
        if progress.order_amount is not None:
            amount = money(progress.order_amount, progress.order_currency)
            lines.append(("order amount", amount + (" (paid)" if progress.order_paid else "")))
        lines += [("job", row.job_id or "-"), ("order", row.order_id or "-"),
                  ("servers", ", ".join(server_ids(row)) or "-"), ("spec hash", row.spec_hash)]
        if row.payment_by:
            lines.append(("payment", f"by {row.payment_by}"))
        if row.submit_started_at:
            lines.append(("create sent", when(row.submit_started_at)))
        if row.lease_owner:
            lines.append(("lease", f"{row.lease_owner} until {when(row.lease_until)}"))
        if row.lookup_at:
            lines.append(("last look", f"{when(row.lookup_at)}: "
                          + ("found it" if row.lookup_found else "found nothing certain")))
        for candidate in Candidates.of(row).items:
            lines.append(("candidate", candidate.detail))
        if row.outcome_sentence:
            lines.append(("outcome", row.outcome_sentence))
        if row.last_error:
            lines.append(("last error", row.last_error))
        lines.append(("thread", f"{row.channel_id} {row.thread_ts}" if row.thread_ts else
                      f"not posted (channel {row.channel_id or 'DM'})"))
        card = row.approval_channel_id
        lines.append(("card", f"{card} {row.approval_ts}" if row.approval_ts else "none"))
        lines.append(("news waiting", ", ".join(f"{n.event} (tries {n.attempts})" for n in self.news) or "none"))
        return lines

    def as_dict(self) -> dict[str, Any]:
        row = self.request
        progress = Progress.of(row)
        quote = quote_of(row)
        return {
            "id": row.id, "state": row.state, "state_since": self.state_since.isoformat(),
            "requester": row.requester_id, "charging_mode": row.charging_mode, "servers_asked": row.subscription_num,
            "job_id": row.job_id, "order_id": row.order_id, "server_ids": server_ids(row), "spec_hash": row.spec_hash,
            "estimate": quote.summary() if quote else None,
            # Exact, as a decimal string: JSON's numbers are binary floats to most readers.
            "order_amount": None if progress.order_amount is None else str(progress.order_amount),
            "order_currency": progress.order_currency, "order_paid": progress.order_paid,
            "outcome": row.outcome_sentence, "channel_id": row.channel_id, "thread_ts": row.thread_ts,
            "approval_channel_id": row.approval_channel_id, "approval_ts": row.approval_ts,
            "news_waiting": [{"event": n.event, "attempts": n.attempts} for n in self.news],
            "audit": [audit_dict(e) for e in self.audit], "version": row.version,
            "candidates": json.loads(row.candidates_json) if row.candidates_json else None,
        }
