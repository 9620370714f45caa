"""What billing did, said as it did it, through the real app (signed Slack requests in, the fake Slack and the
sandbox cloud on loopback): fewer servers than asked end "partly done", and a payment that billing turned into
a proxy order for the master account is not announced as paid."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.lifecycle import State
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.slack.ids import Block as BlockId
from bot.store.repository import server_ids
from tests.flows import fill, final_state, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, NOTIFY_CHANNEL, REQUEST_CHANNEL, REQUESTER, Bot, wait_for
from tests.test_money_path import buttons, card_versions

pytestmark = pytest.mark.slow


def thread_replies(bot: Bot, thread_ts: str | None) -> list[dict[str, Any]]:
    return [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == thread_ts]


def test_a_job_that_partly_fails_ends_partly_done_everywhere_and_order_again_asks_for_the_rest(bot: Bot) -> None:
    bot.sandbox.state.fail_next_jobs = 1  # the last of the job's servers fails to be created
    fill(bot, count=2)
    done = final_state(bot, State.PARTLY_DONE, State.SUCCEEDED, State.FAILED)
    assert done.state == State.PARTLY_DONE and len(server_ids(done)) == 1
    name = bot.sandbox.state.servers[server_ids(done)[0]].name
    final = wait_for(lambda: [a for a in thread_replies(bot, done.thread_ts) if "Partly done" in a["text"]],
                     what="the final reply")[0]
    shown = json.dumps(final["blocks"], ensure_ascii=False)
    assert f"Partly done: 1 of 2 ready ({name}); 1 failed: WKS.00211401" in shown and f"<@{REQUESTER}>" in shown
    assert "Open the Workspace console" in shown and "red_circle" not in shown and "failed." not in final["text"][:40]
    assert "Order again asks for the 1 missing server." in shown and Action.ORDER_AGAIN.value in shown
    wait_for(lambda: any("Partly done: 1 of 2 ready" in t for t in bot.slack.texts(channel=NOTIFY_CHANNEL)),
             what="the outcome in the notify channel")
    wait_for(lambda: any(a.get("ts") == done.thread_ts and "Partly done" in a["text"]
                         for a in bot.slack.of("chat.update")), what="the thread head: partly done")
    metrics = bot.http.get(bot.url + "/metrics").text
    assert 'appserver_requests{state="partly_done"} 1.0' in metrics

    before = len(bot.slack.of("views.update"))
    assert bot.click(Action.ORDER_AGAIN.value, done.id, REQUESTER, REQUEST_CHANNEL, done.thread_ts).status_code == 200
    wait_for(lambda: len(bot.slack.of("views.update")) > before, what="the form, filled")
    count = next(b for b in bot.slack.latest_view()["blocks"] if b.get("block_id") == BlockId.COUNT.value)
    assert count["element"]["initial_value"] == "1"  # the missing server, not the whole number again


def test_an_order_that_opens_fewer_servers_is_partly_done_once_the_grace_has_passed(bot: Bot) -> None:
    tracker = bot.runtime.tracker
    assert tracker is not None
    tracker.config = dataclasses.replace(tracker.config, resources_grace=timedelta(seconds=1))
    bot.sandbox.state.open_fewer_next = 1  # billing opens 2 of the 3 and unsubscribes the third
    bot.sandbox.state.discount_rate = Decimal("0.1")
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=3, auto_pay=True)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card")
    card = next(a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL
            and "thread_ts" not in a)
    [approve] = [b for b in buttons(card["blocks"]) if b["action_id"] == Action.APPROVE.value]
    assert "Auto-pay is on" in approve["confirm"]["text"]["text"]
    assert "billing applies the commercial discount itself" in approve["confirm"]["text"]["text"]
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    done = final_state(bot, State.PARTLY_DONE, State.SUCCEEDED, State.FAILED)
    assert done.state == State.PARTLY_DONE and len(server_ids(done)) == 2
    order = bot.sandbox.state.orders[done.order_id or ""]
    assert order.refunded == 1 and sorted(server_ids(done)) == sorted(order.server_ids)
    # Auto-pay charged the discounted amount the card showed (billing applied the discount itself).
    assert order.charged == Decimal(json.loads(done.price_json or "{}")["discounted_amount"])
    final = wait_for(lambda: [a for a in thread_replies(bot, done.thread_ts) if "Partly done" in a["text"]],
                     what="the final reply")[0]
    assert "Partly done: 2 of 3 servers created (" in final["text"]
    assert "; 1 failed to open and billing refunds it." in final["text"]
    wait_for(lambda: any("Partly done: 2 of 3 servers created" in json.dumps(v["blocks"])
                         for v in card_versions(bot, row.approval_ts or "")), what="the card: partly done")
    # It was followed, not ended at the first look: the resources were read more than once.
    assert len(bot.sandbox.calls("ListPayPerUseCustomerResources")) >= 2


def test_a_proxy_payment_is_said_to_wait_for_the_master_account_until_billing_shows_it_paid(bot: Bot) -> None:
    bot.sandbox.state.finance_hosted = True
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    final_state(bot, State.AWAITING_PAYMENT)
    pay_card = wait_for(lambda: [v for v in card_versions(bot, row.approval_ts or "")
                                 if Action.PAY.value in json.dumps(v["blocks"])], what="the Pay prompt")[-1]
    [pay] = [b for b in buttons(pay_card["blocks"]) if b["action_id"] == Action.PAY.value]
    bot.click(Action.PAY.value, pay["value"], APPROVER, APPROVAL_CHANNEL, row.approval_ts)

    told = wait_for(lambda: [a for a in thread_replies(bot, row.thread_ts) if "master account" in a["text"]],
                    what="the thread told")[0]
    assert "waits for the master account to pay it in the Billing Center" in told["text"]
    card = wait_for(lambda: [v for v in card_versions(bot, row.approval_ts or "")
                             if "waits for the master account" in json.dumps(v["blocks"])], what="the card")[-1]
    assert Action.PAY.value not in json.dumps(card["blocks"])
    assert only_request(bot).state == State.AWAITING_PAYMENT
    said = [a["text"] for a in bot.slack.of("chat.postMessage")] + [a["text"] for a in bot.slack.of("chat.update")]
    assert not any(" paid CNY" in t or "paid order" in t for t in said)  # nothing announces an unconfirmed payment

    order = bot.sandbox.state.orders[row.order_id or only_request(bot).order_id or ""]
    assert bot.sandbox.state.master_pays(order)
    final_state(bot, State.SUCCEEDED)
    wait_for(lambda: [a for a in thread_replies(bot, row.thread_ts) if "Billing now shows order" in a["text"]],
             what="paid, once billing shows it")
