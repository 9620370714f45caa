"""Request and response shapes of the BSS price inquiries (field names as the official SDK sends them).

Requests refuse unknown fields, so a typo never reaches the cloud; responses keep unknown fields, like
every other cloud model. Amounts are `Decimal`: money is never a float here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from bot.cloud.models import CloudModel

CHARGE_MODE_PERIOD = "1"  # ListResourceSpecs: yearly/monthly (a string in the SDK's model)
CHARGE_MODE_ON_DEMAND = "3"  # ListResourceSpecs: pay-per-use
SIZE_MEASURE_GB = 17
USAGE_MEASURE_HOUR = 4
RESOURCE_SPEC_FILTER = "RESOURCE_SPEC"


def _json_number(value: Decimal) -> int | float:
    # The SDK sends decimals as JSON numbers, never as strings.
    return int(value) if value == value.to_integral_value() else float(value)


JsonNumber = Annotated[Decimal, PlainSerializer(_json_number, return_type=int | float)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, object]:
        """Exactly the API's field names; anything unset is left out."""
        return self.model_dump(mode="json", exclude_none=True)


# Requests -----------------------------------------------------------------------------------------


class PeriodProductInfo(_Request):
    """One line of ListRateOnPeriodDetail (`PeriodProductInfo`)."""

    id: str
    cloud_service_type: str
    resource_type: str
    resource_spec: str
    region: str
    available_zone: str | None = None
    resource_size: int | None = None  # linear products (disks): the size
    size_measure_id: int | None = None  # 17 GB
    period_type: int  # 2 month, 3 year
    period_num: int
    subscription_num: int
    fee_installment_mode: str | None = None


class RateOnPeriodRequest(_Request):
    project_id: str
    product_infos: list[PeriodProductInfo]


class DemandProductInfo(_Request):
    """One line of ListOnDemandResourceRatings (`DemandProductInfo`)."""

    id: str
    cloud_service_type: str
    resource_type: str
    resource_spec: str
    region: str
    available_zone: str | None = None
    resource_size: int | None = None
    size_measure_id: int | None = None
    usage_factor: str  # "Duration" for servers and disks
    usage_value: JsonNumber
    usage_measure_id: int  # 4 hour
    subscription_num: int


class RateOnDemandRequest(_Request):
    project_id: str
    inquiry_precision: int | None = None
    product_infos: list[DemandProductInfo]


class ResourceSpecsFilter(_Request):
    key: str = RESOURCE_SPEC_FILTER
    value: str


SPECS_PAGE = 100


class ResourceSpecsQuery(_Request):
    cloud_service_type: str
    resource_type: str
    region_code: str
    charge_mode: str  # "1" yearly/monthly, "3" pay-per-use
    filters: list[ResourceSpecsFilter] | None = None  # at most one
    marker: str | None = None
    limit: int | None = None  # 1-100, default 100

    @model_validator(mode="before")
    @classmethod
    def _marker_needs_limit(cls, data: Any) -> Any:
        # BSS ignores a marker sent without a limit and answers the first page again.
        if isinstance(data, dict) and data.get("marker") and data.get("limit") is None:
            return {**data, "limit": SPECS_PAGE}
        return data


# Responses ----------------------------------------------------------------------------------------


class PeriodProductOfficialRatingResult(CloudModel):
    id: str | None = None  # the request line's id, echoed
    product_id: str | None = None  # BSS's own product id
    official_website_amount: Decimal | None = None
    measure_id: int | None = None


class OfficialWebsiteRatingResult(CloudModel):
    official_website_amount: Decimal | None = None
    measure_id: int | None = None  # 1: yuan (mainland site) or dollar (international site)
    installment_official_website_amount: str | None = None
    installment_period_type: int | None = None
    product_rating_results: list[PeriodProductOfficialRatingResult] = Field(default_factory=list)


class PeriodProductRatingResult(CloudModel):
    id: str | None = None
    product_id: str | None = None
    amount: Decimal | None = None
    official_website_amount: Decimal | None = None
    discount_amount: Decimal | None = None
    measure_id: int | None = None


class OptionalDiscountRatingResult(CloudModel):
    discount_id: str | None = None
    amount: Decimal | None = None  # official_website_amount - discount_amount
    official_website_amount: Decimal | None = None
    discount_amount: Decimal | None = None
    measure_id: int | None = None
    discount_type: int | None = None  # 605 commercial, 606 partner-granted, 607 partner-set
    discount_name: str | None = None
    best_offer: int | None = None  # 1: the best among commercial and partner discounts
    product_rating_results: list[PeriodProductRatingResult] = Field(default_factory=list)


class PeriodRating(CloudModel):
    """ListRateOnPeriodDetail's answer."""

    official_website_rating_result: OfficialWebsiteRatingResult | None = None
    optional_discount_rating_results: list[OptionalDiscountRatingResult] = Field(default_factory=list)
    currency: str | None = None  # empty means the site's own currency

    def best_offer(self) -> OptionalDiscountRatingResult | None:
        return next((d for d in self.optional_discount_rating_results if d.best_offer == 1), None)


class DemandDiscountRatingResult(CloudModel):
    discount_id: str | None = None
    discount_type: int | None = None
    amount: Decimal | None = None
    measure_id: int | None = None
    discount_name: str | None = None


class DemandProductRatingResult(CloudModel):
    id: str | None = None
    product_id: str | None = None
    amount: Decimal | None = None
    discount_amount: Decimal | None = None
    official_website_amount: Decimal | None = None
    measure_id: int | None = None
    discount_rating_results: list[DemandDiscountRatingResult] = Field(default_factory=list)


class OnDemandRating(CloudModel):
    """ListOnDemandResourceRatings' answer."""

    amount: Decimal | None = None  # after discounts
    discount_amount: Decimal | None = None
    official_website_amount: Decimal | None = None
    measure_id: int | None = None
    currency: str | None = None
    product_rating_results: list[DemandProductRatingResult] = Field(default_factory=list)


class CloudServiceBasic(CloudModel):
    cloud_service_type: str | None = None
    cloud_service_type_name: str | None = None
    resource_type: str | None = None
    resource_type_name: str | None = None
    resource_spec: str | None = None
    resource_spec_name: str | None = None
    charge_mode: str | None = None
    region_code: str | None = None


class PageInfo(CloudModel):
    next_marker: str | None = None


class ResourceSpecPage(CloudModel):
    """ListResourceSpecs' answer."""

    page_info: PageInfo | None = None
    cloud_service_basics: list[CloudServiceBasic] = Field(default_factory=list)
