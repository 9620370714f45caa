"""The sandbox's BSS price inquiries: ListRateOnPeriodDetail, ListOnDemandResourceRatings, ListResourceSpecs.

Same paths, field names and rules as the real ones (as the official SDK and the API pages give them),
priced from `prices`, the list the sandbox's orders are charged from. Error codes: `CBC.0100` (a
parameter is missing) and `CBC.0101` (a parameter is invalid) are BSS's documented generic codes;
`CBC.99006006` for a product that the four keys (service type, resource type, region, spec) do not find
is UNCONFIRMED (only a third-party note gives it), as is the 400 status that goes with it.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.sandbox import prices, seed

if TYPE_CHECKING:
    from bot.sandbox.app import Call, Sandbox

    Route = Callable[[str, str, str, Callable[[Call], Awaitable[Response]]], None]

PRODUCT_NOT_FOUND = "CBC.99006006"  # UNCONFIRMED officially
MISSING = "CBC.0100"
INVALID = "CBC.0101"
MAX_LINES = 100
MAX_SUBSCRIPTIONS = 10_000
PERIOD_TYPES = (prices.PERIOD_MONTH, prices.PERIOD_YEAR)  # what Workspace is sold by; BSS also knows 0, 1, 4
HOUR = 4  # usage_measure_id
SIZE_GB = 17  # size_measure_id
COMMERCIAL_DISCOUNT = 605
CHARGE_MODES = {"1": True, "3": False}  # ListResourceSpecs charge_mode -> sold yearly/monthly


class Refused(Exception):
    """A request BSS refuses: status, code and message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _answer(body: Any) -> JSONResponse:
    return JSONResponse(body, headers={"X-Request-Id": secrets.token_hex(16)})


def _refusal(refused: Refused) -> JSONResponse:
    # The shape of every sandbox error (see app.error).
    return JSONResponse(
        {"error_code": refused.code, "error_msg": str(refused), "request_id": secrets.token_hex(16)},
        status_code=refused.status, headers={"X-Request-Id": secrets.token_hex(16)},
    )


def _number(value: Decimal) -> float:
    # JSON numbers, as BSS sends them; the amounts have at most six decimals, so the float is exact enough.
    return float(value)


def _product_id(spec: str, period: bool) -> str:
    """A stable BSS-style product id (`00301-233164-0--0`) for a spec and charging mode."""
    return f"00301-{zlib.crc32(spec.encode()) % 1_000_000:06d}-0--{0 if period else 1}"


# Reading a request ---------------------------------------------------------------------------------


def _text(line: dict[str, Any], name: str, max_len: int, where: str) -> str:
    value = line.get(name)
    if value is None or value == "":
        raise Refused(MISSING, f"Parameter error: {where}{name} is required.")
    if not isinstance(value, str) or len(value) > max_len:
        raise Refused(INVALID, f"Invalid parameter: {where}{name} must be a string of at most {max_len} characters.")
    return value


def _integer(line: dict[str, Any], name: str, low: int, high: int, where: str, required: bool = True) -> int | None:
    value = line.get(name)
    if value is None:
        if required:
            raise Refused(MISSING, f"Parameter error: {where}{name} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(INVALID, f"Invalid parameter: {where}{name} must be a whole number from {low} to {high}.")
    return value


def _lines(body: Any, sandbox: Sandbox) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise Refused(MISSING, "Parameter error: the request body is required.")
    if _text(body, "project_id", 64, "") != sandbox.config.project_id:
        raise Refused(INVALID, "Invalid parameter: project_id is not a project of this customer.")
    lines = body.get("product_infos")
    if not lines:
        raise Refused(MISSING, "Parameter error: product_infos is required.")
    if not isinstance(lines, list) or len(lines) > MAX_LINES or not all(isinstance(x, dict) for x in lines):
        raise Refused(INVALID, f"Invalid parameter: product_infos must be a list of at most {MAX_LINES} products.")
    ids = [_text(line, "id", 64, f"product_infos[{i}].") for i, line in enumerate(lines)]
    if len(set(ids)) != len(ids):
        raise Refused(INVALID, "Invalid parameter: product_infos[].id must be unique within the request.")
    return lines


def _rate(line: dict[str, Any], index: int, sandbox: Sandbox, period: bool) -> prices.Rate:
    """The product the four keys name, sold in this charging mode; its size fields when it is linear."""
    where = f"product_infos[{index}]."
    keys = (_text(line, "cloud_service_type", 400, where), _text(line, "resource_type", 400, where),
            _text(line, "resource_spec", 400, where))
    region = _text(line, "region", 64, where)
    zone = line.get("available_zone")
    zones = {z["availability_zone"].lower() for z in seed.AVAILABILITY_ZONES}
    rate = prices.catalogue(sandbox.state.products).get(keys)
    if (rate is None or not rate.sold(period) or region != sandbox.config.region
            or (zone and (not isinstance(zone, str) or zone.lower() not in zones))):
        raise Refused(PRODUCT_NOT_FOUND, f"The product is not found: {where}(cloud_service_type, resource_type, "
                                         "region, resource_spec) match no product on sale.")
    return rate


def _size(line: dict[str, Any], rate: prices.Rate, where: str) -> int:
    """A linear product's size in GB (required for disks); 1 for a product sold by the unit."""
    if not rate.linear:
        return 1
    size = _integer(line, "resource_size", 1, 214_783_647, where)
    if _integer(line, "size_measure_id", 0, 100, where) != SIZE_GB:
        raise Refused(INVALID, f"Invalid parameter: {where}size_measure_id must be 17 (GB) for a disk.")
    assert size is not None
    return size


class SandboxRating:
    """The three BSS handlers and the discount control, over the sandbox's live state."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def register(self, route: Route) -> None:
        route("POST", "/v2/bills/ratings/period-resources/subscribe-rate", "ListRateOnPeriodDetail",
              self.rate_on_period)
        route("POST", "/v2/bills/ratings/on-demand-resources", "ListOnDemandResourceRatings", self.rate_on_demand)
        route("POST", "/v2/products/resource-specs-query", "ListResourceSpecs", self.resource_specs)

    async def rate_on_period(self, call: Call) -> Response:
        try:
            return _answer(self._period_rating(call.body))
        except Refused as refused:
            return _refusal(refused)

    async def rate_on_demand(self, call: Call) -> Response:
        try:
            return _answer(self._demand_rating(call.body))
        except Refused as refused:
            return _refusal(refused)

    async def resource_specs(self, call: Call) -> Response:
        try:
            return _answer(self._specs(call.body))
        except Refused as refused:
            return _refusal(refused)

    async def control_discount(self, request: Request) -> Response:
        """`POST /_sandbox/discount {"rate": 0.1, "name": "…"}` offers a discount; `DELETE` takes it away."""
        state = self._sandbox.state
        if request.method == "DELETE":
            state.discount_rate = Decimal(0)
            return Response(status_code=204)
        body = await request.json()
        rate = Decimal(str(body["rate"]))
        if not 0 <= rate < 1:
            return JSONResponse({"error": "rate must be from 0 to below 1"}, status_code=400)
        state.discount_rate = rate
        state.discount_name = str(body.get("name") or state.discount_name)
        return Response(status_code=204)

    # Yearly/monthly ---------------------------------------------------------------------------

    def _period_rating(self, body: Any) -> dict[str, Any]:
        lines = _lines(body, self._sandbox)
        discount = self._sandbox.state.discount_rate
        official: list[dict[str, Any]] = []
        discounted: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            where = f"product_infos[{index}]."
            period_type = _integer(line, "period_type", 0, 4, where)
            period_num = _integer(line, "period_num", 1, 2_147_483_647, where)
            count = _integer(line, "subscription_num", 1, MAX_SUBSCRIPTIONS, where)
            assert period_type is not None and period_num is not None and count is not None
            rate = _rate(line, index, self._sandbox, period=True)
            if period_type not in PERIOD_TYPES:
                raise Refused(INVALID, f"Invalid parameter: {where}period_type {period_type} is not offered "
                                       "for this product (2 month, 3 year).")
            amount = prices.period_amount(rate, period_type, period_num, count, _size(line, rate, where))
            after = prices.after_discount(amount, discount)
            product_id = _product_id(line["resource_spec"], period=True)
            official.append({"id": line["id"], "product_id": product_id,
                             "official_website_amount": amount, "measure_id": 1})
            discounted.append({"id": line["id"], "product_id": product_id, "amount": after,
                               "official_website_amount": amount, "discount_amount": amount - after, "measure_id": 1})
        total = sum((line["official_website_amount"] for line in official), Decimal(0))
        total_after = sum((line["amount"] for line in discounted), Decimal(0))
        options = []
        if discount > 0:
            options.append({
                "discount_id": "sandbox-contract-discount", "amount": total_after, "official_website_amount": total,
                "discount_amount": total - total_after, "measure_id": 1, "discount_type": COMMERCIAL_DISCOUNT,
                "discount_name": self._sandbox.state.discount_name, "best_offer": 1,
                "product_rating_results": discounted,
            })
        return _json({"official_website_rating_result": {
            "official_website_amount": total, "measure_id": 1, "product_rating_results": official,
        }, "optional_discount_rating_results": options, "currency": "CNY"})

    # Pay-per-use --------------------------------------------------------------------------------

    def _demand_rating(self, body: Any) -> dict[str, Any]:
        lines = _lines(body, self._sandbox)
        if isinstance(body, dict) and body.get("inquiry_precision") not in (None, 0, 1):
            raise Refused(INVALID, "Invalid parameter: inquiry_precision must be 0 or 1.")
        state = self._sandbox.state
        results: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            where = f"product_infos[{index}]."
            factor = _text(line, "usage_factor", 64, where)
            hours = self._usage(line, where)
            count = _integer(line, "subscription_num", 1, MAX_SUBSCRIPTIONS, where)
            assert count is not None
            rate = _rate(line, index, self._sandbox, period=False)
            if factor.lower() != "duration":
                raise Refused(INVALID, f"Invalid parameter: {where}usage_factor {factor!r} does not apply to this "
                                       "product (Duration).")
            amount = prices.hourly_amount(rate, hours, count, _size(line, rate, where))
            after = prices.after_discount(amount, state.discount_rate, prices.HOURLY_PRECISION)
            discounts = [] if after == amount else [{
                "discount_id": "sandbox-contract-discount", "discount_type": COMMERCIAL_DISCOUNT,
                "amount": amount - after, "measure_id": 1, "discount_name": state.discount_name,
            }]
            results.append({"id": line["id"], "product_id": _product_id(line["resource_spec"], period=False),
                            "amount": after, "discount_amount": amount - after, "official_website_amount": amount,
                            "measure_id": 1, "discount_rating_results": discounts})
        total = sum((r["official_website_amount"] for r in results), Decimal(0))
        total_after = sum((r["amount"] for r in results), Decimal(0))
        return _json({"amount": total_after, "discount_amount": total - total_after, "official_website_amount": total,
                      "measure_id": 1, "currency": "CNY", "product_rating_results": results})

    @staticmethod
    def _usage(line: dict[str, Any], where: str) -> Decimal:
        value = line.get("usage_value")
        if value is None:
            raise Refused(MISSING, f"Parameter error: {where}usage_value is required.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise Refused(INVALID, f"Invalid parameter: {where}usage_value must be a positive number.")
        if _integer(line, "usage_measure_id", 0, 100, where) != HOUR:
            raise Refused(INVALID, f"Invalid parameter: {where}usage_measure_id must be 4 (hour) for this product.")
        return Decimal(str(value))

    # Specs --------------------------------------------------------------------------------------

    def _specs(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Refused(MISSING, "Parameter error: the request body is required.")
        service = _text(body, "cloud_service_type", 64, "")
        resource = _text(body, "resource_type", 64, "")
        region = _text(body, "region_code", 64, "")
        mode = body.get("charge_mode")
        if mode is None or mode == "":
            raise Refused(MISSING, "Parameter error: charge_mode is required.")
        period = CHARGE_MODES.get(str(mode))
        if period is None:
            raise Refused(INVALID, "Invalid parameter: charge_mode must be 1 (yearly/monthly) or 3 (pay-per-use).")
        wanted = self._filter(body.get("filters"))
        limit = _integer(body, "limit", 1, 100, "", required=False)
        try:
            # The marker only works together with a limit: without one, the first page comes again.
            start = int(body.get("marker") or 0) if limit is not None else 0
        except (TypeError, ValueError):
            raise Refused(INVALID, "Invalid parameter: marker is not one this API gave.") from None
        limit = limit or 100
        found = [
            {"cloud_service_type": cst, "cloud_service_type_name": "Workspace", "resource_type": rt,
             "resource_type_name": "Disk" if rate.linear else "App server", "resource_spec": spec,
             "resource_spec_name": rate.name, "charge_mode": str(mode), "region_code": region}
            for (cst, rt, spec), rate in prices.catalogue(self._sandbox.state.products).items()
            if (cst, rt) == (service, resource) and region == self._sandbox.config.region and rate.sold(period)
            and (wanted is None or spec == wanted)
        ]
        more = start + limit < len(found)
        return {"page_info": {"next_marker": str(start + limit) if more else None},
                "cloud_service_basics": found[start:start + limit]}

    @staticmethod
    def _filter(filters: Any) -> str | None:
        if not filters:
            return None
        if not isinstance(filters, list) or len(filters) > 1 or not isinstance(filters[0], dict):
            raise Refused(INVALID, "Invalid parameter: filters takes at most one filter.")
        if filters[0].get("key") != "RESOURCE_SPEC":
            raise Refused(INVALID, "Invalid parameter: filters[0].key must be RESOURCE_SPEC.")
        return _text(filters[0], "value", 400, "filters[0].")


def _json(body: dict[str, Any]) -> dict[str, Any]:
    """Decimals become JSON numbers."""

    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return _number(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    result: dict[str, Any] = convert(body)
    return result
