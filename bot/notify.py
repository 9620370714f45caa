"""The news the lifecycle and the tracker queue for people, and the port that tells them (Slack implements it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from bot.store.models import AppRequest


class Event(StrEnum):
    CREATED = "created"  # a new request: its thread, and an approval card when one is needed
    DECIDED = "decided"  # approved or rejected
    SUBMITTED = "submitted"  # the cloud accepted the create
    PROGRESS = "progress"  # servers ready out of requested, expected end
    PAYMENT_DUE = "payment_due"  # a yearly/monthly order waits for payment
    PAID = "paid"  # billing shows the order paid
    PAYMENT_WAITS = "payment_waits"  # Pay answered, but billing made it a proxy payment for the master account
    PAYMENT_REMIND = "payment_remind"  # a proxy payment is still not made close to the order's deadline
    PAYMENT_CHANGED = "payment_changed"  # what Pay charges changed (the order's discounts): the prompt is redrawn
    FINISHED = "finished"  # succeeded, failed, refused by the cloud, expired, cancelled
    ATTENTION = "attention"  # the outcome of a create is unknown
    REMIND = "remind"  # a request still waits for an approver: they are reminded on its card
    EXPIRING = "expiring"  # a request is about to expire without a decision: its requester is told
    TROUBLE = "trouble"  # the bot cannot follow the request until a person fixes something (credentials, …)
    REDRAW = "redraw"  # the thread's head and the card show the request as it is now (edits only)


class Notifier(Protocol):
    async def request_changed(self, request: AppRequest, event: Event) -> None: ...
