"""The create form through the real app (signed requests, fake Slack, the sandbox cloud): products in words with
the billing chosen, the network by name, the period bounded by its unit, and the reason required whenever an
approver will decide."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.views import View

from bot.lifecycle import State
from bot.sandbox import Sandbox, seed
from bot.slack.ids import Action, Block
from tests.flows import OFFICE
from tests.harness import REQUESTER, Bot, form_values, wait_for
from tests.test_guardrails_and_text import bot_with

SUBNET = next(s for s in seed.SUBNETS if s["id"] == OFFICE["subnet_id"])
PRODUCT_IDS = [p["product_id"] for p in seed.PRODUCTS]
FILLED: dict[str, Any] = {"group": OFFICE["id"], "product": OFFICE["product_id"], "az": "cn-north-4a",
                          "disk_type": "SAS", "disk_size": 80, "count": 1}


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def valid(view: dict[str, Any]) -> dict[str, Any]:
    """The view as Slack gets it passes slack_sdk's own checks (lengths, counts, required parts)."""
    View(**{k: v for k, v in view.items() if k not in ("id", "hash")}).validate_json()
    return view


def redraw(bot: Bot, view: dict[str, Any], fields: dict[str, Any], action: Action, block_id: Block,
           chosen: str) -> dict[str, Any]:
    """A dispatching radio button clicked in the open form: what Slack sends, and the form the bot redraws."""
    before = len(bot.slack.of("views.update"))
    clicked = {"type": "radio_buttons", "action_id": action.value, "block_id": block_id.value,
               "selected_option": {"text": {"type": "plain_text", "text": chosen}, "value": chosen},
               "action_ts": str(time.time())}
    payload = bot.view_payload(view, form_values(fields), REQUESTER, "block_actions", [clicked])
    assert bot.interact(payload).status_code == 200
    wait_for(lambda: len(bot.slack.of("views.update")) > before, what="the form redrawn")
    return valid(bot.slack.latest_view())


def group_form(bot: Bot) -> dict[str, Any]:
    return valid(bot.choose_group(bot.open_form(), OFFICE["id"]))


def test_products_read_as_words_with_the_billing_chosen_and_their_id_beneath(bot: Bot) -> None:
    view = group_form(bot)
    products = block(view, Block.PRODUCT.value)["element"]
    texts = [o["text"]["text"] for o in products["options"]]
    assert texts == ["4 vCPUs · 8 GiB · pay-per-use", "4 vCPUs · 16 GiB · pay-per-use",
                     "8 vCPUs · 64 GiB · GPU 1 x NVIDIA T4 · pay-per-use"]
    assert [o["description"]["text"] for o in products["options"]] == PRODUCT_IDS  # whole, not cut mid-id
    assert [o["value"] for o in products["options"]] == PRODUCT_IDS
    assert products["initial_option"]["value"] == OFFICE["product_id"]

    prepaid = redraw(bot, view, {**FILLED, "billing": "prePaid"}, Action.BILLING_CHANGE, Block.BILLING, "prePaid")
    products = block(prepaid, Block.PRODUCT.value)["element"]
    assert [o["text"]["text"] for o in products["options"]] == [
        "4 vCPUs · 8 GiB · yearly/monthly", "4 vCPUs · 16 GiB · yearly/monthly",
        "8 vCPUs · 64 GiB · GPU 1 x NVIDIA T4 · yearly/monthly"]
    assert "pay-per-use" not in json.dumps(products)
    assert products["initial_option"] == products["options"][0]  # what was chosen stays chosen

    back = redraw(bot, prepaid, {**FILLED, "billing": "postPaid"}, Action.BILLING_CHANGE, Block.BILLING, "postPaid")
    assert block(back, Block.PRODUCT.value)["element"]["options"][0]["text"]["text"].endswith("pay-per-use")


def test_the_network_is_shown_by_name_with_its_ids_after(bot: Bot) -> None:
    view = group_form(bot)
    note = next(b for b in view["blocks"] if b["type"] == "context" and "globe" in json.dumps(b))["elements"]
    names, ids = note[0]["text"], note[1]["text"]
    assert f"*{SUBNET['name']}*" in names and SUBNET["cidr"] in names and "OU=Apps" in names
    assert SUBNET["id"] not in names and SUBNET["vpc_id"] not in names  # ids are secondary
    assert ids == f"Subnet ID {SUBNET['id']} · VPC ID {SUBNET['vpc_id']}"
    assert bot.sandbox.calls("ShowSubnet")  # the name, range and VPC come from the subnet lookup


def test_the_period_length_is_bounded_by_its_unit_in_the_element(bot: Bot) -> None:
    view = redraw(bot, group_form(bot), {**FILLED, "billing": "prePaid"}, Action.BILLING_CHANGE, Block.BILLING,
                  "prePaid")
    unit = block(view, Block.PERIOD_UNIT.value)
    assert unit["dispatch_action"] is True and unit["element"]["action_id"] == Action.PERIOD_UNIT_CHANGE.value
    length = block(view, Block.PERIOD_NUM.value)
    assert (length["element"]["min_value"], length["element"]["max_value"]) == ("1", "9")
    assert length["label"]["text"] == "Period length (months)" and length["hint"]["text"] == "1 to 9 months."

    typed = {**FILLED, "billing": "prePaid", "period_unit": "3", "period_num": 6}
    years = redraw(bot, view, typed, Action.PERIOD_UNIT_CHANGE, Block.PERIOD_UNIT, "3")
    length = block(years, Block.PERIOD_NUM.value)
    assert (length["element"]["min_value"], length["element"]["max_value"]) == ("1", "3")
    assert length["element"]["initial_value"] == "3"  # 6 is no length in years: the most there is instead
    assert length["label"]["text"] == "Period length (years)" and length["hint"]["text"] == "1 to 3 years."
    assert block(years, Block.PERIOD_UNIT.value)["element"]["initial_option"]["value"] == "3"

    months = redraw(bot, years, {**typed, "period_unit": "2", "period_num": 3}, Action.PERIOD_UNIT_CHANGE,
                    Block.PERIOD_UNIT, "2")
    length = block(months, Block.PERIOD_NUM.value)
    assert (length["element"]["max_value"], length["element"]["initial_value"]) == ("9", "3")


def test_a_yearly_monthly_request_requires_the_reason(bot: Bot) -> None:
    view = redraw(bot, group_form(bot), {**FILLED, "billing": "prePaid"}, Action.BILLING_CHANGE, Block.BILLING,
                  "prePaid")
    reason = block(view, Block.REASON.value)
    assert reason["optional"] is False and "always" in reason["hint"]["text"]
    answer = bot.submit_form(view, {**FILLED, "billing": "prePaid", "period_unit": "2", "period_num": 1}).json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == [Block.REASON.value]
    assert "yearly/monthly" in answer["errors"][Block.REASON.value]
    assert bot.runtime.store.for_requester(REQUESTER, 10) == []


def test_pay_per_use_requires_the_reason_only_above_the_auto_approve_limit(bot: Bot) -> None:
    view = group_form(bot)
    reason = block(view, Block.REASON.value)
    assert reason["optional"] is True and reason["hint"]["text"] == (
        "Needed when an approver decides: more than 5 servers.")
    many = bot.submit_form(view, {**FILLED, "count": 6}).json()
    assert many["response_action"] == "errors"
    assert "AUTO_APPROVE_MAX_SERVERS (5)" in many["errors"][Block.REASON.value]
    assert bot.runtime.store.for_requester(REQUESTER, 10) == []

    few = bot.submit_form(view, {**FILLED, "count": 5, "reason": "   "})  # blank is no reason, and none is needed
    assert few.status_code == 200 and not few.text  # the modal closes
    row = bot.runtime.store.for_requester(REQUESTER, 10)[0]
    assert row.state != State.PENDING_APPROVAL and row.reason is None


@pytest.mark.slow
def test_pay_per_use_above_the_cost_limit_requires_the_reason(sandbox: Sandbox, sandbox_url: str,
                                                               tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, auto_approve_max_monthly_cost=100) as bot:
        view = group_form(bot)
        assert block(view, Block.REASON.value)["hint"]["text"] == (
            "Needed when an approver decides: more than 5 servers, or above 100 a month (estimated).")
        answer = bot.submit_form(view, FILLED).json()
        assert "AUTO_APPROVE_MAX_MONTHLY_COST (100)" in answer["errors"][Block.REASON.value]
        assert bot.submit_form(view, {**FILLED, "reason": "Month-end close"}).status_code == 200
        row = wait_for(lambda: bot.runtime.store.for_requester(REQUESTER, 10), what="the request")[0]
        assert row.state == State.PENDING_APPROVAL and row.reason == "Month-end close"


@pytest.mark.slow
def test_every_pay_per_use_request_requires_the_reason_when_policy_says_so(sandbox: Sandbox, sandbox_url: str,
                                                                          tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, postpaid_requires_approval=True) as bot:
        view = group_form(bot)
        assert block(view, Block.REASON.value)["optional"] is False
        billing = [o["text"]["text"] for o in block(view, Block.BILLING.value)["element"]["options"]]
        assert billing == ["Pay-per-use (needs approval)", "Yearly/monthly (needs approval)"]
        answer = bot.submit_form(view, FILLED).json()
        assert "POSTPAID_REQUIRES_APPROVAL" in answer["errors"][Block.REASON.value]


def test_a_quota_shortfall_and_a_missing_reason_are_shown_together(bot: Bot) -> None:
    view, quota = group_form(bot), bot.sandbox.config.instance_quota
    bot.sandbox.config.instance_quota = 1
    try:
        answer = bot.submit_form(view, {**FILLED, "count": 6}).json()
    finally:
        bot.sandbox.config.instance_quota = quota
    assert set(answer["errors"]) == {Block.COUNT.value, Block.REASON.value}
    assert len(bot.sandbox.calls("CheckQuota")) == 1 and bot.runtime.store.for_requester(REQUESTER, 10) == []
