"""The price quoted for a request before its approval, as stored with it (what the approver saw)."""

from __future__ import annotations

from bot.cloud.quote import PriceQuote
from bot.store.models import AppRequest


def quote_of(request: AppRequest) -> PriceQuote | None:
    """None for a request stored without a quote."""
    return PriceQuote.model_validate_json(request.price_json) if request.price_json else None
