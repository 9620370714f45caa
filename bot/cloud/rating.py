"""BSS price inquiries: what a product costs before it is ordered, and which product specs BSS sells.

All three are POSTs that only read (nothing is created or charged), so they are sent with
`idempotent=True` and retried like reads.
"""

from __future__ import annotations

from bot.cloud.http import CloudHttp
from bot.cloud.rating_models import (
    OnDemandRating,
    PeriodRating,
    RateOnDemandRequest,
    RateOnPeriodRequest,
    ResourceSpecPage,
    ResourceSpecsQuery,
)


class RatingClient:
    def __init__(self, http: CloudHttp) -> None:
        self._http = http

    async def rate_on_period(self, request: RateOnPeriodRequest) -> PeriodRating:
        """ListRateOnPeriodDetail: the list price of yearly/monthly products and each discount's price."""
        response = await self._http.call(
            "ListRateOnPeriodDetail", "POST", "/v2/bills/ratings/period-resources/subscribe-rate",
            json=request.body(), idempotent=True,
        )
        return PeriodRating.model_validate_json(response.content)

    async def rate_on_demand(self, request: RateOnDemandRequest) -> OnDemandRating:
        """ListOnDemandResourceRatings: the price of pay-per-use products for a given usage."""
        response = await self._http.call(
            "ListOnDemandResourceRatings", "POST", "/v2/bills/ratings/on-demand-resources",
            json=request.body(), idempotent=True,
        )
        return OnDemandRating.model_validate_json(response.content)

    async def list_resource_specs(self, query: ResourceSpecsQuery) -> ResourceSpecPage:
        """ListResourceSpecs: the specs BSS sells for a service and resource type in a region."""
        response = await self._http.call(
            "ListResourceSpecs", "POST", "/v2/products/resource-specs-query",
            json=query.body(), headers={"X-Language": "en_us"}, idempotent=True,
        )
        return ResourceSpecPage.model_validate_json(response.content)
