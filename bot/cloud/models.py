"""Response shapes of the WorkspaceApp, VPC, BSS and IAM calls the bot uses.

Every model keeps unknown fields, so a new field in the cloud's answer never breaks the bot.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


def parse_cloud_time(text: str | None) -> datetime | None:
    """The cloud's ISO 8601 times (`…Z` or an offset); None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class CloudModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# WorkspaceApp --------------------------------------------------------------------------------------


class ProductInfo(CloudModel):
    product_id: str | None = None
    flavor_id: str | None = None
    type: str | None = None
    architecture: str | None = None
    cpu: str | None = None
    cpu_desc: str | None = None
    memory: str | None = None  # MB, as a string
    is_gpu: bool | None = None
    system_disk_type: str | None = None
    system_disk_size: str | None = None
    gpu_desc: str | None = None
    descriptions: str | None = None
    charge_mode: str | None = None  # "1" yearly/monthly, "0" pay-per-use
    status: str | None = None
    cond_operation_az: str | None = None
    package_type: str | None = None
    series_type: str | None = None
    sessions: int | None = None
    # The product's billing codes: two of the four keys BSS prices a product by.
    cloud_service_type: str | None = None
    resource_type: str | None = None


class ServerGroup(CloudModel):
    id: str
    name: str | None = None
    description: str | None = None
    image_id: str | None = None
    image_name: str | None = None
    image_product_id: str | None = None  # a Marketplace (KooGallery) image: its fee is billed on its own
    os_type: str | None = None
    product_id: str | None = None
    product_info: ProductInfo | None = None
    subnet_id: str | None = None
    subnet_name: str | None = None
    system_disk_type: str | None = None
    system_disk_size: int | None = None
    app_type: str | None = None
    ou_name: str | None = None
    server_group_status: bool | None = None
    site_type: str | None = None
    app_server_count: int | None = None
    create_time: str | None = None


class ServerGroupPage(CloudModel):
    count: int = 0
    items: list[ServerGroup] = Field(default_factory=list)


class ProductList(CloudModel):
    availability_zone: str | None = None
    os_type: str | None = None
    products: list[ProductInfo] = Field(default_factory=list)


class SoldOut(CloudModel):
    products: list[str] = Field(default_factory=list)


class AvailabilityZone(CloudModel):
    availability_zone: str
    display_name: str | None = None
    i18n: dict[str, str] = Field(default_factory=dict)
    sold_out: SoldOut | None = None
    product_ids: list[str] = Field(default_factory=list)
    visible: bool | None = None
    default_availability_zone: bool | None = None

    def sells(self, product_id: str) -> bool:
        if self.sold_out and product_id in self.sold_out.products:
            return False
        return not self.product_ids or product_id in self.product_ids


class AvailabilityZoneList(CloudModel):
    availability_zones: list[AvailabilityZone] = Field(default_factory=list)
    total_count: int | None = None


class AvailabilityZoneSummary(CloudModel):
    azs: dict[str, list[AvailabilityZone]] = Field(default_factory=dict)
    default_type: str | None = None
    support_type: list[str] = Field(default_factory=list)


class VolumeType(CloudModel):
    resource_spec_code: str | None = None
    volume_type: str
    volume_product_type: str | None = None
    resource_type: str | None = None
    cloud_service_type: str | None = None
    name: list[dict[str, str]] = Field(default_factory=list)


class VolumeTypeList(CloudModel):
    volume_types: list[VolumeType] = Field(default_factory=list)


class QuotaRemainder(CloudModel):
    type: str
    remainder: int
    need: int


class QuotaCheck(CloudModel):
    is_enough: bool
    quota_remainder: list[QuotaRemainder] = Field(default_factory=list)

    def shortfalls(self) -> list[QuotaRemainder]:
        return [q for q in self.quota_remainder if q.need > q.remainder]


class JobEntity(CloudModel):
    resource_id: str | None = None
    resource_name: str | None = None


class SubJobV1(CloudModel):
    job_id: str | None = None
    job_type: int | None = None
    job_status: int | None = None
    begin_time: str | None = None
    end_time: str | None = None
    execute_code: str | None = None
    execute_message: str | None = None
    entities: list[JobEntity] = Field(default_factory=list)


class JobV1(CloudModel):
    """ShowJob (v1). job_status: 0 failed, 1 success, 2 processing, 3 initializing."""

    job_id: str
    job_type: int | None = None
    job_status: int
    begin_time: str | None = None
    end_time: str | None = None
    expected_end_time: str | None = None
    execute_code: str | None = None
    execute_message: str | None = None
    sub_jobs: list[SubJobV1] = Field(default_factory=list)


class JobV1Envelope(CloudModel):
    job: JobV1


class SubJobV2(CloudModel):
    id: str | None = None
    job_type: str | None = None
    job_resource_info: JobEntity | None = None
    begin_time: str | None = None
    end_time: str | None = None
    status: str | None = None  # WAITING RUNNING SUCCESS FAILED ABNORMAL ROLLBACK ABORTING; absent while unknown
    error_code: str | None = None
    error_message: str | None = None
    job_id: str | None = None


class JobDetailV2(CloudModel):
    """ShowJobDetail (v2). status: WAITING, RUNNING, SUCCESS, FAILED."""

    id: str
    job_type: str | None = None
    begin_time: str | None = None
    end_time: str | None = None
    status: str
    sub_jobs_total: int | None = None
    sub_jobs: list[SubJobV2] = Field(default_factory=list)


class SubJobPage(CloudModel):
    count: int = 0
    items: list[SubJobV2] = Field(default_factory=list)


class AppServer(CloudModel):
    id: str
    name: str | None = None
    server_group_id: str | None = None
    status: str | None = None
    vm_status: str | None = None
    create_time: str | None = None
    availability_zone: str | None = None
    order_id: str | None = None
    job_id: str | None = None
    job_type: str | None = None
    job_status: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class AppServerPage(CloudModel):
    count: int = 0
    items: list[AppServer] = Field(default_factory=list)


# VPC ----------------------------------------------------------------------------------------------


class Subnet(CloudModel):
    id: str
    name: str | None = None
    vpc_id: str
    cidr: str | None = None
    availability_zone: str | None = None


class SubnetEnvelope(CloudModel):
    subnet: Subnet


# BSS ----------------------------------------------------------------------------------------------

ORDER_PROCESSING = 3
ORDER_CANCELLED = 4
ORDER_COMPLETED = 5
ORDER_PENDING_PAYMENT = 6


class SubOrder(CloudModel):
    """One order of a combined transaction (`SubCustomerOrderV2`/`V3`): an order in its own right."""

    order_id: str
    status: int | None = None
    order_type: int | None = None
    create_time: str | None = None
    service_type_code: str | None = None
    amount_after_discount: Decimal | None = None
    official_amount: Decimal | None = None
    currency: str | None = None


class OrderInfo(CloudModel):
    order_id: str
    status: int
    order_type: int | None = None
    amount_after_discount: Decimal | None = None
    official_amount: Decimal | None = None
    currency: str | None = None
    create_time: str | None = None
    payment_time: str | None = None
    pending_payment_end_time: str | None = None
    sub_order_infos: list[SubOrder] = Field(default_factory=list)  # set for a combined transaction


class OrderLineItem(CloudModel):
    """One line of an order (`OrderLineItemEntityV2`): what ties an order to the request that placed it."""

    order_line_item_id: str | None = None
    service_type_code: str | None = None
    product_id: str | None = None
    product_spec_desc: str | None = None
    period_type: int | None = None
    period_num: int | None = None
    subscription_num: int | None = None
    amount_after_discount: Decimal | None = None
    official_amount: Decimal | None = None
    currency: str | None = None


class OrderDetails(CloudModel):
    total_count: int | None = None
    order_info: OrderInfo
    order_line_items: list[OrderLineItem] = Field(default_factory=list)


class OrderResource(CloudModel):
    resource_id: str
    resource_name: str | None = None
    is_main_resource: int | None = None
    status: int | None = None
    expire_time: str | None = None


class OrderResourceList(CloudModel):
    data: list[OrderResource] = Field(default_factory=list)
    total_count: int = 0


class DiscountLine(CloudModel):
    """How a discount applies to some lines of an order (`OrderLineItemV3`)."""

    order_line_item_ids: list[str] = Field(default_factory=list)
    discount_mode: int | None = None  # 0 ratio, 1 fixed price, 2 amount off
    discount_amount: Decimal | None = None  # the amount taken off
    discount_ratio: Decimal | None = None


class DiscountOrder(CloudModel):
    order_id: str
    order_line_items: list[DiscountLine] = Field(default_factory=list)


class OrderDiscount(CloudModel):
    """One discount a pending order can be paid with (`DiscountInfoV3`)."""

    discount_id: str
    discount_value: str | Decimal | None = None  # a ratio or an amount off; empty for a fixed price
    discount_type: int | None = None  # 0 promotion, 1 contract, 2 commercial, 3 partner-granted, 609 price adjustment
    orders: list[DiscountOrder] = Field(default_factory=list)


class OrderDiscountList(CloudModel):
    discounts: list[OrderDiscount] = Field(default_factory=list)


WORKSPACE_SERVICE_TYPE = "hws.service.type.vdi"  # Workspace's service in BSS (ListProduct's cloud_service_type)
ORDER_TYPE_NEW = 1


class CustomerOrder(SubOrder):
    """An order as ListCustomerOrders lists it; a combined transaction names its orders in `sub_order_infos`."""

    sub_order_infos: list[SubOrder] = Field(default_factory=list)


class CustomerOrderList(CloudModel):
    total_count: int = 0
    order_infos: list[CustomerOrder] = Field(default_factory=list)


# IAM ----------------------------------------------------------------------------------------------


class Project(CloudModel):
    id: str
    name: str
    domain_id: str | None = None


class ProjectList(CloudModel):
    projects: list[Project] = Field(default_factory=list)
