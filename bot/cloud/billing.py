"""BSS (billing) calls for yearly/monthly orders: order details, paying, the order's resources."""

from __future__ import annotations

from datetime import datetime

from bot.cloud.http import CloudHttp
from bot.cloud.models import CustomerOrderList, OrderDetails, OrderResource, OrderResourceList
from bot.cloud.workspace import segment


class BillingClient:
    def __init__(self, http: CloudHttp) -> None:
        self._http = http

    async def show_order(self, order_id: str) -> OrderDetails:
        response = await self._http.call(
            "ShowCustomerOrderDetails", "GET", f"/v2/orders/customer-orders/details/{segment(order_id)}",
            headers={"X-Language": "en_US"},
        )
        return OrderDetails.model_validate(response.json())

    async def pay_order(self, order_id: str) -> None:
        """PayOrders. Never resent after a timeout or 5xx: a second payment attempt is not ours to make."""
        await self._http.call(
            "PayOrders", "POST", "/v3/orders/customer-orders/pay",
            json={"order_id": order_id, "use_coupon": "NO", "use_discount": "NO"},
        )

    async def list_order_resources(self, order_id: str) -> list[OrderResource]:
        """The order's main resources (for app servers: the server ids). The path's spelling is the API's."""
        response = await self._http.call(
            "ListPayPerUseCustomerResources", "POST", "/v2/orders/suscriptions/resources/query",
            json={"order_id": order_id, "only_main_resource": 1, "offset": 0, "limit": 100},
        )
        return OrderResourceList.model_validate(response.json()).data

    async def list_orders_since(self, since: datetime) -> CustomerOrderList:
        """Orders created since a time (used to find an order whose create call had no answer)."""
        response = await self._http.call(
            "ListCustomerOrders", "GET", "/v2/orders/customer-orders",
            params={"create_time_begin": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "order_by": "-createTime",
                    "limit": 100, "offset": 0},
        )
        return CustomerOrderList.model_validate(response.json())
