"""The BSS price inquiries: RatingClient against the sandbox, the sandbox's rules, and POSTs retried as reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bot.cloud.client import Cloud
from bot.cloud.errors import CloudError
from bot.cloud.rating_models import (
    DemandProductInfo,
    PeriodProductInfo,
    PeriodRating,
    RateOnDemandRequest,
    RateOnPeriodRequest,
    ResourceSpecsFilter,
    ResourceSpecsQuery,
)
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault

SERVER = {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.appstream",
          "resource_spec": "workspace.appstream.graphics.2xlarge.8", "region": "cn-north-4"}
DISK = {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
        "resource_spec": "workspace.volume.ultrahigh", "region": "cn-north-4", "resource_size": 100, "size_measure_id": 17}
MONTHS = {"period_type": 2, "period_num": 1, "subscription_num": 1}
HOUR = {"usage_factor": "Duration", "usage_value": 1, "usage_measure_id": 4, "subscription_num": 1}


@pytest.fixture
async def bss(cloud: Cloud, sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed as the bot signs BSS calls, to send bodies the typed client would never build."""
    async with httpx.AsyncClient(base_url=sandbox_url, auth=cloud.credentials.global_auth()) as client:
        yield client


async def refusal(bss: httpx.AsyncClient, path: str, body: Any) -> tuple[int, str, str]:
    answer = await bss.post(path, json=body)
    data = answer.json()
    return answer.status_code, data["error_code"], data["error_msg"]


PERIOD_PATH = "/v2/bills/ratings/period-resources/subscribe-rate"
DEMAND_PATH = "/v2/bills/ratings/on-demand-resources"
SPECS_PATH = "/v2/products/resource-specs-query"


async def test_period_rating_prices_each_line_for_the_whole_period(cloud: Cloud, sandbox: Sandbox) -> None:
    project = sandbox.config.project_id
    rating = await cloud.rating.rate_on_period(RateOnPeriodRequest(project_id=project, product_infos=[
        PeriodProductInfo(id="gpu", **SERVER, period_type=3, period_num=2, subscription_num=2),
        PeriodProductInfo(id="disk", **DISK, period_type=3, period_num=2, subscription_num=2),
    ]))
    official = rating.official_website_rating_result
    assert official is not None and official.measure_id == 1 and rating.currency == "CNY"
    by_line = {r.id: r.official_website_amount for r in official.product_rating_results}
    # A year is 0.83 of twelve months: 2650 x 24 x 2 x 0.83 and 1.0 x 100 GB x 24 x 2 x 0.83.
    assert by_line == {"gpu": Decimal("105576.00"), "disk": Decimal("3984.00")}
    assert official.official_website_amount == Decimal("109560.00")
    assert rating.optional_discount_rating_results == [] and rating.best_offer() is None
    assert all(r.product_id and r.product_id.startswith("00301-") for r in official.product_rating_results)


async def test_on_demand_rating_has_the_discount_per_line(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.state.discount_rate = Decimal("0.25")
    rating = await cloud.rating.rate_on_demand(RateOnDemandRequest(project_id=sandbox.config.project_id, product_infos=[
        DemandProductInfo(id="1", **SERVER, usage_factor="duration", usage_value=Decimal(10), usage_measure_id=4,
                          subscription_num=1),
    ]))
    assert (rating.official_website_amount, rating.amount, rating.discount_amount) == (
        Decimal("53"), Decimal("39.75"), Decimal("13.25"))
    [line] = rating.product_rating_results
    assert [d.discount_name for d in line.discount_rating_results] == ["Enterprise contract discount"]
    assert line.discount_rating_results[0].discount_type == 605


async def test_resource_specs_are_listed_by_mode_filtered_and_paged(cloud: Cloud) -> None:
    def query(**extra: Any) -> ResourceSpecsQuery:
        return ResourceSpecsQuery(cloud_service_type="hws.service.type.vdi",
                                  resource_type="hws.resource.type.workspace.appstream", region_code="cn-north-4",
                                  charge_mode="1", **extra)

    everything = await cloud.rating.list_resource_specs(query())
    assert {b.resource_spec for b in everything.cloud_service_basics} == {
        "workspace.appstream.general.xlarge.2", "workspace.appstream.general.xlarge.4",
        "workspace.appstream.graphics.2xlarge.8"}
    first = await cloud.rating.list_resource_specs(query(limit=2))
    assert len(first.cloud_service_basics) == 2 and first.page_info and first.page_info.next_marker
    rest = await cloud.rating.list_resource_specs(query(limit=2, marker=first.page_info.next_marker))
    assert len(rest.cloud_service_basics) == 1 and rest.page_info and rest.page_info.next_marker is None
    wanted = [ResourceSpecsFilter(value="workspace.appstream.general.xlarge.4")]
    one = await cloud.rating.list_resource_specs(query(filters=wanted))
    assert [b.resource_spec for b in one.cloud_service_basics] == ["workspace.appstream.general.xlarge.4"]
    assert one.cloud_service_basics[0].charge_mode == "1" and one.cloud_service_basics[0].region_code == "cn-north-4"
    elsewhere = await cloud.rating.list_resource_specs(query().model_copy(update={"region_code": "cn-east-3"}))
    assert elsewhere.cloud_service_basics == []


@pytest.mark.parametrize(("path", "body", "code", "words"), [
    (PERIOD_PATH, {"product_infos": [{"id": "1", **SERVER, **MONTHS}]}, "CBC.0100", "project_id is required"),
    (PERIOD_PATH, {"project_id": "{project}"}, "CBC.0100", "product_infos is required"),
    (PERIOD_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **SERVER, "period_num": 1,
                                                                 "subscription_num": 1}]},
     "CBC.0100", "product_infos[0].period_type is required"),
    (PERIOD_PATH, {"project_id": "{project}", "product_infos": [{**SERVER, **MONTHS}]}, "CBC.0100",
     "product_infos[0].id is required"),
    (PERIOD_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **DISK, **MONTHS, "resource_size": None}]},
     "CBC.0100", "resource_size is required"),
    (PERIOD_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **SERVER, **MONTHS},
                                                                {"id": "1", **SERVER, **MONTHS}]},
     "CBC.0101", "unique"),
    (PERIOD_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **SERVER, **MONTHS, "subscription_num": 0}]},
     "CBC.0101", "subscription_num must be a whole number from 1 to 10000"),
    (PERIOD_PATH, {"project_id": "0" * 32, "product_infos": [{"id": "1", **SERVER, **MONTHS}]}, "CBC.0101", "project_id"),
    (DEMAND_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **SERVER, **HOUR, "usage_value": None}]},
     "CBC.0100", "usage_value is required"),
    (DEMAND_PATH, {"project_id": "{project}", "product_infos": [{"id": "1", **SERVER, **HOUR, "usage_measure_id": 5}]},
     "CBC.0101", "usage_measure_id must be 4"),
    (SPECS_PATH, {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
                  "region_code": "cn-north-4"}, "CBC.0100", "charge_mode is required"),
    (SPECS_PATH, {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
                  "region_code": "cn-north-4", "charge_mode": "2"}, "CBC.0101", "charge_mode must be 1"),
    (SPECS_PATH, {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
                  "region_code": "cn-north-4", "charge_mode": "1", "filters": [{"key": "NAME", "value": "x"}]},
     "CBC.0101", "RESOURCE_SPEC"),
])
async def test_the_sandbox_refuses_what_bss_refuses(
    bss: httpx.AsyncClient, sandbox: Sandbox, path: str, body: dict[str, Any], code: str, words: str
) -> None:
    if body.get("project_id") == "{project}":
        body = {**body, "project_id": sandbox.config.project_id}
    status, error_code, message = await refusal(bss, path, body)
    assert (status, error_code) == (400, code) and words in message


@pytest.mark.parametrize("wrong", [
    {"cloud_service_type": "hws.service.type.ec2"},
    {"resource_type": "hws.resource.type.vm"},
    {"resource_spec": "workspace.appstream.general.xlarge.2.linux"},
    {"region": "cn-east-3"},
    {"available_zone": "cn-north-4z"},
])
async def test_a_wrong_key_is_product_not_found(bss: httpx.AsyncClient, sandbox: Sandbox, wrong: dict[str, str]) -> None:
    line = {"id": "1", **SERVER, **MONTHS, **wrong}
    status, code, _ = await refusal(bss, PERIOD_PATH, {"project_id": sandbox.config.project_id, "product_infos": [line]})
    assert (status, code) == (400, "CBC.99006006")
    hourly = {"id": "1", **SERVER, **HOUR, **wrong}
    status, code, _ = await refusal(bss, DEMAND_PATH, {"project_id": sandbox.config.project_id, "product_infos": [hourly]})
    assert (status, code) == (400, "CBC.99006006")


async def test_the_availability_zone_is_matched_without_case(bss: httpx.AsyncClient, sandbox: Sandbox) -> None:
    line = {"id": "1", **SERVER, **MONTHS, "available_zone": "CN-NORTH-4B"}
    answer = await bss.post(PERIOD_PATH, json={"project_id": sandbox.config.project_id, "product_infos": [line]})
    assert answer.status_code == 200 and answer.json()["official_website_rating_result"]["official_website_amount"] == 2650


async def test_the_price_inquiries_need_a_signature(sandbox_url: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as plain:
        for path in (PERIOD_PATH, DEMAND_PATH, SPECS_PATH):
            answer = await plain.post(path, json={})
            assert answer.status_code == 401 and answer.json()["error_code"] == "APIGW.0301"


# Retrying a POST that only reads ----------------------------------------------------------------


async def test_a_post_marked_idempotent_is_retried_like_a_read(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="ListResourceSpecs", kind="503", count=2))
    page = await cloud.rating.list_resource_specs(ResourceSpecsQuery(
        cloud_service_type="hws.service.type.vdi", resource_type="hws.resource.type.workspace.volume",
        region_code="cn-north-4", charge_mode="3"))
    assert len(page.cloud_service_basics) == 4
    assert [c["status"] for c in sandbox.calls("ListResourceSpecs")] == [503, 503, 200]


async def test_the_same_post_unmarked_is_sent_once(cloud: Cloud, sandbox: Sandbox) -> None:
    # The same endpoint the rating client has, called as a plain write would be.
    sandbox.faults.add(ScriptedFault(operation="ListResourceSpecs", kind="503", count=2))
    http = cloud.rating._http
    body = {"cloud_service_type": "hws.service.type.vdi", "resource_type": "hws.resource.type.workspace.volume",
            "region_code": "cn-north-4", "charge_mode": "3"}
    with pytest.raises(CloudError) as failed:
        await http.call("ListResourceSpecs", "POST", SPECS_PATH, json=body)
    assert failed.value.status == 503
    assert [c["status"] for c in sandbox.calls("ListResourceSpecs")] == [503]
    answer = await http.call("ListResourceSpecs", "POST", SPECS_PATH, json=body, idempotent=True)
    assert answer.status_code == 200
    assert [c["status"] for c in sandbox.calls("ListResourceSpecs")] == [503, 503, 200]


def test_the_best_offer_is_the_one_bss_marks_not_the_first() -> None:
    # The shape of a real answer with a partner discount listed before the better commercial one.
    rating = PeriodRating.model_validate_json("""{
        "official_website_rating_result": {"official_website_amount": 32.2, "measure_id": 1,
            "product_rating_results": [{"id": "1", "product_id": "00301-233164-0--0", "official_website_amount": 32.2,
                                        "measure_id": 1}]},
        "optional_discount_rating_results": [
            {"discount_id": "p", "amount": 30.59, "official_website_amount": 32.2, "discount_amount": 1.61,
             "measure_id": 1, "discount_type": 606, "discount_name": "Partner", "best_offer": 0},
            {"discount_id": "c", "amount": 28.98, "official_website_amount": 32.2, "discount_amount": 3.22,
             "measure_id": 1, "discount_type": 605, "discount_name": "Commercial", "best_offer": 1, "new_field": true}],
        "currency": ""}""")
    best = rating.best_offer()
    assert best is not None and (best.discount_name, best.amount) == ("Commercial", Decimal("28.98"))
    assert best.model_extra == {"new_field": True} and rating.currency == ""
