"""Prices a CreateAppServers request with the BSS price inquiries, before anyone approves it.

BSS finds a product by four keys: cloud service type, resource type, region and resource spec. Nothing
here is guessed: the app server's service and resource type come from WorkspaceApp's ListProduct, its
spec (the Workspace product id) is confirmed with ListResourceSpecs, and the system disk's codes come
from ListVolumeType and are confirmed the same way. A spec BSS does not list means "no price", with the
reason. The system disk is priced as a line of its own (`resource_size` GB, `size_measure_id` 17).

A quote never raises for cloud trouble and never takes longer than its timeout: the Slack form that
asks for it must still answer in time. What does not change (products, volume types, which specs BSS
lists) is cached for an hour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from cachetools import TTLCache
from pydantic import ValidationError

from bot.cloud.errors import CloudError, describe
from bot.cloud.iam import ProjectLookupError
from bot.cloud.models import ProductInfo, VolumeType
from bot.cloud.quote import PriceLine, PriceQuote, period_months, period_text
from bot.cloud.rating import RatingClient
from bot.cloud.rating_models import (
    CHARGE_MODE_ON_DEMAND,
    CHARGE_MODE_PERIOD,
    SIZE_MEASURE_GB,
    USAGE_MEASURE_HOUR,
    DemandProductInfo,
    OnDemandRating,
    PeriodProductInfo,
    PeriodRating,
    RateOnDemandRequest,
    RateOnPeriodRequest,
    ResourceSpecsFilter,
    ResourceSpecsQuery,
)
from bot.cloud.workspace import WorkspaceClient
from bot.spec import CreateAppServersRequest

if TYPE_CHECKING:
    from bot.cloud.client import Cloud

__all__ = ["PriceLine", "PriceQuote", "Pricer", "site_currency"]

log = logging.getLogger(__name__)

SERVER_LINE = "1"
DISK_LINE = "2"
YUAN_OR_DOLLAR = 1  # BSS's measure_id for the main currency unit
SPEC_PAGES = 10  # a guard against a catalogue that never stops paging
# The currency BSS means when it leaves `currency` empty, by the site's billing host.
SITE_CURRENCIES = {"bss.myhuaweicloud.com": "CNY", "bss-intl.myhuaweicloud.com": "USD"}
VOLUME_TYPES = "volume-types"  # the one key of the volume type cache
TIMES = "\N{MULTIPLICATION SIGN}"


def site_currency(bss_endpoint: str) -> str | None:
    """CNY on the Chinese mainland site, USD on the international one; None where it is not known."""
    return SITE_CURRENCIES.get(urlsplit(bss_endpoint).hostname or "")


Inquiry = TypeVar("Inquiry", RateOnPeriodRequest, RateOnDemandRequest)
Rating = TypeVar("Rating", PeriodRating, OnDemandRating)


class NoPrice(Exception):
    """The request cannot be priced; the message is the plain reason."""


@dataclass(frozen=True)
class BillingKeys:
    """Three of the four keys BSS finds a product by; the fourth, the region, is the Pricer's."""

    cloud_service_type: str
    resource_type: str
    resource_spec: str


@dataclass
class _Progress:
    """Which service a quote is waiting for, to say which one was too slow."""

    waiting_for: str = "the Workspace catalogue"


class Pricer:
    def __init__(
        self,
        workspace: WorkspaceClient,
        rating: RatingClient,
        *,
        region: str,
        currency: str | None = None,
        timeout_seconds: float = 1.0,
        cache_seconds: float = 3600.0,
        cache_size: int = 1024,
        rating_cache_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspace = workspace
        self._rating = rating
        self.region = region
        self.currency = currency  # the site's currency, for an answer whose `currency` is empty
        self.timeout_seconds = timeout_seconds
        # Bounded, and forgotten after an hour: a product or price list that changes is seen within the hour.
        self._products: TTLCache[str, ProductInfo | None] = TTLCache(cache_size, cache_seconds, timer=clock)
        self._volumes: TTLCache[str, list[VolumeType]] = TTLCache(1, cache_seconds, timer=clock)
        self._specs: TTLCache[tuple[BillingKeys, str, str], bool] = TTLCache(cache_size, cache_seconds, timer=clock)
        # The same inquiry (product, disk, period, count, zone) answered within ten minutes is answered the same:
        # a price list does not change by the minute, and many people in a company ask for the same thing.
        self._ratings: TTLCache[str, PeriodRating | OnDemandRating] = TTLCache(
            cache_size, rating_cache_seconds, timer=clock)

    @classmethod
    def from_cloud(cls, cloud: Cloud, *, timeout_seconds: float = 1.0) -> Pricer:
        return cls(cloud.workspace, cloud.rating, region=cloud.region, currency=site_currency(cloud.endpoints.bss),
                   timeout_seconds=timeout_seconds)

    async def quote(self, request: CreateAppServersRequest) -> PriceQuote:
        """The estimate for the request; a quote with `no_price` set, never an exception, when unknown."""
        empty = _empty_quote(request)
        progress = _Progress()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._quote(request, empty, progress)
        except TimeoutError:
            reason = f"{progress.waiting_for} did not answer within {self.timeout_seconds:g} s"
        except NoPrice as no_price:
            reason = str(no_price)
        except CloudError as error:
            reason = describe(error)
        except ProjectLookupError as error:
            reason = str(error)
        except ValidationError:
            reason = f"{progress.waiting_for} gave an answer the bot could not read"
        except Exception:
            # A quote only decorates the approval card: a bug here must not stop the request.
            log.exception("pricing %s failed", request.product_id)
            reason = "the price could not be worked out (the bot's log has the details)"
        log.info("no price for %s: %s", request.product_id, reason)
        return empty.model_copy(update={"no_price": reason})

    async def _quote(self, request: CreateAppServersRequest, empty: PriceQuote, progress: _Progress) -> PriceQuote:
        charge_mode = CHARGE_MODE_PERIOD if request.is_prepaid else CHARGE_MODE_ON_DEMAND
        product, volume = await asyncio.gather(
            self._product(request.product_id), self._volume_type(request.root_volume.type)
        )
        server = self._server_keys(request.product_id, product)
        disk = self._disk_keys(request.root_volume.type, volume)
        progress.waiting_for = "the billing service"
        server_listed, disk_listed = await asyncio.gather(
            self._listed(server, charge_mode), self._listed(disk, charge_mode)
        )
        mode = "yearly/monthly" if request.is_prepaid else "pay-per-use"
        if not server_listed:
            raise NoPrice(f"the product {request.product_id} is not in the billing catalogue for {self.region} ({mode})")
        if not disk_listed:
            raise NoPrice(f"the system disk type {request.root_volume.type} ({disk.resource_spec}) is not in the "
                          f"billing catalogue for {self.region} ({mode})")
        project_id = await self._workspace.project_id()
        if request.is_prepaid:
            return self._period_quote(request, empty, await self._rated(
                _period_request(request, project_id, self.region, server, disk), self._rating.rate_on_period,
                PeriodRating))
        return self._hourly_quote(request, empty, await self._rated(
            _demand_request(request, project_id, self.region, server, disk), self._rating.rate_on_demand,
            OnDemandRating))

    async def _rated(self, inquiry: Inquiry, ask: Callable[[Inquiry], Awaitable[Rating]], kind: type[Rating]) -> Rating:
        """The answer to a price inquiry, from the cache when the same one was answered lately."""
        key = inquiry.model_dump_json()
        known = self._ratings.get(key)
        if isinstance(known, kind):
            return known
        answer = await ask(inquiry)
        self._ratings[key] = answer
        return answer

    # The four keys ------------------------------------------------------------------------------

    async def _product(self, product_id: str) -> ProductInfo | None:
        try:
            return self._products[product_id]
        except KeyError:
            pass
        found = await self._workspace.list_products(product_id=product_id)
        product = next((p for p in found.products if p.product_id == product_id), None)
        self._products[product_id] = product
        return product

    async def _volume_type(self, disk_type: str) -> VolumeType | None:
        try:
            volumes = self._volumes[VOLUME_TYPES]
        except KeyError:
            volumes = (await self._workspace.list_volume_types()).volume_types
            self._volumes[VOLUME_TYPES] = volumes
        return next((v for v in volumes if v.volume_type == disk_type), None)

    def _server_keys(self, product_id: str, product: ProductInfo | None) -> BillingKeys:
        if product is None:
            raise NoPrice(f"the product {product_id} is not in the Workspace catalogue for {self.region}")
        if not product.cloud_service_type or not product.resource_type:
            raise NoPrice(f"the Workspace catalogue gives no billing codes for the product {product_id}")
        return BillingKeys(product.cloud_service_type, product.resource_type, product_id)

    def _disk_keys(self, disk_type: str, volume: VolumeType | None) -> BillingKeys:
        if volume is None or not (volume.cloud_service_type and volume.resource_type and volume.resource_spec_code):
            raise NoPrice(f"the Workspace catalogue gives no billing codes for the system disk type {disk_type}")
        return BillingKeys(volume.cloud_service_type, volume.resource_type, volume.resource_spec_code)

    async def _listed(self, keys: BillingKeys, charge_mode: str) -> bool:
        """Whether BSS sells exactly this spec in the region (an answer that is cached, "no" included)."""
        key = (keys, self.region, charge_mode)
        try:
            return self._specs[key]
        except KeyError:
            pass
        marker: str | None = None
        listed = False
        for _ in range(SPEC_PAGES):
            page = await self._rating.list_resource_specs(ResourceSpecsQuery(
                cloud_service_type=keys.cloud_service_type, resource_type=keys.resource_type,
                region_code=self.region, charge_mode=charge_mode,
                filters=[ResourceSpecsFilter(value=keys.resource_spec)], marker=marker,
            ))
            listed = any(b.resource_spec == keys.resource_spec for b in page.cloud_service_basics)
            marker = page.page_info.next_marker if page.page_info else None
            if listed or not marker:
                break
        self._specs[key] = listed
        return listed

    # Reading the answers -------------------------------------------------------------------------

    def _currency(self, answered: str | None) -> str | None:
        return answered or self.currency

    def _period_quote(self, request: CreateAppServersRequest, empty: PriceQuote, rating: PeriodRating) -> PriceQuote:
        official = rating.official_website_rating_result
        if official is None or official.official_website_amount is None:
            raise NoPrice("the billing service gave no price for this request")
        _check_unit(official.measure_id)
        list_amount = official.official_website_amount
        best = rating.best_offer()
        if best is None or best.amount is None or best.amount >= list_amount:
            best = None  # no discount applies
        else:
            _check_unit(best.measure_id)
        list_by_line = {r.id: r.official_website_amount for r in official.product_rating_results}
        discounted_by_line = {r.id: r.amount for r in best.product_rating_results} if best else {}
        return empty.model_copy(update={
            "currency": self._currency(rating.currency), "list_amount": list_amount,
            "discounted_amount": best.amount if best else None, "discount_name": best.discount_name if best else None,
            "lines": _lines(request, list_by_line, discounted_by_line),
        })

    def _hourly_quote(self, request: CreateAppServersRequest, empty: PriceQuote, rating: OnDemandRating) -> PriceQuote:
        if rating.official_website_amount is None:
            raise NoPrice("the billing service gave no price for this request")
        _check_unit(rating.measure_id)
        discounted = rating.amount if rating.discount_amount and rating.discount_amount > 0 else None
        names: list[str] = []
        discounted_by_line: dict[str | None, Decimal | None] = {}
        for result in rating.product_rating_results:
            if result.discount_amount and result.discount_amount > 0:
                discounted_by_line[result.id] = result.amount
                for discount in result.discount_rating_results:
                    if discount.discount_name and discount.discount_name not in names:
                        names.append(discount.discount_name)
        list_by_line = {r.id: r.official_website_amount for r in rating.product_rating_results}
        return empty.model_copy(update={
            "currency": self._currency(rating.currency), "list_amount": rating.official_website_amount,
            "discounted_amount": discounted, "discount_name": "; ".join(names) if discounted is not None and names else None,
            "lines": _lines(request, list_by_line, discounted_by_line),
        })


def _empty_quote(request: CreateAppServersRequest) -> PriceQuote:
    extend = request.create_server_extend_param
    if request.is_prepaid and extend and extend.period_type is not None and extend.period_num is not None:
        return PriceQuote(
            charging_mode="prePaid", basis="period", period_text=period_text(extend.period_type, extend.period_num),
            period_months=period_months(extend.period_type, extend.period_num), quoted_at=datetime.now(UTC),
        )
    return PriceQuote(charging_mode="postPaid", basis="hour", quoted_at=datetime.now(UTC))


def _check_unit(measure_id: int | None) -> None:
    if measure_id is not None and measure_id != YUAN_OR_DOLLAR:
        raise NoPrice(f"the billing service answered in an unexpected unit (measure_id {measure_id})")


def _lines(
    request: CreateAppServersRequest,
    list_by_line: dict[str | None, Decimal | None],
    discounted_by_line: dict[str | None, Decimal | None],
) -> list[PriceLine]:
    """The server and disk lines, when BSS priced each of them (it echoes the request's line ids)."""
    count = request.subscription_num
    labels = {
        SERVER_LINE: f"{count} {TIMES} app server {request.product_id}",
        DISK_LINE: f"{count} {TIMES} system disk {request.root_volume.type} {request.root_volume.size} GB",
    }
    lines = []
    for line_id, label in labels.items():
        list_amount = list_by_line.get(line_id)
        if list_amount is None:
            return []
        lines.append(PriceLine(label=label, list_amount=list_amount, amount=discounted_by_line.get(line_id)))
    return lines


def _period_request(
    request: CreateAppServersRequest, project_id: str, region: str, server: BillingKeys, disk: BillingKeys
) -> RateOnPeriodRequest:
    extend = request.create_server_extend_param
    assert extend is not None and extend.period_type is not None and extend.period_num is not None  # prePaid rules

    def line(line_id: str, keys: BillingKeys, size_gb: int | None) -> PeriodProductInfo:
        return PeriodProductInfo(
            id=line_id, cloud_service_type=keys.cloud_service_type, resource_type=keys.resource_type,
            resource_spec=keys.resource_spec, region=region, available_zone=request.availability_zone,
            resource_size=size_gb, size_measure_id=SIZE_MEASURE_GB if size_gb else None,
            period_type=extend.period_type, period_num=extend.period_num, subscription_num=request.subscription_num,
        )

    return RateOnPeriodRequest(project_id=project_id, product_infos=[
        line(SERVER_LINE, server, None), line(DISK_LINE, disk, request.root_volume.size),
    ])


def _demand_request(
    request: CreateAppServersRequest, project_id: str, region: str, server: BillingKeys, disk: BillingKeys
) -> RateOnDemandRequest:
    def line(line_id: str, keys: BillingKeys, size_gb: int | None) -> DemandProductInfo:
        # One hour of use.
        return DemandProductInfo(
            id=line_id, cloud_service_type=keys.cloud_service_type, resource_type=keys.resource_type,
            resource_spec=keys.resource_spec, region=region, available_zone=request.availability_zone,
            resource_size=size_gb, size_measure_id=SIZE_MEASURE_GB if size_gb else None,
            usage_factor="Duration", usage_value=Decimal(1), usage_measure_id=USAGE_MEASURE_HOUR,
            subscription_num=request.subscription_num,
        )

    return RateOnDemandRequest(project_id=project_id, product_infos=[
        line(SERVER_LINE, server, None), line(DISK_LINE, disk, request.root_volume.size),
    ])
