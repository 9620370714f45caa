"""What the tracker knows about a request in flight, stored as JSON on the request, and how it reads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from bot.cloud.discounts import ChosenDiscount, DiscountRef
from bot.store.models import AppRequest

BAR_WIDTH = 10


class Progress(BaseModel):
    ready: int = 0
    total: int = 0
    failed: int = 0
    expected_end: datetime | None = None
    order_status: int | None = None
    payment_deadline: datetime | None = None
    # The order as BSS states it: its amount, the list amount, the currency.
    order_amount: Decimal | None = None
    order_official_amount: Decimal | None = None
    order_currency: str | None = None
    # The discount Pay uses (ListOrderDiscounts, read as the order waits for payment and again at Pay), or why
    # the discounts could not be read (then Pay charges the list price, after a confirm that says so).
    discounts_read: bool = False
    discount_id: str | None = None
    discount_type: int | None = None
    discount_off: Decimal | None = None
    discounts_error: str | None = None
    # What Pay charged, and with which discount (in words): stored, audited, and named in the "paid" reply.
    charged_amount: Decimal | None = None
    charged_with: str | None = None
    # PayOrders answered but billing does not show the order paid: a proxy payment for the master account.
    proxy_payment_at: datetime | None = None
    proxy_reminded: bool = False
    order_completed_at: datetime | None = None  # when the order was first seen completed (its servers listed after)
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

    @property
    def discount(self) -> ChosenDiscount | None:
        if self.discount_id is None or self.discount_type is None:
            return None
        return ChosenDiscount(DiscountRef(self.discount_id, self.discount_type), self.discount_off or Decimal(0))

    def list_price(self) -> Decimal | None:
        """The order's list price: what PayOrders charges with no discount."""
        return self.order_official_amount if self.order_official_amount is not None else self.order_amount

    def to_charge(self) -> Decimal | None:
        """What Pay charges: the list price less the chosen discount (nothing off when none is usable, or the
        discounts could not be read)."""
        price = self.list_price()
        if price is None:
            return None
        return max(price - (self.discount_off or Decimal(0)), Decimal(0)) if self.discount_id else price

    def bar(self) -> str:
        total = max(self.total, 1)
        filled = round(BAR_WIDTH * self.ready / total)
        return "▓" * filled + "░" * (BAR_WIDTH - filled) + f" {self.ready}/{self.total} ready"

    def same_view(self, other: Progress) -> bool:
        """Whether a thread showing `other` would look the same (so no edit is needed)."""
        keys = ("ready", "total", "failed", "expected_end", "order_status", "payment_deadline", "order_amount",
                "discount_id", "discount_off", "discounts_error", "proxy_payment_at")
        return all(getattr(self, k) == getattr(other, k) for k in keys)
