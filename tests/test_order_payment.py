"""Paying a yearly/monthly order with the discount it can use, and saying "paid" only when billing shows it:
the workflow and the tracker against the sandbox's BSS over loopback HTTP."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.cloud.discounts import DiscountRef
from bot.cloud.errors import CloudError
from bot.lifecycle import State
from bot.notify import Event
from bot.progress import Progress
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.sandbox.state import Discount
from bot.slack import messages
from bot.slack.ids import Action
from bot.spec import parse_spec
from bot.store.models import AppRequest
from bot.store.repository import RequestStore
from bot.tracker import Tracker
from bot.workflow import Outcome
from tests.specs import prepaid_body
from tests.test_tracker import APPROVER, make_tracker
from tests.tracking import cycle_until


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


async def awaiting_payment(tracker: Tracker, store: RequestStore, count: int = 2) -> AppRequest:
    row = await tracker.workflow.submit(parse_spec(prepaid_body(count=count, months=3)), "U0ASKER")
    assert (await tracker.workflow.approve(row.id, APPROVER)).ok
    return await cycle_until(tracker, store, row.id, lambda r: r.state == State.AWAITING_PAYMENT
                             and Progress.of(r).order_amount is not None, what="the order waiting for payment")


async def next_poll(tracker: Tracker, store: RequestStore, row: AppRequest) -> AppRequest:
    """One more poll of the order (made due at once)."""
    before = Progress.of(row).polls
    return await cycle_until(tracker, store, row.id, lambda r: Progress.of(r).polls > before, make_due=True)


def paid_with(sandbox: Sandbox) -> list[dict[str, object]]:
    return [c["body"] for c in sandbox.calls("PayOrders")]


async def test_the_discount_that_takes_most_off_pays_the_order(store: RequestStore, cloud: Cloud,
                                                               sandbox: Sandbox) -> None:
    sandbox.state.discount_rate = Decimal("0.1")  # a contract discount on every order
    tracker, news = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    order = sandbox.state.orders[row.order_id or ""]
    order.discounts.append(Discount("promo-1", 0, [Decimal("5.00")] + [Decimal(0)] * (len(order.lines) - 1)))
    row = await next_poll(tracker, store, row)
    progress = Progress.of(row)
    contract_off = order.discounts[0].amount_off
    assert contract_off > Decimal("5.00")  # the contract discount takes more off than the promotion
    assert (progress.discount_id, progress.discount_type, progress.discount_off) == (
        "sandbox-contract-discount", 1, contract_off)
    assert progress.to_charge() == order.amount - contract_off
    assert "Pay charges *CNY" in messages.payment_sentence(row) and "contract discount" in messages.payment_sentence(row)

    paid = await tracker.workflow.pay_order(row.id, APPROVER)
    assert paid.ok and "contract discount" in paid.sentence
    assert paid_with(sandbox) == [{"order_id": order.id, "use_coupon": "NO", "use_discount": "YES",
                                   "discount_infos": [{"id": "sandbox-contract-discount", "type": 1}]}]
    assert order.charged == order.amount - contract_off  # what billing charged is what the prompt said
    done = store.get(row.id)
    assert done is not None and Progress.of(done).charged_amount == order.charged
    assert Event.PAID in news.of(row.id)
    audited = [e.detail or "" for e in store.audit_log(row.id) if e.action == "pay_order"]
    assert any(f"CNY {order.charged:,.2f} with the contract discount" in d for d in audited)


async def test_an_order_price_adjustment_is_used_whenever_the_order_has_one(store: RequestStore, cloud: Cloud,
                                                                           sandbox: Sandbox) -> None:
    sandbox.state.discount_rate = Decimal("0.1")
    tracker, news = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    order = sandbox.state.orders[row.order_id or ""]
    order.discounts.append(Discount("adjust-609", 609, [Decimal("1.00")] + [Decimal(0)] * (len(order.lines) - 1)))
    # Billing itself refuses a payment that leaves the adjustment out, even with a bigger discount.
    with pytest.raises(CloudError) as refused:
        await cloud.billing.pay_order(order.id, DiscountRef("sandbox-contract-discount", 1))
    assert refused.value.error_code == "CBC.0101" and order.paid_at is None
    sandbox.log.clear()

    assert Event.PAYMENT_CHANGED not in news.of(row.id)
    row = await next_poll(tracker, store, row)
    assert Progress.of(row).discount_type == 609
    assert news.of(row.id).count(Event.PAYMENT_CHANGED) == 1  # the prompt is redrawn with what Pay now charges
    assert "order-price adjustment of CNY 1.00" in messages.payment_sentence(row)
    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok
    assert paid_with(sandbox)[0]["discount_infos"] == [{"id": "adjust-609", "type": 609}]
    assert order.charged == order.amount - Decimal("1.00")


async def test_unreadable_discounts_are_said_and_pay_charges_the_list_price(store: RequestStore, cloud: Cloud,
                                                                           sandbox: Sandbox) -> None:
    sandbox.state.discount_rate = Decimal("0.1")
    sandbox.state.can_view_discounts = False  # the IAM action billing:contract:viewDiscount is missing
    tracker, _ = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    order = sandbox.state.orders[row.order_id or ""]
    progress = Progress.of(row)
    assert not progress.discounts_read and progress.discount_id is None
    assert "billing:contract:viewDiscount" in (progress.discounts_error or "")
    listed = f"CNY {order.amount:,.2f}"
    sentence = messages.payment_sentence(row)
    assert (f"The bot could not read this order's discounts (the bot's cloud account lacks the IAM action "
            f"billing:contract:viewDiscount), so Pay charges the list price, {listed}.") in sentence
    confirm = messages.pay_button(row).to_dict()["confirm"]
    assert confirm["title"]["text"] == "Pay the list price?"
    assert f"discounts could not be read, so this charges the list price, {listed}, with no discount" in \
        confirm["text"]["text"]

    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok
    assert paid_with(sandbox) == [{"order_id": order.id, "use_coupon": "NO", "use_discount": "NO"}]
    assert order.charged == order.amount
    audited = [e.detail or "" for e in store.audit_log(row.id) if e.action == "pay_order"]
    assert any("no discount (the order's discounts could not be read)" in d for d in audited)


async def test_a_charge_that_changed_since_the_prompt_is_not_paid(store: RequestStore, cloud: Cloud,
                                                                 sandbox: Sandbox) -> None:
    tracker, news = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    order = sandbox.state.orders[row.order_id or ""]
    assert Progress.of(row).discounts_read and Progress.of(row).to_charge() == order.amount  # no discount yet
    order.discounts.append(Discount("adjust-609", 609, [Decimal("10.00")] + [Decimal(0)] * (len(order.lines) - 1)))

    changed = await tracker.workflow.pay_order(row.id, APPROVER)
    assert changed.outcome is Outcome.NOT_AS_SHOWN and "order-price adjustment" in changed.sentence
    assert sandbox.calls("PayOrders") == [] and order.paid_at is None
    assert Event.PAYMENT_CHANGED in news.of(row.id)  # the card is redrawn with the new amount
    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok  # the new prompt's amount is paid
    assert order.charged == order.amount - Decimal("10.00")


async def test_a_proxy_payment_is_not_announced_as_paid(store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.state.finance_hosted = True  # a member account whose finance a master account hosts
    tracker, news = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    order = sandbox.state.orders[row.order_id or ""]

    sent = await tracker.workflow.pay_order(row.id, APPROVER)
    assert sent.ok and "waits for the master account" in sent.sentence and "paid the order" not in sent.sentence
    waiting = store.get(row.id)
    assert waiting is not None and waiting.state == State.AWAITING_PAYMENT and order.paid_at is None
    assert Progress.of(waiting).proxy_payment_at is not None and Progress.of(waiting).charged_amount == order.amount
    assert news.of(row.id).count(Event.PAYMENT_WAITS) == 1 and Event.PAID not in news.of(row.id)
    again = await tracker.workflow.pay_order(row.id, "U0OTHERAPPROVER")
    assert not again.ok and len(sandbox.calls("PayOrders")) == 1
    card = messages.approval_card(waiting, sandbox=False, quota=None)
    assert "waits for the master account" in card.text and "Billing Center" in json.dumps(card.blocks)
    assert Action.PAY.value not in json.dumps(card.blocks)  # nothing left to pay from Slack
    assert "waits for the master account" in messages.payment_waits_reply(waiting, sandbox=False)

    # The tracker keeps following the order, and reminds the approvers once a day before its deadline.
    waiting = await next_poll(tracker, store, waiting)
    assert waiting.state == State.AWAITING_PAYMENT and Event.PAYMENT_REMIND not in news.of(row.id)
    order.deadline = time.time() + timedelta(hours=20).total_seconds()
    waiting = await next_poll(tracker, store, waiting)
    waiting = await next_poll(tracker, store, waiting)
    assert news.of(row.id).count(Event.PAYMENT_REMIND) == 1
    remind = messages.payment_remind_text(waiting, sandbox=False, approvers=[APPROVER])
    assert f"<@{APPROVER}>" in remind and "still waits for the master account" in remind

    assert sandbox.state.master_pays(order)  # the master account pays in its Billing Center
    done = await cycle_until(tracker, store, row.id, lambda r: r.state == State.SUCCEEDED, make_due=True)
    assert news.of(row.id).count(Event.PAID) == 1
    assert "Billing now shows order" in messages.paid_reply(done, sandbox=False)



async def test_a_passing_failure_to_read_the_discounts_keeps_the_last_reading(store: RequestStore, cloud: Cloud,
                                                                              sandbox: Sandbox) -> None:
    sandbox.state.discount_rate = Decimal("0.1")
    tracker, news = make_tracker(store, cloud)
    row = await awaiting_payment(tracker, store)
    shown = Progress.of(row)
    assert shown.discount_id == "sandbox-contract-discount"
    sandbox.faults.add(ScriptedFault(operation="ListOrderDiscounts", kind="503", count=20))
    row = await next_poll(tracker, store, row)
    assert Progress.of(row).discount_id == shown.discount_id and Progress.of(row).to_charge() == shown.to_charge()
    assert Event.PAYMENT_CHANGED not in news.of(row.id)  # the prompt did not flip to the list price
    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok  # billing still takes the discount
    order = sandbox.state.orders[row.order_id or ""]
    assert order.charged == shown.to_charge() and order.charged_discount == shown.discount_id
