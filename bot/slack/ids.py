"""Every block_id, action_id and callback_id in one place, so views and handlers cannot drift apart."""

from __future__ import annotations

from enum import StrEnum


class Block(StrEnum):
    GROUP = "group"
    AZ = "availability_zone"
    PRODUCT = "product"
    DISK_TYPE = "disk_type"
    DISK_SIZE = "disk_size"
    COUNT = "count"
    BILLING = "billing"
    PERIOD_UNIT = "period_unit"
    PERIOD_NUM = "period_num"
    PREPAID_OPTIONS = "prepaid_options"
    AGENT = "update_agent"
    DEDICATED_HOST = "dedicated_host"
    REASON = "reason"
    REJECT_REASON = "reject_reason"
    RETRY_REASON = "retry_reason"


class Action(StrEnum):
    GROUP_SELECT = "group_select"
    BILLING_CHANGE = "billing_change"
    PERIOD_UNIT_CHANGE = "period_unit_change"
    APPROVE = "approve_request"
    REJECT = "reject_request"
    PAY = "pay_order"
    RETRY = "retry_request"
    CHOOSE_CANDIDATE = "choose_candidate"
    NO_CANDIDATE = "no_candidate"
    CANCEL = "cancel_request"
    ORDER_AGAIN = "order_again"
    NEW_REQUEST = "new_request"
    INPUT = "value"  # the action_id of every plain input element


class Callback(StrEnum):
    CREATE = "create_request"
    REJECT = "reject_request_reason"


# Where an error about a body field shows in the modal: the input block the user can change.
FIELD_BLOCKS: dict[str, Block] = {
    "server_group_id": Block.GROUP,
    "subnet_id": Block.GROUP,
    "vpc_id": Block.GROUP,
    "ou_name": Block.GROUP,
    "os_type": Block.GROUP,
    "flavor_id": Block.PRODUCT,
    "product_id": Block.PRODUCT,
    "availability_zone": Block.AZ,
    "root_volume": Block.DISK_SIZE,
    "root_volume.type": Block.DISK_TYPE,
    "root_volume.size": Block.DISK_SIZE,
    "subscription_num": Block.COUNT,
    "create_server_extend_param": Block.BILLING,
    "create_server_extend_param.charging_mode": Block.BILLING,
    "create_server_extend_param.period_type": Block.PERIOD_UNIT,
    "create_server_extend_param.period_num": Block.PERIOD_NUM,
    "create_server_extend_param.is_auto_pay": Block.PREPAID_OPTIONS,
    "create_server_extend_param.is_auto_renew": Block.PREPAID_OPTIONS,
    "scheduler_hints": Block.DEDICATED_HOST,
    "scheduler_hints.dedicated_host_id": Block.DEDICATED_HOST,
    "scheduler_hints.tenancy": Block.DEDICATED_HOST,
    "update_access_agent": Block.AGENT,
}


def block_for(field: str) -> Block:
    if field in FIELD_BLOCKS:
        return FIELD_BLOCKS[field]
    head = field.split(".")[0]
    return FIELD_BLOCKS.get(head, Block.GROUP)
