"""The sandbox's price list: what BSS's price inquiries answer and what an order charges, from one source.

A product is sold yearly/monthly when it has a `monthly_price` and pay-per-use when it has an
`hourly_price`; a system disk is priced per GB (`seed.VOLUME_PRICES`). A period of years costs 0.83 of
the same number of months. Every line is rounded to the cent on its own and an order's amount is the sum
of its lines, so an estimate and the order it describes agree to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bot.sandbox import seed

PERIOD_MONTH = 2
PERIOD_YEAR = 3
YEARLY_FACTOR = Decimal("0.83")
CENT = Decimal("0.01")
HOURLY_PRECISION = Decimal("0.000001")  # inquiry_precision 0: at most six decimals


@dataclass(frozen=True)
class Rate:
    """One product BSS sells: the price of one unit (a server, or one GB of disk)."""

    name: str
    monthly: Decimal | None
    hourly: Decimal | None
    linear: bool  # priced by size (GB), as disks are

    def sold(self, period: bool) -> bool:
        return (self.monthly if period else self.hourly) is not None


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def catalogue(products: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str], Rate]:
    """What BSS sells in the region, by (cloud service type, resource type, resource spec)."""
    rates = {
        _server_keys(pid, p): Rate(p.get("descriptions", pid), _money(p.get("monthly_price")),
                                   _money(p.get("hourly_price")), linear=False)
        for pid, p in products.items()
    }
    for volume in seed.VOLUME_TYPES:
        monthly, hourly = seed.VOLUME_PRICES[volume["resource_spec_code"]]
        rates[_disk_keys(volume)] = Rate(volume["name"][0]["en_us"], _money(monthly), _money(hourly), linear=True)
    return rates


def _server_keys(product_id: str, product: dict[str, Any]) -> tuple[str, str, str]:
    return product["cloud_service_type"], product["resource_type"], product_id


def _disk_keys(volume: dict[str, Any]) -> tuple[str, str, str]:
    return volume["cloud_service_type"], volume["resource_type"], volume["resource_spec_code"]


def months(period_type: int, period_num: int) -> int:
    return period_num * 12 if period_type == PERIOD_YEAR else period_num


def period_amount(rate: Rate, period_type: int, period_num: int, count: int, size: int = 1) -> Decimal:
    """The list price of one line for the whole period, all units, to the cent."""
    if rate.monthly is None:
        raise ValueError(f"{rate.name} is not sold yearly/monthly")
    amount = rate.monthly * size * count * months(period_type, period_num)
    if period_type == PERIOD_YEAR:
        amount *= YEARLY_FACTOR
    return amount.quantize(CENT, ROUND_HALF_UP)


def hourly_amount(rate: Rate, hours: Decimal, count: int, size: int = 1) -> Decimal:
    if rate.hourly is None:
        raise ValueError(f"{rate.name} is not sold pay-per-use")
    return (rate.hourly * size * count * hours).quantize(HOURLY_PRECISION, ROUND_HALF_UP)


def after_discount(amount: Decimal, rate: Decimal, precision: Decimal = CENT) -> Decimal:
    return (amount * (1 - rate)).quantize(precision, ROUND_HALF_UP)


def order_amount(products: dict[str, dict[str, Any]], spec: dict[str, Any]) -> Decimal:
    """What a yearly/monthly CreateAppServers order charges at list price: the servers and their system disks."""
    return sum(order_lines(products, spec), Decimal(0))


def order_lines(products: dict[str, dict[str, Any]], spec: dict[str, Any]) -> list[Decimal]:
    """The list price of each line of a yearly/monthly order: the servers, then their system disks (as the
    price inquiry prices them, line by line, so a discount taken per line agrees with the estimate)."""
    extend = spec.get("create_server_extend_param") or {}
    period_type, period_num = int(extend.get("period_type", PERIOD_MONTH)), int(extend.get("period_num", 1))
    count = int(spec["subscription_num"])
    rates = catalogue(products)
    lines = [period_amount(rates[_server_keys(spec["product_id"], products[spec["product_id"]])],
                           period_type, period_num, count)]
    disk = spec.get("root_volume")
    if disk:
        volume = next(v for v in seed.VOLUME_TYPES if v["volume_type"] == disk["type"])
        lines.append(period_amount(rates[_disk_keys(volume)], period_type, period_num, count, int(disk["size"])))
    return lines
