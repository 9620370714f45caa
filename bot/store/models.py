"""The tables: one row per request (its state, ids and leases), an append-only audit log, and the
Slack news outbox (what people still have to be told, written in the same transaction as the change)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC; the column type stores UTC on SQLite and PostgreSQL alike and returns it aware."""
    return datetime.now(UTC)


class AppRequest(SQLModel, table=True):
    __tablename__ = "requests"
    __table_args__ = (
        Index("ix_requests_state_next_poll", "state", "next_poll_at"),
        Index("ix_requests_requester", "requester_id", "created_at"),
        Index("ix_requests_state_remind", "state", "remind_at"),
        # An order or a job belongs to one request at most (NULLs, nothing linked yet, are not compared).
        Index("uq_requests_job_id", "job_id", unique=True),
        Index("uq_requests_order_id", "order_id", unique=True),
    )

    id: str = Field(primary_key=True, max_length=16)
    requester_id: str = Field(max_length=32)
    team_id: str | None = Field(default=None, max_length=32)
    channel_id: str | None = Field(default=None, max_length=32)
    thread_ts: str | None = Field(default=None, max_length=32)
    approval_channel_id: str | None = Field(default=None, max_length=32)
    approval_ts: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, sa_column=Column(Text))
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    spec_hash: str = Field(max_length=64)
    charging_mode: str = Field(max_length=16)
    subscription_num: int
    server_group_id: str = Field(max_length=128)
    state: str = Field(max_length=32, index=True)
    job_id: str | None = Field(default=None, max_length=64)
    order_id: str | None = Field(default=None, max_length=64)
    server_ids_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    decided_by: str | None = Field(default=None, max_length=32)
    decided_at: datetime | None = None
    decision_reason: str | None = Field(default=None, sa_column=Column(Text))
    outcome_sentence: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    submit_started_at: datetime | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    version: int = Field(default=1)
    # Tracking and leases: who works on the row now, until when, and when it is next due.
    next_poll_at: datetime | None = None
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = None
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    # After an unknown create outcome: when the bot last looked for what was created, and what it found.
    lookup_at: datetime | None = None
    lookup_found: bool | None = None
    # What the tracker last saw: servers ready, expected end, payment deadline (JSON).
    progress_json: str | None = Field(default=None, sa_column=Column(Text))
    # The price quoted before the approval (a `PriceQuote` as JSON): what the approver saw.
    price_json: str | None = Field(default=None, sa_column=Column(Text))
    # After an unknown create: what the cloud shows that may be ours, and what an approver ruled out (JSON).
    candidates_json: str | None = Field(default=None, sa_column=Column(Text))
    # Who pays the order (claimed once, so a double click cannot pay twice).
    payment_by: str | None = Field(default=None, max_length=32)
    # Which courier tells Slack about this request now, and until when (one at a time keeps the order).
    news_owner: str | None = Field(default=None, max_length=64)
    news_until: datetime | None = None
    # Reminders of a pending approval: when the next is due, how many went out, whether the requester was
    # told it is about to expire (each queued once, in the same transaction as its news).
    remind_at: datetime | None = None
    reminders_sent: int = Field(default=0)
    expiry_warned: bool = Field(default=False)
    # When the request entered its state (for "the oldest request waiting in each state" on /metrics).
    state_since: datetime | None = None
    # Where that warning was posted: its Cancel button is taken away once the request cannot be cancelled.
    expiry_warning_channel: str | None = Field(default=None, max_length=32)
    expiry_warning_ts: str | None = Field(default=None, max_length=32)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=16, index=True, foreign_key="requests.id")
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=64)  # a Slack user id, or "bot" / "worker:<id>" for the bot itself
    action: str = Field(max_length=48)
    old_state: str | None = Field(default=None, max_length=32)
    new_state: str | None = Field(default=None, max_length=32)
    spec_hash: str | None = Field(default=None, max_length=64)
    allowed: bool = Field(default=True)
    detail: str | None = Field(default=None, sa_column=Column(Text))


class SlackNews(SQLModel, table=True):
    """One piece of news for Slack about a request, delivered in `id` order and deleted once delivered."""

    __tablename__ = "slack_news"
    __table_args__ = (Index("ix_slack_news_due", "available_at", "request_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=16, index=True, foreign_key="requests.id")
    event: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    available_at: datetime = Field(default_factory=utcnow)  # later for news that waits for a lookup
    attempts: int = Field(default=0)
    # What this piece already posted ({key: {"channel", "ts"}}, or {"since"} for a post sent whose answer never
    # came), so a retry posts only what is missing; and why it waits (a Slack error code) while it does.
    sent_json: str | None = Field(default=None, sa_column=Column(Text))
    last_error: str | None = Field(default=None, max_length=64)


class SlackPace(SQLModel, table=True):
    """When the next Slack call of a kind may go (a method, or a method in one channel), shared by every
    process on the database: Slack's limits are per app and workspace, not per process."""

    __tablename__ = "slack_pace"

    key: str = Field(primary_key=True, max_length=200)
    next_at: float  # Unix seconds


class SeenSignature(SQLModel, table=True):
    """A Slack request signature already accepted by some replica, kept while Slack's timestamp window
    could still let the same signed request in (so every replica refuses a replay)."""

    __tablename__ = "seen_signatures"

    signature: str = Field(primary_key=True, max_length=64)  # the hex HMAC of `X-Slack-Signature`
    expires_at: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))  # Unix seconds, like Slack's


class Heartbeat(SQLModel, table=True):
    """Each running process says it is alive here every few seconds: a web process tells from it whether a
    worker (tracker and courier) is running anywhere."""

    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_role_seen", "role", "seen_at"),)

    process_id: str = Field(primary_key=True, max_length=64)  # host:pid, as leases name their owner
    role: str = Field(max_length=16)  # "web", "worker", or "web+worker" (serve or socket with the tracker)
    started_at: datetime = Field(default_factory=utcnow)
    seen_at: datetime = Field(default_factory=utcnow)
