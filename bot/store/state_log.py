"""One INFO line per state change, written once the change is committed (so a lost race logs nothing)."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from bot.cloud.quote import PriceQuote
from bot.lifecycle import change_line
from bot.money import money
from bot.progress import Progress

log = logging.getLogger("bot.lifecycle")


def amount_of(progress_json: str | None, price_json: str | None) -> str | None:
    """The order's exact amount when billing has stated it, else the estimate stored with the request."""
    try:
        progress = Progress.model_validate_json(progress_json) if progress_json else None
        if progress is not None and progress.order_amount is not None:
            return f"order amount {money(progress.order_amount, progress.order_currency)}"
        quote = PriceQuote.model_validate_json(price_json) if price_json else None
    except (ValidationError, ValueError):
        return None
    if quote is None:
        return None
    final = quote.final_amount
    if final is None:
        return f"no price ({quote.no_price})" if quote.no_price else None
    per = "an hour" if quote.basis == "hour" else f"for {quote.period_text}" if quote.period_text else "in all"
    return f"estimate {quote.currency or ''} {final:,.2f} {per}".replace("  ", " ")


def state_changed(request_id: str, old: str | None, new: str, actor: str, action: str, *, job_id: str | None = None,
                  order_id: str | None = None, progress_json: str | None = None,
                  price_json: str | None = None) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info("%s", change_line(request_id, old, new, actor, action, job_id=job_id, order_id=order_id,
                                   amount=amount_of(progress_json, price_json)))
