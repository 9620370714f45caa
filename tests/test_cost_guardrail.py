"""AUTO_APPROVE_MAX_MONTHLY_COST: a pay-per-use request priced above it, or with no price, waits for a person.
The price comes from the real Pricer against the sandbox's billing over loopback."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.cloud.pricing import Pricer
from bot.lifecycle import State
from bot.policy import Guardrails, approval_rule
from bot.progress import Progress
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.spec import parse_spec
from bot.store.repository import RequestStore
from bot.workflow import CloudAdapter, Policy, Workflow
from tests.specs import office_body
from tests.workflows import NoGroups


def workflow(engine: Engine, cloud: Cloud, limit: Decimal | None) -> Workflow:
    rails = Guardrails(auto_approve_max_servers=10, auto_approve_max_monthly_cost=limit)
    return Workflow(RequestStore(engine), CloudAdapter(cloud), NoGroups(),
                    Policy(approvers=frozenset({"U0APPROVER"}), guardrails=rails,
                           first_poll_delay=timedelta(seconds=0.05)), worker_id="w")


def test_the_cost_rule_in_words() -> None:
    rails = Guardrails(auto_approve_max_monthly_cost=Decimal(1000))
    assert approval_rule(rails, prepaid=False, servers=1, monthly_cost=Decimal("999.99")) is None
    assert approval_rule(rails, prepaid=False, servers=1, monthly_cost=Decimal("1000.01")) == \
        "an estimated 1000.01 a month, above AUTO_APPROVE_MAX_MONTHLY_COST (1000)"
    assert approval_rule(rails, prepaid=False, servers=1, monthly_cost=None) == \
        "no price is known for it, and AUTO_APPROVE_MAX_MONTHLY_COST (1000) is set"
    assert approval_rule(Guardrails(), prepaid=False, servers=1, monthly_cost=None) is None  # rule off


@pytest.mark.parametrize(("limit", "waits"), [(Decimal(100), True), (Decimal(100_000), False), (None, False)])
async def test_a_pay_per_use_request_waits_when_its_monthly_estimate_is_above_the_limit(
        engine: Engine, cloud: Cloud, limit: Decimal | None, waits: bool) -> None:
    flow = workflow(engine, cloud, limit)
    spec = parse_spec(office_body(count=2))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=30).quote(spec)
    monthly = quote.monthly_estimate()
    assert quote.ok and monthly is not None and Decimal(100) < monthly < Decimal(100_000)
    row = await flow.submit(spec, "U0ASKER", price=quote)
    assert row.state == (State.PENDING_APPROVAL if waits else State.APPROVED)
    rule = Progress.of(row).approval_rule  # what the card says of why a person decides
    assert (rule is not None and "above AUTO_APPROVE_MAX_MONTHLY_COST" in rule) if waits else rule is None
    if not waits and limit is not None:
        auto = [e for e in flow.store.audit_log(row.id) if e.action == "auto_approved"]
        assert auto and "AUTO_APPROVE_MAX_MONTHLY_COST" in (auto[0].detail or "")


@pytest.mark.slow
async def test_no_price_waits_for_a_person_when_the_cost_rule_is_on(engine: Engine, cloud: Cloud,
                                                                    sandbox: Sandbox) -> None:
    sandbox.faults.configure(FaultSettings(slow_seconds=2.0))
    sandbox.faults.add(ScriptedFault(operation="ListOnDemandResourceRatings", kind="slow"))
    spec = parse_spec(office_body(count=1))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=0.3).quote(spec)
    assert not quote.ok
    row = await workflow(engine, cloud, Decimal(100_000)).submit(spec, "U0ASKER", price=quote)
    assert row.state == State.PENDING_APPROVAL
    for _ in range(100):  # the slow inquiry lands in this test's log, not the next one's
        if sandbox.calls("ListOnDemandResourceRatings"):
            break
        await asyncio.sleep(0.05)
