"""What Pay charges: the order's usable discounts, read into the request's progress before the Pay prompt
is shown and again right before paying."""

from __future__ import annotations

from typing import Protocol

from bot.cloud.discounts import choose
from bot.cloud.errors import CloudError, describe
from bot.cloud.models import OrderDiscount
from bot.money import money
from bot.progress import Progress

VIEW_DISCOUNT_ACTION = "billing:contract:viewDiscount"


class DiscountReader(Protocol):
    async def list_order_discounts(self, order_id: str) -> list[OrderDiscount]: ...


async def read_discounts(reader: DiscountReader, order_id: str, progress: Progress) -> None:
    """Choose the discount Pay uses (`bot.cloud.discounts.choose`) and put it, or why none could be read, into
    `progress`. Unreadable discounts leave no discount chosen: Pay then charges the list price. A passing failure
    after a good reading keeps that reading, so the prompt does not flip to the list price on a blip (a
    discount gone since is refused by PayOrders itself, never charged otherwise)."""
    try:
        discounts = await reader.list_order_discounts(order_id)
    except CloudError as error:
        if progress.discounts_read and error.retryable_read:
            return  # a blip (throttled, down, no answer): the last reading stands, and billing checks it at Pay
        # A short reason, said inside the prompt's one sentence about it.
        why = f"the bot's cloud account lacks the IAM action {VIEW_DISCOUNT_ACTION}" if error.status == 403 else \
            describe(error).rstrip(".")
        progress.discounts_read, progress.discounts_error = False, why
        progress.discount_id = progress.discount_type = progress.discount_off = None
        return
    chosen = choose(discounts, order_id)
    progress.discounts_read, progress.discounts_error = True, None
    progress.discount_id = chosen.ref.id if chosen else None
    progress.discount_type = chosen.ref.type if chosen else None
    progress.discount_off = chosen.amount_off if chosen else None


def same_charge(a: Progress, b: Progress) -> bool:
    """Whether two readings would charge the same, with the same discount (what a Pay prompt promised)."""
    return (a.to_charge(), a.discount_id, a.discounts_read) == (b.to_charge(), b.discount_id, b.discounts_read)


def discount_words(progress: Progress) -> str:
    """The discount Pay uses, in words: "the contract discount of CNY 608.40", or why there is none."""
    chosen = progress.discount
    if chosen is not None:
        return f"the {chosen.words} of {money(chosen.amount_off, progress.order_currency)}"
    if progress.discounts_read:
        return "no discount (none applies to this order)"
    return "no discount (the order's discounts could not be read)"


def charge_words(progress: Progress) -> str:
    """"CNY 5,475.60 with the contract discount of CNY 608.40 (list price CNY 6,084.00)": what Pay charges."""
    charge, price = progress.to_charge(), progress.list_price()
    if charge is None or price is None:
        return "the order's amount (see the Billing Center)"
    text = f"{money(charge, progress.order_currency)} with {discount_words(progress)}"
    return text + (f" (list price {money(price, progress.order_currency)})" if progress.discount is not None else "")
