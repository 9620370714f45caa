"""The states of a request and the only moves between them.

pending_approval → approved → submitting → submitted → provisioning → succeeded | partly_done | failed, with the side
exits rejected, expired, cancelled, submit_failed (the API said no) and needs_attention (the outcome of
a create is unknown: nobody may resend it until a look at the cloud shows nothing was created). A
yearly/monthly order placed without auto-pay waits in awaiting_payment until an approver pays it.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    AWAITING_PAYMENT = "awaiting_payment"
    PROVISIONING = "provisioning"
    SUCCEEDED = "succeeded"
    PARTLY_DONE = "partly_done"  # fewer servers than asked: the rest failed (billing refunds them)
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUBMIT_FAILED = "submit_failed"
    NEEDS_ATTENTION = "needs_attention"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING_APPROVAL: frozenset({State.APPROVED, State.REJECTED, State.EXPIRED, State.CANCELLED}),
    # Submitted straight from approved: a late answer to an earlier create arrived before the resend went out.
    # Back to needs_attention when that answer names an order another request holds: the resend is stopped.
    State.APPROVED: frozenset({State.SUBMITTING, State.CANCELLED, State.SUBMITTED, State.NEEDS_ATTENTION}),
    # Back to approved only when the cloud provably did not act (throttled, never connected).
    State.SUBMITTING: frozenset({State.SUBMITTED, State.SUBMIT_FAILED, State.NEEDS_ATTENTION, State.APPROVED}),
    State.SUBMITTED: frozenset({State.AWAITING_PAYMENT, State.PROVISIONING, State.SUCCEEDED, State.PARTLY_DONE,
                                State.FAILED}),
    State.AWAITING_PAYMENT: frozenset({State.PROVISIONING, State.SUCCEEDED, State.PARTLY_DONE, State.FAILED}),
    State.PROVISIONING: frozenset({State.SUCCEEDED, State.PARTLY_DONE, State.FAILED}),
    # A late answer to our own create may still be recorded; an approver may retry after a clean lookup; an
    # operator may mark it failed once a look after its window found nothing (`appserver-bot admin fail`).
    State.NEEDS_ATTENTION: frozenset({State.SUBMITTED, State.APPROVED, State.SUBMIT_FAILED, State.FAILED}),
    State.SUCCEEDED: frozenset(),
    State.PARTLY_DONE: frozenset(),
    State.FAILED: frozenset(),
    State.REJECTED: frozenset(),
    State.EXPIRED: frozenset(),
    State.CANCELLED: frozenset(),
    State.SUBMIT_FAILED: frozenset(),
}

FINAL_STATES = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)
IN_FLIGHT_STATES = frozenset({State.SUBMITTED, State.AWAITING_PAYMENT, State.PROVISIONING})


def can_move(old: State, new: State) -> bool:
    return new in TRANSITIONS[old]


class TransitionRefused(Exception):
    def __init__(self, old: State, new: State) -> None:
        self.old = old
        self.new = new
        super().__init__(f"a request cannot go from {old} to {new}")


LABELS: dict[State, str] = {
    State.PENDING_APPROVAL: "Waiting for approval",
    State.APPROVED: "Approved, about to be ordered",
    State.SUBMITTING: "Ordering from the cloud",
    State.SUBMITTED: "Ordered, waiting for the cloud",
    State.AWAITING_PAYMENT: "Waiting for payment",
    State.PROVISIONING: "Creating servers",
    State.SUCCEEDED: "Done",
    State.PARTLY_DONE: "Partly done",
    State.FAILED: "Failed",
    State.REJECTED: "Rejected",
    State.EXPIRED: "Expired without a decision",
    State.CANCELLED: "Cancelled",
    State.SUBMIT_FAILED: "Refused by the cloud",
    State.NEEDS_ATTENTION: "Needs attention",
}


def change_line(request_id: str, old: str | None, new: str, actor: str, action: str, *, job_id: str | None,
                order_id: str | None, amount: str | None) -> str:
    """The log line of one state change: the request, the move, who acted, what it follows in the cloud and the
    money involved (the order's amount once billing states it, else the estimate the approver saw)."""
    cloud = ", ".join(part for part in (f"job {job_id}" if job_id else None,
                                        f"order {order_id}" if order_id else None) if part) or "nothing ordered yet"
    return f"{request_id}: {old or 'new'} → {new} by {actor} ({action}); {cloud}; {amount or 'no amount known'}"
