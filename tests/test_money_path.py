"""The yearly/monthly money path through the real app: signed Slack requests in, the fake Slack and the
sandbox cloud on loopback. An order without auto-pay reaches the approvers with its exact amount and a Pay
button; the requester is told who pays; the card follows the order to its servers."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from bot.lifecycle import State
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.slack.messages import payable_amount
from bot.store.repository import server_ids
from tests.flows import fill, final_state, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, REQUEST_CHANNEL, REQUESTER, Bot, wait_for


def buttons(blocks: list[dict[str, Any]] | str | None) -> list[dict[str, Any]]:
    parsed = json.loads(blocks) if isinstance(blocks, str) else blocks or []
    found = [e for b in parsed if b.get("type") == "actions" for e in b["elements"]]
    found += [b["accessory"] for b in parsed if b.get("type") == "section" and b.get("accessory")]
    return found


def card_versions(bot: Bot, ts: str) -> list[dict[str, Any]]:
    return [a for a in bot.slack.of("chat.update") if a.get("ts") == ts and a.get("channel") == APPROVAL_CHANNEL]


def open_home(bot: Bot, user: str) -> dict[str, Any]:
    before = len(bot.slack.of("views.publish"))
    bot.event({"type": "app_home_opened", "user": user, "tab": "home", "channel": "D0HOME"}, f"Ev{time.time_ns()}")
    wait_for(lambda: len(bot.slack.of("views.publish")) > before, what="the Home tab")
    published = bot.slack.of("views.publish")[-1]
    view = published["view"]
    return json.loads(view) if isinstance(view, str) else view  # type: ignore[no-any-return]


def test_an_unpaid_order_reaches_the_approvers_with_its_amount_and_is_paid_once(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=2, count=2)
    row = final_state(bot, State.PENDING_APPROVAL)
    row = wait_for(lambda: only_request(bot).approval_ts and only_request(bot), what="the approval card")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    waiting = final_state(bot, State.AWAITING_PAYMENT)
    order = bot.sandbox.state.orders[waiting.order_id]
    amount = f"CNY {order.amount:,.2f}"

    # The card: the exact amount, its deadline, and Pay with a confirmation that repeats the amount.
    card = wait_for(lambda: [v for v in card_versions(bot, row.approval_ts) if "waits for payment" in v["text"]],
                    what="the card waiting for payment")[-1]
    assert amount in card["text"] and amount in json.dumps(card["blocks"]) and "<!date^" in json.dumps(card["blocks"])
    [pay] = [b for b in buttons(card["blocks"]) if b["action_id"] == Action.PAY.value]
    confirm = pay["confirm"]["text"]["text"]
    assert amount in confirm and waiting.order_id in confirm and "2 app servers for 2 months" in confirm
    assert "the amount the approver saw" in confirm  # no discount here: the order is what was estimated
    # The approvers are pinged in the card's thread, the user group too, in the fallback text as well.
    ping = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL
                             and a.get("thread_ts") == row.approval_ts and "needs payment" in a["text"]],
                    what="the approvers pinged")[0]
    assert f"<@{APPROVER}>" in ping["text"] and "<!subteam^S0MANAGERS>" in ping["text"] and amount in ping["text"]
    # The requester's thread says who pays, and offers no Pay button.
    told = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == waiting.thread_ts
                             and "waits for payment" in a["text"]], what="the requester told")[0]
    assert f"<#{APPROVAL_CHANNEL}>" in told["text"] and "can't pay it yourself" in told["text"]
    assert not any(b.get("action_id") == Action.PAY.value for a in bot.slack.of("chat.postMessage")
                   if a.get("channel") == REQUEST_CHANNEL for b in buttons(a.get("blocks")))
    # The approver's Home lists it with the same Pay button; the requester's Home has none.
    home = open_home(bot, APPROVER)
    assert waiting.id in json.dumps(home) and any(b.get("action_id") == Action.PAY.value for b in buttons(home["blocks"]))
    assert not any(b.get("action_id") == Action.PAY.value for b in buttons(open_home(bot, REQUESTER)["blocks"]))

    # The requester cannot pay, and hears why in words about paying.
    bot.click(Action.PAY.value, pay["value"], REQUESTER, REQUEST_CHANNEL, waiting.thread_ts)
    refusal = wait_for(lambda: [a for a in bot.slack.of("chat.postEphemeral") if a.get("user") == REQUESTER],
                       what="the requester's refusal")[0]
    assert "pay" in refusal["text"] and "decide" not in refusal["text"] and bot.sandbox.calls("PayOrders") == []

    for _ in range(3):  # a double (triple) click pays once
        bot.click(Action.PAY.value, pay["value"], APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    done = final_state(bot, State.SUCCEEDED)
    assert len(bot.sandbox.calls("PayOrders")) == 1 and len(server_ids(done)) == 2 and done.payment_by == APPROVER
    wait_for(lambda: any(f"paid {amount} for order" in t for t in bot.slack.texts(channel=REQUEST_CHANNEL)),
             what="the payment in the requester's thread")
    # The approvers see it on the card itself: who paid, and no Pay button left for anyone else.
    paid_card = wait_for(lambda: [a for a in bot.slack.of("chat.update") if a.get("ts") == row.approval_ts
                                  and f"<@{APPROVER}> paid" in json.dumps(a.get("blocks"))], what="the card: paid")
    assert Action.PAY.value not in json.dumps(paid_card[-1]["blocks"])
    final_card = wait_for(lambda: [v for v in card_versions(bot, row.approval_ts) if "Done" in v["text"]],
                          what="the card at the end")[-1]
    assert not buttons(final_card["blocks"])
    assert any(e.action == "pay_order" and e.actor == APPROVER and amount in (e.detail or "")
               for e in bot.runtime.store.audit_log(row.id))


def test_a_create_answered_with_a_job_and_an_order_follows_both(bot: Bot) -> None:
    bot.sandbox.config.order_answers_with_job = True
    try:
        fill(bot, billing="prePaid", period_unit="2", period_num=1, count=2)
        row = final_state(bot, State.PENDING_APPROVAL)
        bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
        waiting = final_state(bot, State.AWAITING_PAYMENT)
        assert waiting.order_id and waiting.job_id
        assert not [c for c in bot.sandbox.calls() if c["operation"] in ("ShowJob", "ShowJobDetail")]  # unpaid
        bot.click(Action.PAY.value, button_value(waiting, amount=payable_amount(waiting)), APPROVER, APPROVAL_CHANNEL)
        done = final_state(bot, State.SUCCEEDED, State.FAILED)
    finally:
        bot.sandbox.config.order_answers_with_job = False
    assert done.state == State.SUCCEEDED
    job = bot.sandbox.state.jobs[done.job_id or ""]
    assert sorted(server_ids(done)) == sorted(job.server_ids) and len(job.server_ids) == 2
    assert [c for c in bot.sandbox.calls() if c["operation"] in ("ShowJob", "ShowJobDetail")]  # the job was followed
    wait_for(lambda: any(done.order_id in json.dumps(a["blocks"]) and done.job_id in json.dumps(a["blocks"])
                         for a in bot.slack.of("chat.update") if a.get("ts") == done.thread_ts),
             what="both ids on the thread's head")


def test_the_card_and_the_thread_show_the_estimate_and_pay_charges_the_discounted_amount_approved(bot: Bot) -> None:
    bot.sandbox.state.discount_rate = Decimal("0.1")  # the customer's contract discount, offered as the best
    fill(bot, billing="prePaid", period_unit="2", period_num=6, count=3)
    row = final_state(bot, State.PENDING_APPROVAL)
    quote = json.loads(row.price_json or "{}")
    assert quote["currency"] == "CNY" and quote["basis"] == "period" and quote["discounted_amount"]
    card = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL],
                    what="the approval card")[0]
    shown = json.dumps(card["blocks"], ensure_ascii=False)
    listed = f"CNY {Decimal(quote['list_amount']):,.2f}"
    discounted = f"CNY {Decimal(quote['discounted_amount']):,.2f}"
    assert f"Estimated total: {discounted}* for 3 server(s) × 6 months" in shown  # noqa: RUF001
    assert f"List price {listed}, less “Enterprise contract discount”" in shown
    [approve] = [b for b in buttons(card["blocks"]) if b["action_id"] == Action.APPROVE.value]
    assert discounted in approve["confirm"]["text"]["text"]
    head = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == REQUEST_CHANNEL
                             and "thread_ts" not in a], what="the thread head")[0]
    assert f"Estimated total: {discounted}" in json.dumps(head["blocks"], ensure_ascii=False)
    assert f"est. {discounted}" in card["text"]  # the notification says what and how much
    created = next(e for e in bot.runtime.store.audit_log(row.id) if e.action == "created")
    assert created.detail and discounted in created.detail
    row = wait_for(lambda: only_request(bot).approval_ts and only_request(bot), what="the card's ts")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    final_state(bot, State.AWAITING_PAYMENT)
    approved = next(e for e in bot.runtime.store.audit_log(row.id) if e.action == "approve")
    assert approved.detail and row.spec_hash in approved.detail and discounted in approved.detail

    # The Pay prompt: the amount charged after the order's own discount, the discount in words, the list price.
    pay_card = wait_for(lambda: [v for v in card_versions(bot, row.approval_ts or "")
                                 if f"Pay charges *{discounted}*" in json.dumps(v["blocks"])], what="the Pay prompt")[-1]
    prompt = json.dumps(pay_card["blocks"], ensure_ascii=False)
    assert f"List price {listed}, less the contract discount of CNY" in prompt
    assert "It is the amount the approver saw." in prompt and "Billing Center instead" in prompt
    [pay] = [b for b in buttons(pay_card["blocks"]) if b["action_id"] == Action.PAY.value]
    confirm = pay["confirm"]["text"]["text"]
    assert discounted in confirm and f"(list price {listed}, less the contract discount)" in confirm
    home = json.dumps(open_home(bot, APPROVER), ensure_ascii=False)
    assert f"Pay charges *{discounted}*" in home and "contract discount" in home

    bot.click(Action.PAY.value, pay["value"], APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    done = final_state(bot, State.SUCCEEDED)
    [paid] = bot.sandbox.calls("PayOrders")
    assert paid["body"]["use_discount"] == "YES" and paid["body"]["use_coupon"] == "NO"
    assert paid["body"]["discount_infos"] == [{"id": "sandbox-contract-discount", "type": 1}]
    order = bot.sandbox.state.orders[done.order_id or ""]
    assert f"CNY {order.charged:,.2f}" == discounted and order.amount == Decimal(quote["list_amount"])
    reply = wait_for(lambda: [t for t in bot.slack.texts(channel=REQUEST_CHANNEL) if f"paid {discounted} for order" in t],
                     what="the paid reply")[0]
    assert "with the contract discount of CNY" in reply
    audited = [e.detail or "" for e in bot.runtime.store.audit_log(row.id) if e.action == "pay_order"]
    assert any(discounted in d and "contract discount" in d and listed in d for d in audited)


def test_no_price_is_said_plainly_and_never_blocks_the_request(bot: Bot) -> None:
    from bot.sandbox.faults import FaultSettings, ScriptedFault

    bot.sandbox.faults.configure(FaultSettings(slow_seconds=2.5))
    bot.sandbox.faults.add(ScriptedFault(operation="ListRateOnPeriodDetail", kind="slow"))
    fill(bot, billing="prePaid", period_unit="3", period_num=1, count=1)  # the form is answered (200, no errors)
    row = final_state(bot, State.PENDING_APPROVAL)
    assert json.loads(row.price_json or "{}")["no_price"] == "the billing service did not answer within 1 s"
    card = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL],
                    what="the approval card")[0]
    assert "No price estimate*: the billing service did not answer within 1 s" in json.dumps(card["blocks"])
    assert "no price estimate" in card["text"]
    # The slow inquiry is still being served: let it land in this test's log, not the next one's.
    wait_for(lambda: bot.sandbox.calls("ListRateOnPeriodDetail"), what="the slow price inquiry to end")
    assert any(b["action_id"] == Action.APPROVE.value for b in buttons(card["blocks"]))
