"""Money as people read it: `Decimal` amounts (never a binary float), one formatter with the currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ONE_PERCENT = Decimal("0.01")


def money(amount: Decimal, currency: str | None = None) -> str:
    """"CNY 6,084.00": thousands separators, two decimals, more only when the amount has them (hourly prices)."""
    cents = amount.quantize(CENT, ROUND_HALF_UP)
    text = f"{cents:,.2f}" if cents == amount else f"{amount.normalize():,f}"
    return f"{currency} {text}" if currency else text


def button_amount(amount: Decimal, currency: str | None = None) -> str:
    """The amount a Pay button carries: no separators, to the cent (compared as text with the order's)."""
    text = f"{amount.quantize(CENT, ROUND_HALF_UP):.2f}"
    return f"{currency} {text}" if currency else text


def gap_over_one_percent(amount: Decimal, reference: Decimal) -> bool:
    """Whether `amount` differs from `reference` by more than 1 % of it (a cent at least)."""
    gap = abs(amount - reference)
    return gap >= CENT and gap > abs(reference) * ONE_PERCENT
