"""Which discount pays an order: the one billing requires (an order-price adjustment, type 609) when the
order has one, otherwise the one that takes the most off. PayOrders takes exactly one."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.cloud.models import OrderDiscount

PRICE_ADJUSTMENT = 609  # "must be used when present" (ListOrderDiscounts)
KIND_WORDS = {0: "promotion", 1: "contract discount", 2: "commercial discount", 3: "partner-granted discount",
              PRICE_ADJUSTMENT: "order-price adjustment"}


@dataclass(frozen=True)
class DiscountRef:
    """What PayOrders' `discount_infos` names: the discount's id and type."""

    id: str
    type: int


@dataclass(frozen=True)
class ChosenDiscount:
    ref: DiscountRef
    amount_off: Decimal  # what it takes off this order

    @property
    def words(self) -> str:
        """"contract discount", "order-price adjustment": the discount's kind, in words."""
        return KIND_WORDS.get(self.ref.type, f"discount of type {self.ref.type}")


def amount_off(discount: OrderDiscount, order_id: str) -> Decimal:
    """The amount a discount takes off one order: the sum over its lines (other orders' lines do not count)."""
    return sum((line.discount_amount or Decimal(0) for order in discount.orders if order.order_id == order_id
                for line in order.order_line_items), Decimal(0))


def choose(discounts: list[OrderDiscount], order_id: str) -> ChosenDiscount | None:
    """The discount to pay `order_id` with; None when there is none to use."""
    usable = [d for d in discounts if d.discount_type is not None
              and (not d.orders or any(o.order_id == order_id for o in d.orders))]
    required = [d for d in usable if d.discount_type == PRICE_ADJUSTMENT]
    pool = required or [d for d in usable if amount_off(d, order_id) > 0]
    if not pool:
        return None
    best = max(pool, key=lambda d: amount_off(d, order_id))  # the first of equals: billing's own order
    assert best.discount_type is not None
    return ChosenDiscount(DiscountRef(best.discount_id, best.discount_type), amount_off(best, order_id))
