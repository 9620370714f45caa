"""A price estimate for one create request, as shown to the approver; stored as JSON with the request."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, Field

from bot.money import money
from bot.spec import PERIOD_YEAR

HOURS_PER_MONTH = 730  # the usual 365 * 24 / 12, for a monthly figure of an hourly price
CENT = Decimal("0.01")


class PriceLine(BaseModel):
    label: str  # e.g. "3 \N{MULTIPLICATION SIGN} app server workspace.appstream.general.xlarge.2"
    list_amount: Decimal
    amount: Decimal | None = None  # after the best discount, when one applies


class PriceQuote(BaseModel):
    charging_mode: Literal["prePaid", "postPaid"]
    basis: Literal["period", "hour"]  # prePaid: the whole period for all servers; postPaid: one hour of all servers
    period_text: str | None = None  # "6 months", "1 year"
    period_months: int | None = None  # prePaid: the period in months
    currency: str | None = None  # as BSS says it; when BSS leaves it empty, the site's currency (CNY or USD)
    list_amount: Decimal | None = None
    discounted_amount: Decimal | None = None  # after the best discount; None when none applies
    discount_name: str | None = None
    lines: list[PriceLine] = Field(default_factory=list)
    no_price: str | None = None  # the reason, when there is no price
    # The group's image is a Marketplace product, billed apart: its fee is not in this estimate.
    image_product_id: str | None = None
    quoted_at: datetime

    @property
    def ok(self) -> bool:
        """A price is known."""
        return self.no_price is None and self.list_amount is not None

    @property
    def final_amount(self) -> Decimal | None:
        """What the estimate comes to: after the best discount when one applies, else the list price."""
        return self.discounted_amount if self.discounted_amount is not None else self.list_amount

    def monthly_estimate(self) -> Decimal | None:
        """About a month's cost for all servers: hourly price times 730 (pay-per-use) or the total over the months."""
        amount = self.final_amount
        if not self.ok or amount is None:
            return None
        if self.basis == "hour":
            return (amount * HOURS_PER_MONTH).quantize(CENT, ROUND_HALF_UP)
        if not self.period_months:
            return None
        return (amount / self.period_months).quantize(CENT, ROUND_HALF_UP)

    def money(self, amount: Decimal) -> str:
        """An amount in the quote's currency (`bot.money.money`)."""
        return money(amount, self.currency)

    def summary(self) -> str:
        """One plain line for the approval card, labelled as an estimate."""
        amount = self.final_amount
        if not self.ok or amount is None or self.list_amount is None:
            return f"No price: {self.no_price or 'unknown'}"
        when = "per hour" if self.basis == "hour" else f"for {self.period_text}"
        if self.discounted_amount is None:
            return f"Estimate: {self.money(amount)} {when} (list price)"
        which = "the best discount" if self.basis == "period" else "the discount"
        named = f" “{self.discount_name}”" if self.discount_name else ""
        return f"Estimate: {self.money(amount)} {when} (list price {self.money(self.list_amount)}, after {which}{named})"


def period_text(period_type: int, period_num: int) -> str:
    unit = "year" if period_type == PERIOD_YEAR else "month"
    return f"{period_num} {unit}{'' if period_num == 1 else 's'}"


def period_months(period_type: int, period_num: int) -> int:
    return period_num * 12 if period_type == PERIOD_YEAR else period_num

