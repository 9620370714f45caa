"""What the tracker knows about a request in flight, stored as JSON on the request, and how it reads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from bot.store.models import AppRequest

BAR_WIDTH = 10


class Progress(BaseModel):
    ready: int = 0
    total: int = 0
    failed: int = 0
    expected_end: datetime | None = None
    order_status: int | None = None
    payment_deadline: datetime | None = None
    # The order as BSS states it: the exact amount to pay (after discounts), the list amount, the currency.
    order_amount: float | None = None
    order_official_amount: float | None = None
    order_currency: str | None = None
    order_paid: bool = False  # the order left "pending payment" (paid); a job in the same answer builds the servers
    payment_unknown_at: datetime | None = None  # a payment was sent but its answer never came
    # A poll failed in a way that needs a person (credentials, the account id): said once in the thread.
    error_reported: bool = False
    quota_note: str | None = None  # the quota check made when the request was submitted
    approval_rule: str | None = None  # why an approver decides it (the guardrail that applied at submission)
    cloud_errors: int = 0
    polls: int = 0
    failures: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, request: AppRequest) -> Progress:
        if request.progress_json:
            return cls.model_validate_json(request.progress_json)
        return cls(total=request.subscription_num)

    def bar(self) -> str:
        total = max(self.total, 1)
        filled = round(BAR_WIDTH * self.ready / total)
        return "▓" * filled + "░" * (BAR_WIDTH - filled) + f" {self.ready}/{self.total} ready"

    def same_view(self, other: Progress) -> bool:
        """Whether a thread showing `other` would look the same (so no edit is needed)."""
        keys = ("ready", "total", "failed", "expected_end", "order_status", "payment_deadline", "order_amount")
        return all(getattr(self, k) == getattr(other, k) for k in keys)
