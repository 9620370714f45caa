"""One INFO line per state change, saying which request, what moved, who acted, what the cloud follows and
the money involved: the story of a request can be read from the log alone."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.cloud.quote import PriceQuote
from bot.lifecycle import State
from bot.notify import Event
from bot.progress import Progress
from bot.spec import parse_spec
from bot.store.models import utcnow
from bot.store.repository import RequestStore
from bot.store.state_log import amount_of
from tests.specs import prepaid_body
from tests.test_tracker import APPROVER, make_tracker, run_until
from tests.tracking import cycle_until


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


@pytest.mark.slow
async def test_each_state_change_of_an_order_is_one_info_line(store: RequestStore, cloud: Cloud,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.lifecycle")
    tracker, news = make_tracker(store, cloud)
    row = await tracker.workflow.submit(parse_spec(prepaid_body(count=2)), "U0ASKER")
    assert (await tracker.workflow.approve(row.id, APPROVER)).ok
    await cycle_until(tracker, store, row.id, lambda r: Event.PAYMENT_DUE in news.of(row.id), what="the payment due")
    assert (await tracker.workflow.pay_order(row.id, APPROVER)).ok
    [done] = await run_until(tracker, store, [row.id])
    assert done.state == State.SUCCEEDED and done.order_id
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.lifecycle" and r.levelno == logging.INFO]
    moves = [line.split(": ", 1)[1].split(" by ")[0] for line in lines]
    assert moves == ["new → pending_approval", "pending_approval → approved", "approved → submitting",
                     "submitting → submitted", "submitted → awaiting_payment", "awaiting_payment → provisioning",
                     "provisioning → succeeded"]
    assert all(line.startswith(f"{row.id}: ") for line in lines)
    by = [line.split(" by ")[1].split(" (")[0] for line in lines]
    assert by[:2] == ["U0ASKER", APPROVER] and by[5] == APPROVER  # the payment is the approver's
    assert all(who.startswith("worker:") for who in (by[2], by[3], by[4], by[6]))
    assert "nothing ordered yet" in lines[0] and all(f"order {done.order_id}" in line for line in lines[3:])
    amount = f"{store.get(row.id).progress_json}"  # the order's exact amount, once billing states it
    assert "order amount" in lines[4] and "order amount" in lines[5] and '"order_amount"' in amount


def test_before_billing_states_an_amount_the_line_gives_the_estimate_the_approver_saw() -> None:
    hourly = PriceQuote(charging_mode="postPaid", basis="hour", currency="CNY", list_amount=Decimal("12.5"),
                        quoted_at=utcnow())
    period = PriceQuote(charging_mode="prePaid", basis="period", period_text="6 months", currency="USD",
                        list_amount=Decimal("1200"), discounted_amount=Decimal("1080"), quoted_at=utcnow())
    none = PriceQuote(charging_mode="prePaid", basis="period", no_price="billing did not answer in time",
                      quoted_at=utcnow())
    assert amount_of(None, hourly.model_dump_json()) == "estimate CNY 12.50 an hour"
    assert amount_of(None, period.model_dump_json()) == "estimate USD 1,080.00 for 6 months"
    assert amount_of(None, none.model_dump_json()) == "no price (billing did not answer in time)"
    billed = Progress(order_amount=1234.5, order_currency="CNY").model_dump_json()
    assert amount_of(billed, period.model_dump_json()) == "order amount CNY 1,234.50"  # the order's own, once known
    assert amount_of(None, None) is None
