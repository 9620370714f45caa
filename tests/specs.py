"""Valid request bodies matching the sandbox's seeded server groups."""

from __future__ import annotations

from typing import Any

from bot.sandbox import seed


def office_body(count: int = 2, **extra: Any) -> dict[str, Any]:
    group = seed.server_groups()[0]
    subnet = next(s for s in seed.SUBNETS if s["id"] == group["subnet_id"])
    body: dict[str, Any] = {
        "server_group_id": group["id"],
        "subscription_num": count,
        "product_id": group["product_id"],
        "root_volume": {"type": group["system_disk_type"], "size": group["system_disk_size"]},
        "subnet_id": subnet["id"],
        "vpc_id": subnet["vpc_id"],
        "availability_zone": "cn-north-4a",
        "os_type": "Windows",
    }
    body.update(extra)
    return body


def prepaid_body(count: int = 1, months: int = 1, auto_pay: bool = False) -> dict[str, Any]:
    return office_body(count, create_server_extend_param={
        "charging_mode": "prePaid", "period_type": 2, "period_num": months, "is_auto_pay": auto_pay,
    })
