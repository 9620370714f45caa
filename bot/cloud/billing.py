"""BSS (billing) calls for yearly/monthly orders: order details, paying, the order's resources."""

from __future__ import annotations

from datetime import datetime

from bot.cloud.discounts import DiscountRef
from bot.cloud.http import CloudHttp
from bot.cloud.models import (
    ORDER_TYPE_NEW,
    WORKSPACE_SERVICE_TYPE,
    CustomerOrder,
    CustomerOrderList,
    OrderDetails,
    OrderDiscount,
    OrderDiscountList,
    OrderResource,
    OrderResourceList,
)
from bot.cloud.workspace import segment

BSS_TIME = "%Y-%m-%dT%H:%M:%SZ"
ORDERS_PAGE = 100
MAX_ORDER_PAGES = 20  # 2,000 new Workspace orders in one lookup window is far beyond any real account
ORDER_LINES_PAGE = 100  # ShowCustomerOrderDetails gives 10 line items unless asked for more, 100 at most
MAX_ORDER_LINE_PAGES = 20


class BillingClient:
    def __init__(self, http: CloudHttp) -> None:
        self._http = http

    async def show_order(self, order_id: str) -> OrderDetails:
        """The order and all its line items, paged 100 at a time (`total_count` counts the line items)."""
        first = await self._order_page(order_id, 0)
        lines = list(first.order_line_items)
        batch = first
        for _ in range(MAX_ORDER_LINE_PAGES - 1):
            if len(batch.order_line_items) < ORDER_LINES_PAGE or (
                batch.total_count is not None and len(lines) >= batch.total_count
            ):
                break
            batch = await self._order_page(order_id, len(lines))
            lines.extend(batch.order_line_items)
        return first.model_copy(update={"order_line_items": lines})

    async def _order_page(self, order_id: str, offset: int) -> OrderDetails:
        response = await self._http.call(
            "ShowCustomerOrderDetails", "GET", f"/v2/orders/customer-orders/details/{segment(order_id)}",
            params={"limit": ORDER_LINES_PAGE, "offset": offset}, headers={"X-Language": "en_US"},
        )
        return OrderDetails.model_validate_json(response.content)

    async def list_order_discounts(self, order_id: str) -> list[OrderDiscount]:
        """ListOrderDiscounts: the discounts a pending order can be paid with (needs the IAM action
        `billing:contract:viewDiscount`)."""
        response = await self._http.call(
            "ListOrderDiscounts", "GET", "/v2/orders/customer-orders/order-discounts",
            params={"order_id": order_id}, headers={"X-Language": "en_US"},
        )
        return OrderDiscountList.model_validate_json(response.content).discounts

    async def pay_order(self, order_id: str, discount: DiscountRef | None = None) -> None:
        """PayOrders with exactly the one discount chosen (`bot.cloud.discounts`), or none; coupons stay unused
        (they are for the Billing Center). Never resent after a timeout or 5xx: a second payment attempt is
        not ours to make."""
        body: dict[str, object] = {"order_id": order_id, "use_coupon": "NO", "use_discount": "NO"}
        if discount is not None:  # "YES" needs exactly one discount_infos entry; "NO" must send none
            body.update(use_discount="YES", discount_infos=[{"id": discount.id, "type": discount.type}])
        await self._http.call("PayOrders", "POST", "/v3/orders/customer-orders/pay", json=body)

    async def list_order_resources(self, order_id: str) -> list[OrderResource]:
        """The order's main resources (for app servers: the server ids). The path's spelling is the API's."""
        response = await self._http.call(
            "ListPayPerUseCustomerResources", "POST", "/v2/orders/suscriptions/resources/query",
            json={"order_id": order_id, "only_main_resource": 1, "offset": 0, "limit": 100},
        )
        return OrderResourceList.model_validate_json(response.content).data

    async def list_new_workspace_orders(self, begin: datetime, end: datetime) -> list[CustomerOrder]:
        """New-purchase Workspace orders created in [begin, end] (UTC): the only orders a create of ours
        can have placed. Other services' orders and renewals are filtered out by BSS itself."""
        orders: list[CustomerOrder] = []
        for page in range(MAX_ORDER_PAGES):
            response = await self._http.call(
                "ListCustomerOrders", "GET", "/v2/orders/customer-orders",
                params={"create_time_begin": begin.strftime(BSS_TIME), "create_time_end": end.strftime(BSS_TIME),
                        "service_type_code": WORKSPACE_SERVICE_TYPE, "order_type": ORDER_TYPE_NEW,
                        "order_by": "-createTime", "limit": ORDERS_PAGE, "offset": page * ORDERS_PAGE},
            )
            batch = CustomerOrderList.model_validate_json(response.content)
            orders.extend(batch.order_infos)
            if len(batch.order_infos) < ORDERS_PAGE or len(orders) >= batch.total_count:
                break
        return orders
