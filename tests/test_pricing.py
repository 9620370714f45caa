"""The price estimate for a create request: the Pricer against the sandbox's BSS over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bot.cloud.client import Cloud
from bot.cloud.pricing import PriceLine, PriceQuote, Pricer, site_currency
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.spec import parse_spec
from tests.specs import office_body, prepaid_body

SERVER = "workspace.appstream.general.xlarge.2"
SERVER_KEYS = {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.appstream",
               "resource_spec": SERVER}
DISK_KEYS = {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
             "resource_spec": "workspace.volume.high"}
WHERE = {"region": "cn-north-4", "available_zone": "cn-north-4a"}
DISK_SIZE = {"resource_size": 80, "size_measure_id": 17}
TIMES = "\N{MULTIPLICATION SIGN}"
RATING_OPERATIONS = ("ListRateOnPeriodDetail", "ListOnDemandResourceRatings")


def yearly_monthly(count: int, period_type: int, period_num: int) -> dict[str, Any]:
    body = prepaid_body(count)
    body["create_server_extend_param"].update(period_type=period_type, period_num=period_num)
    return body


def cloud_calls(sandbox: Sandbox) -> list[str]:
    return [c["operation"] for c in sandbox.log]


def spec_query(keys: dict[str, str], charge_mode: str) -> dict[str, Any]:
    return {"cloud_service_type": keys["cloud_service_type"], "resource_type": keys["resource_type"],
            "region_code": "cn-north-4", "charge_mode": charge_mode,
            "filters": [{"key": "RESOURCE_SPEC", "value": keys["resource_spec"]}]}


def a_product_bss_does_not_list(sandbox: Sandbox, product_id: str, **prices: float) -> None:
    """A product Workspace offers that BSS sells only with the given prices (none: not at all)."""
    offered = {k: v for k, v in sandbox.state.products[SERVER].items() if not k.endswith("_price")}
    sandbox.state.products[product_id] = {**offered, "product_id": product_id, **prices}


# Yearly/monthly ---------------------------------------------------------------------------------


async def test_a_yearly_monthly_quote_sends_the_sdk_fields_and_equals_the_order(cloud: Cloud, sandbox: Sandbox) -> None:
    spec = parse_spec(prepaid_body(count=3, months=6))
    quote = await Pricer.from_cloud(cloud).quote(spec)

    specs = [c["body"] for c in sandbox.calls("ListResourceSpecs")]
    assert sorted(specs, key=json.dumps) == sorted([spec_query(SERVER_KEYS, "1"), spec_query(DISK_KEYS, "1")],
                                                   key=json.dumps)
    [rating] = sandbox.calls("ListRateOnPeriodDetail")
    period = {"period_type": 2, "period_num": 6, "subscription_num": 3}
    assert rating["body"] == {"project_id": sandbox.config.project_id, "product_infos": [
        {"id": "1", **SERVER_KEYS, **WHERE, **period},
        {"id": "2", **DISK_KEYS, **WHERE, **DISK_SIZE, **period},
    ]}
    assert sandbox.calls("ListOnDemandResourceRatings") == []

    # 310 a month per server, 0.35 a GB-month for the SAS disk: 3 servers for 6 months.
    assert quote.ok and quote.no_price is None
    assert (quote.charging_mode, quote.basis, quote.period_text, quote.currency) == ("prePaid", "period", "6 months", "CNY")
    assert quote.list_amount == Decimal("6084.00") and quote.discounted_amount is None and quote.discount_name is None
    assert quote.lines == [
        PriceLine(label=f"3 {TIMES} app server {SERVER}", list_amount=Decimal("5580.00")),
        PriceLine(label=f"3 {TIMES} system disk SAS 80 GB", list_amount=Decimal("504.00")),
    ]
    assert quote.summary() == "Estimate: CNY 6,084.00 for 6 months (list price)"
    assert quote.monthly_estimate() == Decimal("1014.00")

    created = await cloud.workspace.create_app_servers(spec)
    assert created.order_id
    order = (await cloud.billing.show_order(created.order_id)).order_info
    assert Decimal(str(order.amount_after_discount)) == quote.list_amount


@pytest.mark.parametrize(("count", "period_type", "period_num", "disk"), [
    (1, 3, 1, {"type": "SAS", "size": 80}), (2, 3, 2, {"type": "SSD", "size": 150}), (4, 2, 9, {"type": "ESSD", "size": 10}),
])
async def test_in_the_sandbox_every_estimate_is_what_the_order_charges(
    cloud: Cloud, count: int, period_type: int, period_num: int, disk: dict[str, Any]
) -> None:
    body = yearly_monthly(count, period_type, period_num)
    body["root_volume"] = disk
    spec = parse_spec(body)
    quote = await Pricer.from_cloud(cloud).quote(spec)
    created = await cloud.workspace.create_app_servers(spec)
    assert created.order_id
    order = (await cloud.billing.show_order(created.order_id)).order_info
    assert quote.ok and quote.list_amount == Decimal(str(order.amount_after_discount))
    assert quote.period_text == (f"{period_num} year" + ("s" if period_num > 1 else "") if period_type == 3
                                 else f"{period_num} months")


async def test_a_customer_discount_is_the_best_offer(cloud: Cloud, sandbox: Sandbox, sandbox_url: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        answer = await control.post("/_sandbox/discount", json={"rate": 0.1, "name": "Contract 2026"})
        assert answer.status_code == 204
    pricer = Pricer.from_cloud(cloud)
    quote = await pricer.quote(parse_spec(prepaid_body(count=3, months=6)))
    assert quote.list_amount == Decimal("6084.00") and quote.discounted_amount == Decimal("5475.60")
    assert quote.discount_name == "Contract 2026"
    assert [line.amount for line in quote.lines] == [Decimal("5022.00"), Decimal("453.60")]
    assert quote.summary() == ("Estimate: CNY 5,475.60 for 6 months (list price CNY 6,084.00, after the best "
                               "discount “Contract 2026”)")
    assert quote.monthly_estimate() == Decimal("912.60")

    hourly = await pricer.quote(parse_spec(office_body(count=3)))
    assert hourly.list_amount == Decimal("1.98") and hourly.discounted_amount == Decimal("1.782")
    assert hourly.summary() == "Estimate: CNY 1.782 per hour (list price CNY 1.98, after the discount “Contract 2026”)"

    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        assert (await control.delete("/_sandbox/discount")).status_code == 204
    # The same inquiry within ten minutes is answered from the cache; a new Pricer (or ten minutes) asks again.
    assert (await pricer.quote(parse_spec(prepaid_body(count=3, months=6)))).discounted_amount == Decimal("5475.60")
    again = await Pricer.from_cloud(cloud).quote(parse_spec(prepaid_body(count=3, months=6)))
    assert again.discounted_amount is None and again.summary().endswith("(list price)")


# Pay-per-use ------------------------------------------------------------------------------------


async def test_a_pay_per_use_quote_is_one_hour_of_every_server_and_disk(cloud: Cloud, sandbox: Sandbox) -> None:
    quote = await Pricer.from_cloud(cloud).quote(parse_spec(office_body(count=3)))

    specs = [c["body"] for c in sandbox.calls("ListResourceSpecs")]
    assert sorted(specs, key=json.dumps) == sorted([spec_query(SERVER_KEYS, "3"), spec_query(DISK_KEYS, "3")],
                                                   key=json.dumps)
    [rating] = sandbox.calls("ListOnDemandResourceRatings")
    usage = {"usage_factor": "Duration", "usage_value": 1, "usage_measure_id": 4, "subscription_num": 3}
    assert rating["body"] == {"project_id": sandbox.config.project_id, "product_infos": [
        {"id": "1", **SERVER_KEYS, **WHERE, **usage},
        {"id": "2", **DISK_KEYS, **WHERE, **DISK_SIZE, **usage},
    ]}
    assert sandbox.calls("ListRateOnPeriodDetail") == []

    # 0.62 an hour per server and 0.0005 a GB-hour for the disk.
    assert (quote.charging_mode, quote.basis, quote.period_text) == ("postPaid", "hour", None)
    assert quote.list_amount == Decimal("1.98") and quote.discounted_amount is None
    assert [(line.list_amount, line.amount) for line in quote.lines] == [(Decimal("1.86"), None), (Decimal("0.12"), None)]
    assert quote.summary() == "Estimate: CNY 1.98 per hour (list price)"
    assert quote.monthly_estimate() == Decimal("1445.40")


# No price -----------------------------------------------------------------------------------------


async def test_a_spec_bss_does_not_list_is_no_price_and_no_rating_call(cloud: Cloud, sandbox: Sandbox) -> None:
    a_product_bss_does_not_list(sandbox, "workspace.appstream.general.large.2")
    pricer = Pricer.from_cloud(cloud)
    body = prepaid_body(count=2, months=3)
    body["product_id"] = "workspace.appstream.general.large.2"
    quote = await pricer.quote(parse_spec(body))
    assert not quote.ok and quote.list_amount is None and quote.lines == []
    assert quote.no_price == ("the product workspace.appstream.general.large.2 is not in the billing catalogue for "
                              "cn-north-4 (yearly/monthly)")
    assert quote.summary() == f"No price: {quote.no_price}"
    assert quote.period_text == "3 months"
    assert not any(sandbox.calls(op) for op in RATING_OPERATIONS)

    # "Not listed" is remembered too: asking again calls nothing.
    sandbox.log.clear()
    assert (await pricer.quote(parse_spec(body))).no_price == quote.no_price
    assert cloud_calls(sandbox) == []


async def test_a_product_sold_only_yearly_monthly_has_no_hourly_price(cloud: Cloud, sandbox: Sandbox) -> None:
    a_product_bss_does_not_list(sandbox, "workspace.appstream.general.large.4", monthly_price=200.0)
    body = office_body(count=1, product_id="workspace.appstream.general.large.4")
    quote = await Pricer.from_cloud(cloud).quote(parse_spec(body))
    assert quote.no_price == ("the product workspace.appstream.general.large.4 is not in the billing catalogue for "
                              "cn-north-4 (pay-per-use)")
    assert not any(sandbox.calls(op) for op in RATING_OPERATIONS)
    prepaid = await Pricer.from_cloud(cloud).quote(parse_spec({**body, **{k: v for k, v in prepaid_body().items()
                                                                         if k == "create_server_extend_param"}}))
    assert prepaid.ok and prepaid.list_amount == Decimal("228.00")  # 200 + 80 GB x 0.35


async def test_a_product_workspace_does_not_offer_is_no_price_without_asking_bss(cloud: Cloud, sandbox: Sandbox) -> None:
    quote = await Pricer.from_cloud(cloud).quote(parse_spec(office_body(product_id="workspace.appstream.unknown")))
    assert quote.no_price == "the product workspace.appstream.unknown is not in the Workspace catalogue for cn-north-4"
    assert sandbox.calls("ListResourceSpecs") == [] and not any(sandbox.calls(op) for op in RATING_OPERATIONS)


async def test_a_product_without_billing_codes_is_no_price(cloud: Cloud, sandbox: Sandbox) -> None:
    product = {k: v for k, v in sandbox.state.products[SERVER].items() if k not in ("cloud_service_type", "resource_type")}
    sandbox.state.products["workspace.appstream.nocodes"] = {**product, "product_id": "workspace.appstream.nocodes"}
    quote = await Pricer.from_cloud(cloud).quote(parse_spec(office_body(product_id="workspace.appstream.nocodes")))
    assert quote.no_price == "the Workspace catalogue gives no billing codes for the product workspace.appstream.nocodes"
    assert sandbox.calls("ListResourceSpecs") == []


# Caching ------------------------------------------------------------------------------------------


async def test_a_second_quote_makes_only_the_rating_call(cloud: Cloud, sandbox: Sandbox) -> None:
    pricer = Pricer.from_cloud(cloud)
    first = await pricer.quote(parse_spec(prepaid_body(count=1, months=2)))
    assert {"ListProduct", "ListVolumeType", "ListResourceSpecs", "ListRateOnPeriodDetail"} <= set(cloud_calls(sandbox))
    sandbox.log.clear()
    second = await pricer.quote(parse_spec(prepaid_body(count=2, months=4)))
    assert cloud_calls(sandbox) == ["ListRateOnPeriodDetail"]
    assert second.list_amount == 4 * first.list_amount  # type: ignore[operator]


async def test_the_catalogue_is_asked_again_after_an_hour(cloud: Cloud, sandbox: Sandbox) -> None:
    now = [1000.0]
    pricer = Pricer(cloud.workspace, cloud.rating, region=cloud.region, clock=lambda: now[0])
    spec = parse_spec(office_body())
    await pricer.quote(spec)
    sandbox.log.clear()
    now[0] += 3599
    await pricer.quote(spec)
    assert cloud_calls(sandbox) == ["ListOnDemandResourceRatings"]
    sandbox.log.clear()
    now[0] += 2
    await pricer.quote(spec)
    # The catalogue is asked again; the price inquiry, answered 2 s ago, comes from its ten-minute cache.
    assert sorted(cloud_calls(sandbox)) == ["ListProduct", "ListResourceSpecs", "ListResourceSpecs", "ListVolumeType"]


async def test_the_same_inquiry_within_ten_minutes_is_answered_from_the_cache(cloud: Cloud, sandbox: Sandbox) -> None:
    now = [1000.0]
    pricer = Pricer(cloud.workspace, cloud.rating, region=cloud.region, clock=lambda: now[0])
    first = await pricer.quote(parse_spec(prepaid_body(count=2, months=3)))
    sandbox.log.clear()
    now[0] += 599
    same = await pricer.quote(parse_spec(prepaid_body(count=2, months=3)))
    assert same.model_dump(exclude={"quoted_at"}) == first.model_dump(exclude={"quoted_at"})
    assert cloud_calls(sandbox) == []
    await pricer.quote(parse_spec(prepaid_body(count=3, months=3)))  # another inquiry
    assert cloud_calls(sandbox) == ["ListRateOnPeriodDetail"]
    sandbox.log.clear()
    now[0] += 2
    await pricer.quote(parse_spec(prepaid_body(count=2, months=3)))  # ten minutes on: asked again
    assert cloud_calls(sandbox) == ["ListRateOnPeriodDetail"]


async def test_the_cache_is_bounded(cloud: Cloud, sandbox: Sandbox) -> None:
    pricer = Pricer(cloud.workspace, cloud.rating, region=cloud.region, cache_size=1)
    await pricer.quote(parse_spec(office_body()))
    await pricer.quote(parse_spec(office_body(product_id="workspace.appstream.general.xlarge.4")))
    sandbox.log.clear()
    await pricer.quote(parse_spec(office_body()))
    # One product fits: the first one was forgotten for the second, and is asked for again.
    assert [c["query"] for c in sandbox.calls("ListProduct")] == [{"product_id": SERVER}]


# Cloud trouble ------------------------------------------------------------------------------------


async def test_a_bss_fault_is_no_price_with_the_cloud_error(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="ListRateOnPeriodDetail", kind="500", count=10))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=30).quote(parse_spec(prepaid_body()))
    assert not quote.ok and quote.no_price is not None
    assert quote.no_price.startswith("The cloud had an internal error") and "request id" in quote.no_price
    # A price inquiry only reads, so it was retried like a read before giving up.
    assert [c["status"] for c in sandbox.calls("ListRateOnPeriodDetail")] == [500, 500, 500, 500]


async def test_a_passing_bss_fault_is_retried_and_priced(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="ListResourceSpecs", kind="503"))
    sandbox.faults.add(ScriptedFault(operation="ListOnDemandResourceRatings", kind="429"))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=30).quote(parse_spec(office_body()))
    assert quote.ok
    assert [c["status"] for c in sandbox.calls("ListOnDemandResourceRatings")] == [429, 200]


async def wait_for_the_late_answer(sandbox: Sandbox, operation: str) -> None:
    """The slow call is still being served: wait for it so it lands in this test's log, not the next one's."""
    for _ in range(200):
        if sandbox.calls(operation):
            return
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_slow_billing_service_is_no_price_within_the_timeout(cloud: Cloud, sandbox: Sandbox) -> None:
    pricer = Pricer.from_cloud(cloud)
    assert (await pricer.quote(parse_spec(prepaid_body()))).ok  # the catalogue is known: only the rating is slow
    sandbox.log.clear()
    sandbox.faults.configure(FaultSettings(slow_seconds=2.0))
    sandbox.faults.add(ScriptedFault(operation="ListRateOnPeriodDetail", kind="slow"))
    pricer.timeout_seconds = 0.5
    quote = await pricer.quote(parse_spec(prepaid_body(count=2, months=6)))
    # The quote came back before the billing service answered.
    assert sandbox.calls("ListRateOnPeriodDetail") == []
    assert quote.no_price == "the billing service did not answer within 0.5 s"
    assert quote.summary() == "No price: the billing service did not answer within 0.5 s"
    assert quote.charging_mode == "prePaid" and quote.period_text == "6 months"
    await wait_for_the_late_answer(sandbox, "ListRateOnPeriodDetail")


@pytest.mark.slow
async def test_a_slow_workspace_catalogue_is_named_as_such(cloud: Cloud, sandbox: Sandbox) -> None:
    await cloud.workspace.project_id()
    sandbox.faults.configure(FaultSettings(slow_seconds=2.0))
    sandbox.faults.add(ScriptedFault(operation="ListVolumeType", kind="slow"))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=0.5).quote(parse_spec(office_body()))
    assert quote.no_price == "the Workspace catalogue did not answer within 0.5 s"
    assert quote.charging_mode == "postPaid" and quote.basis == "hour"
    await wait_for_the_late_answer(sandbox, "ListVolumeType")


# The quote itself ---------------------------------------------------------------------------------

AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


def test_summary_of_a_yearly_monthly_list_price() -> None:
    quote = PriceQuote(charging_mode="prePaid", basis="period", period_text="1 year", period_months=12,
                       currency="CNY", list_amount=Decimal("3366.48"), quoted_at=AT)
    assert quote.ok
    assert quote.summary() == "Estimate: CNY 3,366.48 for 1 year (list price)"
    assert quote.monthly_estimate() == Decimal("280.54")


def test_summary_of_a_yearly_monthly_discount() -> None:
    quote = PriceQuote(charging_mode="prePaid", basis="period", period_text="6 months", period_months=6,
                       currency="USD", list_amount=Decimal("1400"), discounted_amount=Decimal("1234"),
                       discount_name="Partner discount", quoted_at=AT)
    assert quote.summary() == ("Estimate: USD 1,234.00 for 6 months (list price USD 1,400.00, after the best discount "
                               "“Partner discount”)")
    assert quote.monthly_estimate() == Decimal("205.67")


def test_summary_of_an_hourly_price() -> None:
    quote = PriceQuote(charging_mode="postPaid", basis="hour", currency="CNY", list_amount=Decimal("3.6"), quoted_at=AT)
    assert quote.summary() == "Estimate: CNY 3.60 per hour (list price)"
    assert quote.monthly_estimate() == Decimal("2628.00")
    discounted = quote.model_copy(update={"discounted_amount": Decimal("3.0625")})
    assert discounted.summary() == "Estimate: CNY 3.0625 per hour (list price CNY 3.60, after the discount)"
    assert discounted.monthly_estimate() == Decimal("2235.63")


def test_summary_without_a_currency_and_without_a_price() -> None:
    quote = PriceQuote(charging_mode="postPaid", basis="hour", list_amount=Decimal("1234.5"), quoted_at=AT)
    assert quote.summary() == "Estimate: 1,234.50 per hour (list price)"
    none = PriceQuote(charging_mode="prePaid", basis="period", period_text="2 months", period_months=2,
                      no_price="the billing service did not answer within 1 s", quoted_at=AT)
    assert not none.ok and none.monthly_estimate() is None
    assert none.summary() == "No price: the billing service did not answer within 1 s"


def test_a_quote_round_trips_through_json() -> None:
    quote = PriceQuote(
        charging_mode="prePaid", basis="period", period_text="6 months", period_months=6, currency="CNY",
        list_amount=Decimal("6084.00"), discounted_amount=Decimal("5475.60"), discount_name="Contract “A”",
        lines=[PriceLine(label=f"3 {TIMES} app server x", list_amount=Decimal("5580.00"), amount=Decimal("5022.00")),
               PriceLine(label=f"3 {TIMES} system disk SAS 80 GB", list_amount=Decimal("504.00"), amount=Decimal("453.60"))],
        quoted_at=AT,
    )
    again = PriceQuote.model_validate_json(quote.model_dump_json())
    assert again == quote and again.summary() == quote.summary()
    none = PriceQuote(charging_mode="postPaid", basis="hour", no_price="reason", quoted_at=AT)
    assert PriceQuote.model_validate_json(none.model_dump_json()) == none


def test_the_site_currency_follows_the_billing_host() -> None:
    assert site_currency("https://bss.myhuaweicloud.com") == "CNY"
    assert site_currency("https://bss-intl.myhuaweicloud.com/") == "USD"
    assert site_currency("http://127.0.0.1:8700") is None
