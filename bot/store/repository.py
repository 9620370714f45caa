"""Reading and changing requests. Every state change is a compare-and-set on the row's version, and
writes its audit row (and the news it means for Slack) in the same transaction, so exactly one of any
number of racing callers wins, and what it announces cannot be lost.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, and_, bindparam, exists, func, insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.lifecycle import FINAL_STATES, IN_FLIGHT_STATES, State, TransitionRefused, can_move
from bot.notify import Event
from bot.store.db import Sessions
from bot.store.inline import InlineSQLite
from bot.store.models import AppRequest, AuditEvent, SlackNews, utcnow
from bot.store.news import news_row
from bot.store.state_log import state_changed

# Crockford's alphabet: no I, L, O or U, so an id read aloud or typed is not mistaken.
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CAS_RETRIES = 5
_IN_CHUNK = 500  # ids per IN (...) list: well inside SQLite's limit on bound parameters


def new_request_id() -> str:
    # 32 letters divide 256 evenly, so each random byte picks one without bias (one read of the OS's randomness).
    return "AS-" + "".join(_ID_ALPHABET[byte % 32] for byte in secrets.token_bytes(8))


_AUDITS = AuditEvent.__table__.c  # type: ignore[attr-defined]
# An audit row with the request's state and spec hash as they are when it runs (no row for an unknown id).
_AUDIT_SQL = (
    "INSERT INTO audit_events (request_id, at, actor, action, allowed, detail, old_state, new_state, spec_hash) "
    "SELECT :request_id, :at, :actor, :action, :allowed, :detail, state, state, spec_hash FROM requests "
    "WHERE id = :id"  # a parameter of its own: PostgreSQL gives each one type
)
_AUDIT = text(_AUDIT_SQL).bindparams(bindparam("at", type_=_AUDITS.at.type),
                                     bindparam("allowed", type_=_AUDITS.allowed.type),
                                     bindparam("detail", type_=_AUDITS.detail.type))


@dataclass(frozen=True)
class Transition:
    """The result of a compare-and-set: whether this caller won, and the row as it now stands."""

    won: bool
    request: AppRequest


@dataclass(frozen=True)
class Move:
    """A state change the tracker decided during a cycle, written with the others at the cycle's end."""

    request_id: str
    expected: frozenset[State]
    new: State
    action: str
    changes: dict[str, Any]
    detail: str | None = None
    news: Event | None = None


@dataclass(frozen=True)
class NewRequest:
    requester_id: str
    spec_json: str
    spec_hash: str
    charging_mode: str
    subscription_num: int
    server_group_id: str
    channel_id: str | None = None
    thread_ts: str | None = None
    team_id: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    progress_json: str | None = None
    decided_at: datetime | None = None
    remind_at: datetime | None = None
    price_json: str | None = None
    price_summary: str | None = None  # for the audit log


class OverDailyCap(Exception):
    """The new request would take its requester past the daily cap; nothing was stored."""

    def __init__(self, already: int) -> None:
        super().__init__(f"{already} servers asked for in the last day")
        self.already = already


class OverPendingCap(Exception):
    """The new request would wait, and its requester already has as many waiting as allowed; nothing was stored."""

    def __init__(self, waiting: int) -> None:
        super().__init__(f"{waiting} requests waiting for an approver or for payment")
        self.waiting = waiting


@dataclass(frozen=True)
class Earlier:
    """A request its requester had approved without an approver: its servers, and its price as stored."""

    servers: int
    price_json: str | None


@dataclass(frozen=True)
class Recheck:
    """For a request about to go out without an approver: whether what its requester had approved that way in
    the last day (read in the storing transaction) means it must wait after all (`rule`: why, or None), and the
    request as it then waits (`held`)."""

    rule: Callable[[list[Earlier]], str | None]
    held: Callable[[str], NewRequest]


# States in which a request waits for a person: an approver's decision, or an approver's payment.
WAITING_FOR_A_PERSON = (State.PENDING_APPROVAL.value, State.AWAITING_PAYMENT.value)
NOTHING_ORDERED = (State.REJECTED.value, State.CANCELLED.value, State.EXPIRED.value, State.SUBMIT_FAILED.value)


class AlreadyLinked(Exception):
    """An order or a job is linked to one request at most (a unique index): this link was refused."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners  # the order or job id → the request that holds it
        super().__init__("; ".join(f"{i} already belongs to {owner}" for i, owner in owners.items()))


def server_ids(request: AppRequest) -> list[str]:
    ids: list[str] = json.loads(request.server_ids_json or "[]")
    return ids


class RequestStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._db = Sessions(engine)
        self._inline = InlineSQLite(engine)
        # The driver's form of a timestamp and a flag, for the statements written without SQLAlchemy.
        self._stored_at = _AUDITS.at.type.bind_processor(engine.dialect) or (lambda value: value)
        self._stored_flag = _AUDITS.allowed.type.bind_processor(engine.dialect) or (lambda value: value)

    def close(self) -> None:
        self._inline.close()

    # Reading -----------------------------------------------------------------------------------

    def get_now(self, request_id: str) -> AppRequest | None:
        """`get` from the event loop on SQLite, without a thread; `WouldWait` when it has to go to one."""
        return self._inline.get(request_id)

    def get(self, request_id: str) -> AppRequest | None:
        with self._db.read() as session:
            return session.get(AppRequest, request_id)

    def for_requester(self, user_id: str, limit: int = 10) -> list[AppRequest]:
        with self._db.read() as session:
            query = (select(AppRequest).where(AppRequest.requester_id == user_id)
                     .order_by(col(AppRequest.created_at).desc()).limit(limit))
            return list(session.exec(query))

    def in_states(self, states: Iterable[State], limit: int = 100) -> list[AppRequest]:
        with self._db.read() as session:
            query = (select(AppRequest).where(col(AppRequest.state).in_([s.value for s in states]))
                     .order_by(col(AppRequest.created_at)).limit(limit))
            return list(session.exec(query))

    def audit_log(self, request_id: str) -> list[AuditEvent]:
        with self._db.read() as session:
            query = select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(col(AuditEvent.id))
            return list(session.exec(query))

    def creates_in_doubt(self, request_id: str, started_from: datetime, started_until: datetime, *,
                         charging_mode: str, server_group_id: str | None = None) -> int:
        """Other requests of ours whose create started in [started_from, started_until] and is still being sent,
        or was sent with no answer and nothing linked. While any exists, a fitting order or job may be theirs."""
        with self._db.read() as session:
            query = select(func.count()).select_from(AppRequest).where(
                AppRequest.id != request_id, AppRequest.charging_mode == charging_mode,
                col(AppRequest.submit_started_at) >= started_from, col(AppRequest.submit_started_at) <= started_until,
                or_(col(AppRequest.state) == State.SUBMITTING.value,
                    and_(col(AppRequest.state) == State.NEEDS_ATTENTION.value, col(AppRequest.job_id).is_(None),
                         col(AppRequest.order_id).is_(None))))
            if server_group_id is not None:
                query = query.where(AppRequest.server_group_id == server_group_id)
            count: int = session.exec(query).one()
            return count

    def linked_elsewhere(self, request_id: str, *, job_ids: Sequence[str] = (), order_ids: Sequence[str] = ()) -> set[str]:
        """Job and order ids that already belong to another request (never link them twice)."""
        return set(self.owners_of(request_id, job_ids=job_ids, order_ids=order_ids))

    def owners_of(self, request_id: str, *, job_ids: Sequence[str] = (),
                  order_ids: Sequence[str] = ()) -> dict[str, str]:
        """Of these job and order ids, those another request holds, with that request's id."""
        conditions = []
        if job_ids:
            conditions.append(col(AppRequest.job_id).in_(list(job_ids)))
        if order_ids:
            conditions.append(col(AppRequest.order_id).in_(list(order_ids)))
        if not conditions:
            return {}
        wanted = {*job_ids, *order_ids}
        with self._db.read() as session:
            rows = session.exec(select(AppRequest).where(or_(*conditions), AppRequest.id != request_id))
            return {i: r.id for r in rows for i in (r.job_id, r.order_id) if i and i in wanted}

    # Writing -----------------------------------------------------------------------------------

    def create(self, new: NewRequest, state: State, actor: str, auto_approved: str | None = None,
               daily_cap: int | None = None, *, pending_cap: int | None = None,
               recheck: Recheck | None = None) -> AppRequest:
        """Store a request with its audit rows and first news. The person's guardrails are checked in the same
        transaction, after any concurrent submission of theirs committed, so submissions at once cannot pass
        them together: `daily_cap`, the servers of the last day (`OverDailyCap`); `recheck`, for a request
        about to be approved without an approver, what they had approved that way in the last day (it then
        waits for an approver instead); `pending_cap`, for a request that waits, how many of theirs already
        wait (`OverPendingCap`)."""
        now = utcnow()
        held_because: str | None = None
        with self._db.write() as session:
            if daily_cap is not None or pending_cap is not None or recheck is not None:
                self._serialize_requester(session, new.requester_id)
            if daily_cap is not None:
                already = self._servers_asked(session, new.requester_id, now - timedelta(days=1))
                if already + new.subscription_num > daily_cap:
                    raise OverDailyCap(already)
            if recheck is not None and state == State.APPROVED:
                held_because = recheck.rule(self._approved_without_approver(session, new.requester_id,
                                                                            now - timedelta(days=1)))
                if held_because is not None:
                    new, state, auto_approved = recheck.held(held_because), State.PENDING_APPROVAL, None
            if pending_cap is not None and state == State.PENDING_APPROVAL:
                waiting = self._waiting(session, new.requester_id)
                if waiting >= pending_cap:
                    raise OverPendingCap(waiting)
            row = AppRequest(
                id=new_request_id(), requester_id=new.requester_id, team_id=new.team_id, channel_id=new.channel_id,
                thread_ts=new.thread_ts, reason=new.reason, spec_json=new.spec_json, spec_hash=new.spec_hash,
                charging_mode=new.charging_mode, subscription_num=new.subscription_num,
                server_group_id=new.server_group_id, state=state.value, created_at=now, updated_at=now,
                state_since=now, expires_at=new.expires_at, progress_json=new.progress_json,
                decided_at=new.decided_at, price_json=new.price_json, remind_at=new.remind_at,
            )
            session.add(row)
            session.flush()  # the row first: the audit rows point at it
            session.add(AuditEvent(request_id=row.id, actor=actor, action="created", new_state=state.value,
                                   spec_hash=new.spec_hash, detail=new.price_summary, at=now))
            session.add(SlackNews(**news_row(row.id, Event.CREATED, now=now)))
            if auto_approved:
                session.add(AuditEvent(request_id=row.id, actor="bot", action="auto_approved", old_state=state.value,
                                       new_state=state.value, spec_hash=new.spec_hash, detail=auto_approved, at=now))
            if held_because:  # within the limits alone, not with what went out before it: why it waits
                session.add(AuditEvent(request_id=row.id, actor="bot", action="held_for_approver",
                                       old_state=state.value, new_state=state.value, spec_hash=new.spec_hash,
                                       detail=held_because, at=now))
        state_changed(row.id, None, state.value, actor, "created", price_json=new.price_json)
        return row

    def audit_now(self, request_id: str, actor: str, action: str, *, allowed: bool, detail: str | None = None) -> bool:
        """`audit` from the event loop, on SQLite when no writer is busy; False when it has to go to a thread."""
        params = {"request_id": request_id, "id": request_id, "at": self._stored_at(utcnow()), "actor": actor,
                  "action": action, "allowed": self._stored_flag(allowed), "detail": detail}
        return self._inline.try_execute(_AUDIT_SQL, params) is not None

    def audit(self, request_id: str, actor: str, action: str, *, allowed: bool, detail: str | None = None) -> None:
        """Record an attempt that changed nothing (a refused click, a lookup)."""
        # A refused click is the most frequent write under load: one prepared statement, no ORM read and flush.
        with self._db.write_connection() as connection:
            connection.execute(_AUDIT, {"request_id": request_id, "id": request_id, "at": utcnow(), "actor": actor,
                                        "action": action, "allowed": allowed, "detail": detail})

    def transition(
        self,
        request_id: str,
        expected: State | frozenset[State],
        new: State,
        *,
        actor: str,
        action: str,
        changes: dict[str, Any] | None = None,
        detail: str | None = None,
        lease_owner: str | None = None,
        news: Event | None = None,
        news_delay: timedelta | None = None,
        require: Callable[[AppRequest], bool] | None = None,
    ) -> Transition | None:
        """Move the request to `new` if it is in `expected` (and, if given, leased by `lease_owner`, and
        `require` holds for the row as the write finds it: checked and written at one version).

        Returns None when the request does not exist. Losing a race is not an error: the caller gets
        `won=False` and the row as the winner left it. The winner's `news` is queued for Slack, after
        `news_delay` when it should wait for more facts. A job or order id already linked to another
        request raises `AlreadyLinked` and changes nothing.
        """
        allowed = expected if isinstance(expected, frozenset) else frozenset({expected})
        for state in allowed:
            if not can_move(state, new):
                raise TransitionRefused(state, new)
        for _ in range(_CAS_RETRIES):
            with self._linking(changes), self._db.write() as session:
                row = session.get(AppRequest, request_id)
                if row is None:
                    return None
                if State(row.state) not in allowed or (lease_owner is not None and row.lease_owner != lease_owner):
                    return Transition(False, row)
                if require is not None and not require(row):
                    return Transition(False, row)
                old_state = row.state
                if not self._compare_and_set(session, row, new, actor=actor, action=action, changes=changes,
                                             detail=detail):
                    continue  # someone else changed the row since we read it: read again
                if news is not None:
                    session.add(SlackNews(**news_row(request_id, news, delay=news_delay)))
            fresh = self.get(request_id)
            assert fresh is not None
            state_changed(request_id, old_state, new.value, actor, action, job_id=fresh.job_id, order_id=fresh.order_id,
                          progress_json=fresh.progress_json, price_json=fresh.price_json)
            return Transition(True, fresh)
        fresh = self.get(request_id)
        assert fresh is not None
        return Transition(False, fresh)

    @contextmanager
    def _linking(self, changes: dict[str, Any] | None) -> Iterator[None]:
        """A write that may link a job or an order: the unique index's refusal, as `AlreadyLinked`."""
        try:
            yield
        except IntegrityError:
            linked = {k: v for k, v in (changes or {}).items() if k in ("job_id", "order_id") and v}
            if not linked:
                raise
            owners = self.owners_of("", job_ids=[linked["job_id"]] if "job_id" in linked else [],
                                    order_ids=[linked["order_id"]] if "order_id" in linked else [])
            if not owners:
                raise
            raise AlreadyLinked(owners) from None

    def update_where(self, request_id: str, change: Callable[[AppRequest], dict[str, Any] | None], *, actor: str,
                     action: str, detail: str | None = None, release_news: bool = False,
                     news: Event | None = None) -> Transition | None:
        """Change fields other than the state, computed by `change` from the row as the write finds it; None
        from `change` refuses (`won=False`). A compare-and-set on the version, audited, so a choice made on
        what a row held cannot land on what it holds after another write. None when there is no such request."""
        for _ in range(_CAS_RETRIES):
            changes: dict[str, Any] = {}  # filled in the transaction; read by `_linking` after its rollback
            with self._linking(changes), self._db.write() as session:
                row = session.get(AppRequest, request_id)
                if row is None:
                    return None
                wanted = change(row)
                if wanted is None:
                    return Transition(False, row)
                changes.update(wanted)
                result = session.execute(
                    update(AppRequest)
                    .where(col(AppRequest.id) == request_id, col(AppRequest.version) == row.version)
                    .values(version=row.version + 1, updated_at=utcnow(), **changes)
                    .execution_options(synchronize_session=False))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                session.add(AuditEvent(request_id=request_id, actor=actor, action=action, old_state=row.state,
                                       new_state=row.state, spec_hash=row.spec_hash, detail=detail))
                if release_news:
                    session.execute(update(SlackNews).where(col(SlackNews.request_id) == request_id)
                                    .values(available_at=utcnow()).execution_options(synchronize_session=False))
                if news is not None:
                    session.add(SlackNews(**news_row(request_id, news)))
            fresh = self.get(request_id)
            assert fresh is not None
            return Transition(True, fresh)
        fresh = self.get(request_id)
        assert fresh is not None
        return Transition(False, fresh)

    @staticmethod
    def _compare_and_set(session: Session, row: AppRequest, new: State, *, actor: str, action: str,
                         changes: dict[str, Any] | None, detail: str | None) -> bool:
        """Within the caller's transaction: update the row if its version is unchanged, and audit it."""
        now = utcnow()
        old_state, old_version, spec_hash = row.state, row.version, row.spec_hash
        values: dict[str, Any] = {"state": new.value, "version": old_version + 1, "updated_at": now,
                                  "state_since": now}
        values.update(changes or {})
        result = session.execute(
            update(AppRequest)
            .where(col(AppRequest.id) == row.id, col(AppRequest.version) == old_version)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        session.add(AuditEvent(request_id=row.id, actor=actor, action=action, old_state=old_state,
                               new_state=new.value, spec_hash=spec_hash, detail=detail, at=now))
        return True

    def update_fields(self, request_id: str, *, actor: str, action: str, detail: str | None = None,
                      release_news: bool = False, news: Event | None = None, **changes: Any) -> AppRequest | None:
        """Change fields other than the state (thread ts, lookup results), audited, version bumped.
        `release_news`: the request's news that waited for these facts may go out now; `news`: queue this."""
        with self._linking(changes), self._db.write() as session:
            row = session.get(AppRequest, request_id)
            if row is None:
                return None
            state, spec_hash = row.state, row.spec_hash
            session.execute(
                update(AppRequest).where(col(AppRequest.id) == request_id)
                .values(version=AppRequest.version + 1, updated_at=utcnow(), **changes)
                .execution_options(synchronize_session=False)
            )
            session.add(AuditEvent(request_id=request_id, actor=actor, action=action, old_state=state,
                                   new_state=state, spec_hash=spec_hash, detail=detail))
            if release_news:
                session.execute(update(SlackNews).where(col(SlackNews.request_id) == request_id)
                                .values(available_at=utcnow()).execution_options(synchronize_session=False))
            if news is not None:
                session.add(SlackNews(**news_row(request_id, news)))
        return self.get(request_id)

    # The outbox --------------------------------------------------------------------------------

    def claim_for_submit(self, owner: str, lease: timedelta, limit: int = 10) -> list[AppRequest]:
        """Take approved requests for submission: approved → submitting, leased to `owner`.

        On PostgreSQL the candidate rows are locked with SKIP LOCKED, so replicas take different rows
        instead of queueing on the same one; the compare-and-set makes it exactly-once on any engine.
        """
        now = utcnow()
        claimed_ids = []
        with self._db.write() as session:
            # The row locks are held until this transaction commits, across the updates below.
            query = (select(AppRequest).where(AppRequest.state == State.APPROVED.value)
                     .order_by(col(AppRequest.decided_at)).limit(limit).with_for_update(skip_locked=True))
            for row in list(session.exec(query)):
                changes = {"lease_owner": owner, "lease_until": now + lease, "submit_started_at": now,
                           "attempts": row.attempts + 1}
                if self._compare_and_set(session, row, State.SUBMITTING, actor=f"worker:{owner}",
                                         action="claim_submit", changes=changes, detail=None):
                    claimed_ids.append(row.id)
        claimed = [r for r in (self.get(i) for i in claimed_ids) if r is not None]
        for row in claimed:
            state_changed(row.id, State.APPROVED.value, row.state, f"worker:{owner}", "claim_submit",
                          price_json=row.price_json)
        return claimed

    def claim_due_for_tracking(self, owner: str, lease: timedelta, limit: int = 100,
                               now: datetime | None = None) -> list[AppRequest]:
        """Lease in-flight requests whose next poll is due: one select and one update, whatever the count.

        Rows another tracker holds (a live lease, or a row lock) are skipped, so each request is polled by
        one tracker at a time.
        """
        now = now or utcnow()
        with self._db.write() as session:
            query = (select(AppRequest.id)
                     .where(col(AppRequest.state).in_([s.value for s in IN_FLIGHT_STATES]),
                            col(AppRequest.next_poll_at) <= now,
                            or_(col(AppRequest.lease_until).is_(None), col(AppRequest.lease_until) < now))
                     .order_by(col(AppRequest.next_poll_at)).limit(limit).with_for_update(skip_locked=True))
            ids = list(session.exec(query))
            if not ids:
                return []
            session.execute(
                update(AppRequest).where(col(AppRequest.id).in_(ids))
                .values(lease_owner=owner, lease_until=now + lease, version=AppRequest.version + 1)
                .execution_options(synchronize_session=False)
            )
        with self._db.read() as session:
            return list(session.exec(select(AppRequest).where(col(AppRequest.id).in_(ids),
                                                              AppRequest.lease_owner == owner)))

    def in_flight_load(self) -> tuple[int, int]:
        """Requests in flight, and how many of them are not waiting for a person to pay: what the tracker
        shares its budget of cloud calls among (one indexed count a cycle)."""
        with self._db.read() as session:
            rows = session.exec(select(AppRequest.state, func.count())
                                .where(col(AppRequest.state).in_([s.value for s in IN_FLIGHT_STATES]))
                                .group_by(AppRequest.state))
            counts = {state: count for state, count in rows}
        total = sum(counts.values())
        return total, total - counts.get(State.AWAITING_PAYMENT.value, 0)

    def apply_cycle(self, owner: str, saves: list[dict[str, Any]], moves: list[Move],
                    news: list[tuple[str, Event]]) -> set[str]:
        """Everything a tracker cycle learned, in one transaction and a constant number of batched
        statements per 500 requests: progress saves, state changes (with their audit rows) and the news
        for Slack. Only rows still leased to `owner` are touched. Returns the ids whose move was made.

        `news` is progress news, written only where the save was; a move brings its own news.
        """
        table: Table = AppRequest.__table__  # type: ignore[attr-defined]
        now = utcnow()
        moved: set[str] = set()
        with self._db.write() as session:
            wanted = [m.request_id for m in moves] + [r["id"] for r in saves]
            held: dict[str, tuple[str, str]] = {}
            known: dict[str, tuple[str | None, str | None, str | None]] = {}  # job, order, price: for the log
            for start in range(0, len(wanted), _IN_CHUNK):
                # FOR UPDATE: on PostgreSQL nobody changes these rows until we commit (SQLite: BEGIN IMMEDIATE).
                c = table.c
                query = (sa_select(c.id, c.state, c.spec_hash, c.job_id, c.order_id, c.price_json)
                         .where(c.id.in_(wanted[start:start + _IN_CHUNK]), c.lease_owner == owner).with_for_update())
                for i, state, spec_hash, job, order, price in session.execute(query):
                    held[i] = (state, spec_hash)
                    known[i] = (job, order, price)
            winners = [m for m in moves if m.request_id in held and State(held[m.request_id][0]) in m.expected]
            by_columns: dict[tuple[str, ...], list[Move]] = {}
            for move in winners:
                by_columns.setdefault(tuple(sorted(move.changes)), []).append(move)
            for columns, group in by_columns.items():
                statement = (update(table).where(table.c.id == bindparam("b_id"), table.c.lease_owner == owner)
                             .values(state=bindparam("b_state"), version=table.c.version + 1, updated_at=now,
                                     state_since=now,
                                     **{c: bindparam(f"b_{c}") for c in columns}))
                session.execute(statement, [{"b_id": m.request_id, "b_state": m.new.value,
                                             **{f"b_{c}": m.changes[c] for c in columns}} for m in group])
            if winners:
                session.execute(insert(AuditEvent), [
                    {"request_id": m.request_id, "actor": f"worker:{owner}", "action": m.action, "allowed": True,
                     "old_state": held[m.request_id][0], "new_state": m.new.value, "spec_hash": held[m.request_id][1],
                     "detail": m.detail, "at": now} for m in winners])
            moved = {m.request_id for m in winners}
            kept = [r for r in saves if r["id"] in held and r["id"] not in moved]
            if kept:
                statement = (update(table).where(table.c.id == bindparam("b_id"), table.c.lease_owner == owner)
                             .values(progress_json=bindparam("b_progress"), next_poll_at=bindparam("b_next"),
                                     last_error=bindparam("b_error"), lease_owner=None, lease_until=None,
                                     version=table.c.version + 1, updated_at=now))
                session.execute(statement, [{"b_id": r["id"], "b_progress": r["progress_json"],
                                             "b_next": r["next_poll_at"], "b_error": r["last_error"]} for r in kept])
            saved = {r["id"] for r in kept}
            announced = [news_row(m.request_id, m.news, now=now) for m in winners if m.news is not None]
            announced += [news_row(i, event, now=now) for i, event in news if i in saved]
            if announced:
                session.execute(insert(SlackNews), announced)
        for move in winners:
            job, order, price = known.get(move.request_id, (None, None, None))
            state_changed(move.request_id, held[move.request_id][0], move.new.value, f"worker:{owner}", move.action,
                          job_id=move.changes.get("job_id", job), order_id=move.changes.get("order_id", order),
                          progress_json=move.changes.get("progress_json"), price_json=price)
        return moved

    def mark_payment(self, request_id: str, user_id: str) -> str | None:
        """Claim the payment of the request's order for `user_id` in one conditional update, unless anyone
        (the same user included: a double click) holds it. Returns the holder when it is not us."""
        with self._db.write() as session:
            result = session.execute(
                update(AppRequest).where(col(AppRequest.id) == request_id, col(AppRequest.payment_by).is_(None))
                .values(payment_by=user_id, version=AppRequest.version + 1)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return None
            row = session.get(AppRequest, request_id)
            return (row.payment_by if row else None) or "nobody"

    def take_over_payment(self, request_id: str, holder: str, user_id: str) -> bool:
        """Hand a payment claim whose answer never came (the order still unpaid) to `user_id`; only one of
        several clickers gets it."""
        with self._db.write() as session:
            result = session.execute(
                update(AppRequest).where(col(AppRequest.id) == request_id, col(AppRequest.payment_by) == holder)
                .values(payment_by=user_id, version=AppRequest.version + 1)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def clear_payment(self, request_id: str) -> None:
        """Nothing was paid (the cloud refused): allow another try."""
        with self._db.write() as session:
            session.execute(update(AppRequest).where(col(AppRequest.id) == request_id)
                            .values(payment_by=None, version=AppRequest.version + 1)
                            .execution_options(synchronize_session=False))

    def oldest_in_flight(self) -> datetime | None:
        with self._db.read() as session:
            query = select(func.min(AppRequest.submitted_at)).where(
                col(AppRequest.state).in_([s.value for s in IN_FLIGHT_STATES]))
            value: datetime | None = session.exec(query).one()
            return value

    def most_overdue_poll(self, now: datetime | None = None) -> datetime | None:
        with self._db.read() as session:
            query = select(func.min(AppRequest.next_poll_at)).where(
                col(AppRequest.state).in_([s.value for s in IN_FLIGHT_STATES]),
                col(AppRequest.next_poll_at) <= (now or utcnow()))
            value: datetime | None = session.exec(query).one()
            return value

    def stale_submissions(self, now: datetime | None = None) -> list[AppRequest]:
        """Requests left in `submitting` by a worker whose lease ran out (it crashed or hung)."""
        with self._db.read() as session:
            query = select(AppRequest).where(
                AppRequest.state == State.SUBMITTING.value, col(AppRequest.lease_until) < (now or utcnow())
            )
            return list(session.exec(query))

    def due_for_expiry(self, now: datetime | None = None) -> list[AppRequest]:
        with self._db.read() as session:
            query = select(AppRequest).where(
                AppRequest.state == State.PENDING_APPROVAL.value, col(AppRequest.expires_at) < (now or utcnow())
            )
            return list(session.exec(query))

    def queue_reminders(self, *, every: timedelta, most: int, warn_before: timedelta, now: datetime | None = None,
                        limit: int = 100, per_channel: bool = False) -> int:
        """Queue what is due: a round of reminders for the approvers, and EXPIRING for each requester once,
        `warn_before` their request expires. Returns how many pieces of news were queued.

        A round starts when a waiting request is due (`every` after it was created or last reminded, `most`
        times at most). The round is one REMIND news, on one of its requests, for one message that lists every
        request still waiting; each request waiting with reminders left counts it and is next due `every`
        later, so waiting requests share their rounds. `per_channel`: one message per channel the requests were
        asked in (no APPROVAL_CHANNEL), so a channel sees only its own. Written in one transaction that replicas
        take in turn, so a round is queued once; the expiry warnings are compare-and-sets on each row."""
        now = now or utcnow()
        return self._queue_round(every=every, most=most, now=now, limit=limit, per_channel=per_channel) + \
            self._queue_expiry_warnings(warn_before=warn_before, now=now, limit=limit)

    def _queue_round(self, *, every: timedelta, most: int, now: datetime, limit: int, per_channel: bool) -> int:
        pending = col(AppRequest.state) == State.PENDING_APPROVAL.value
        # A request stored before reminders existed (pending at the upgrade) has no remind_at: it takes part in
        # the rounds like any other, and is due `every` after it was made.
        before_reminders = col(AppRequest.remind_at).is_(None) & (col(AppRequest.reminders_sent) == 0)
        reminders_left = (col(AppRequest.remind_at).is_not(None) | before_reminders) & \
            (col(AppRequest.reminders_sent) < most)
        is_due = (col(AppRequest.remind_at) <= now) | (before_reminders & (col(AppRequest.created_at) <= now - every))
        with self._db.write() as session:
            if session.get_bind().dialect.name == "postgresql":  # SQLite's writers already take turns
                session.exec(select(func.pg_advisory_xact_lock(func.hashtext("appserver reminder round"))))
            due = session.exec(select(AppRequest.id).where(pending, reminders_left, is_due).limit(1)).first()
            if due is None:
                return 0
            rows = list(session.exec(select(AppRequest).where(pending, reminders_left)
                                     .order_by(col(AppRequest.created_at)).limit(limit)))
            reminded: list[AppRequest] = []
            for row in rows:
                sent = row.reminders_sent + 1
                result = session.execute(
                    update(AppRequest).where(col(AppRequest.id) == row.id, col(AppRequest.version) == row.version,
                                             pending)
                    .values(version=row.version + 1, reminders_sent=sent, remind_at=now + every if sent < most else None)
                    .execution_options(synchronize_session=False))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # decided or changed this moment: the round goes on without it
                reminded.append(row)
                session.add(AuditEvent(request_id=row.id, actor="bot", action=Event.REMIND.value, old_state=row.state,
                                       new_state=row.state, spec_hash=row.spec_hash, detail=f"reminder {sent} of {most}",
                                       at=now))
            places: dict[str | None, str] = {}  # where the round's message goes → the request that carries it
            for row in reminded:
                if not per_channel or row.channel_id:
                    places.setdefault(row.channel_id if per_channel else None, row.id)
            for request_id in places.values():
                session.add(SlackNews(**news_row(request_id, Event.REMIND, now=now)))
        return len(places)

    def _queue_expiry_warnings(self, *, warn_before: timedelta, now: datetime, limit: int) -> int:
        pending = col(AppRequest.state) == State.PENDING_APPROVAL.value
        warn = ~col(AppRequest.expiry_warned) & (col(AppRequest.expires_at) <= now + warn_before) & \
            (col(AppRequest.expires_at) > now)
        queued = 0
        with self._db.read() as session:
            due = list(session.exec(select(AppRequest).where(pending, warn).limit(limit)))
        for row in due:
            with self._db.write() as session:
                result = session.execute(
                    update(AppRequest).where(col(AppRequest.id) == row.id, col(AppRequest.version) == row.version,
                                             pending).values(version=row.version + 1, expiry_warned=True)
                    .execution_options(synchronize_session=False))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue  # another replica queued it, or the request moved on
                session.add(SlackNews(**news_row(row.id, Event.EXPIRING, now=now)))
                session.add(AuditEvent(request_id=row.id, actor="bot", action=Event.EXPIRING.value, old_state=row.state,
                                       new_state=row.state, spec_hash=row.spec_hash, at=now))
            queued += 1
        return queued

    def waiting_for_approval(self, channel_id: str | None = None, limit: int = 15) -> tuple[list[AppRequest], int]:
        """Requests waiting for an approver's decision, oldest first (asked in `channel_id`, when given): the
        first `limit` of them, and how many there are."""
        with self._db.read() as session:
            where = [col(AppRequest.state) == State.PENDING_APPROVAL.value]
            if channel_id is not None:
                where.append(col(AppRequest.channel_id) == channel_id)
            rows = list(session.exec(select(AppRequest).where(*where).order_by(col(AppRequest.created_at)).limit(limit)))
            total: int = session.exec(select(func.count()).select_from(AppRequest).where(*where)).one()
            return rows, total

    def servers_asked_since(self, requester_id: str, since: datetime) -> int:
        """Servers a person asked for since `since`, in requests that were not refused or withdrawn."""
        with self._db.read() as session:
            return self._servers_asked(session, requester_id, since)

    def approved_without_approver(self, requester_id: str, since: datetime) -> list[Earlier]:
        """A person's requests approved without an approver since `since` that did not end with nothing ordered."""
        with self._db.read() as session:
            return self._approved_without_approver(session, requester_id, since)

    def waiting_for_a_person(self, requester_id: str) -> int:
        """A person's requests waiting for an approver's decision or payment."""
        with self._db.read() as session:
            return self._waiting(session, requester_id)

    @staticmethod
    def _serialize_requester(session: Session, requester_id: str) -> None:
        """One requester's creates take turns (SQLite's writers always do), so each one's checks see the rows
        the one before stored; other people's creates do not wait."""
        if session.get_bind().dialect.name == "postgresql":
            session.exec(select(func.pg_advisory_xact_lock(func.hashtext("appserver requester " + requester_id))))

    @staticmethod
    def _servers_asked(session: Session, requester_id: str, since: datetime) -> int:
        total = session.exec(select(func.coalesce(func.sum(AppRequest.subscription_num), 0)).where(
            AppRequest.requester_id == requester_id, col(AppRequest.created_at) >= since,
            col(AppRequest.state).not_in(NOTHING_ORDERED))).one()
        return int(total)

    @staticmethod
    def _approved_without_approver(session: Session, requester_id: str, since: datetime) -> list[Earlier]:
        # Per request through the audit log's index on request_id: a few rows a person a day.
        auto = exists().where(col(AuditEvent.request_id) == col(AppRequest.id), col(AuditEvent.action) == "auto_approved")
        rows = session.exec(select(AppRequest.subscription_num, AppRequest.price_json).where(
            AppRequest.requester_id == requester_id, col(AppRequest.created_at) >= since,
            col(AppRequest.state).not_in(NOTHING_ORDERED), auto))
        return [Earlier(servers, price) for servers, price in rows]

    @staticmethod
    def _waiting(session: Session, requester_id: str) -> int:
        count: int = session.exec(select(func.count()).select_from(AppRequest).where(
            AppRequest.requester_id == requester_id, col(AppRequest.state).in_(WAITING_FOR_A_PERSON))).one()
        return count

    def oldest_by_state(self) -> dict[str, datetime]:
        """For each state a request can still leave, when its oldest request entered it."""
        waiting = [s.value for s in State if s not in FINAL_STATES]
        with self._db.read() as session:
            rows = session.exec(select(AppRequest.state, func.min(AppRequest.state_since))
                                .where(col(AppRequest.state).in_(waiting)).group_by(AppRequest.state))
            return {state: since for state, since in rows if since is not None}

    def count_by_state(self) -> dict[str, int]:
        with self._db.read() as session:
            rows = session.exec(select(AppRequest.state, func.count()).group_by(AppRequest.state))
            return {state: count for state, count in rows}
