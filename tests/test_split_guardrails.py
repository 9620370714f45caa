"""Guardrails that splitting a request cannot avoid: the auto-approval limits count what the same person had
approved without an approver in the last 24 hours, and MAX_PENDING_PER_USER bounds what one person has
waiting at once. Both are judged again in the transaction that stores the request, so submissions sent
together cannot pass them together (SQLite and PostgreSQL, the price from the sandbox's billing over
loopback)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.cloud.pricing import Pricer
from bot.lifecycle import State
from bot.policy import AutoApproved, Guardrails, approval_rule, pending_refusal
from bot.progress import Progress
from bot.sandbox import Sandbox
from bot.spec import parse_spec
from bot.store.models import utcnow
from bot.store.repository import NewRequest, OverPendingCap, RequestStore
from bot.workflow import CloudAdapter, Policy, Refused, Workflow
from tests.flows import OFFICE
from tests.harness import APPROVAL_CHANNEL, REQUESTER, wait_for
from tests.specs import office_body, prepaid_body
from tests.test_guardrails_and_text import bot_with
from tests.workflows import NoGroups

ASKER = "U0ASKER"


def workflow(engine: Engine, cloud: Cloud, **rails: Any) -> Workflow:
    guardrails = Guardrails(**{"auto_approve_max_servers": 100, **rails})
    return Workflow(RequestStore(engine), CloudAdapter(cloud), NoGroups(),
                    Policy(approvers=frozenset({"U0APPROVER"}), guardrails=guardrails,
                           first_poll_delay=timedelta(seconds=0.05)), worker_id="w")


def states(flow: Workflow, user: str = ASKER) -> list[str]:
    return sorted(row.state for row in flow.store.for_requester(user, 50))


# The rules in words -------------------------------------------------------------------------------------


def test_the_limits_count_what_went_out_without_an_approver_today() -> None:
    rails = Guardrails(auto_approve_max_servers=5, auto_approve_max_monthly_cost=Decimal(2000))
    earlier = AutoApproved(requests=1, servers=3, monthly_cost=Decimal("1445.40"))
    assert approval_rule(rails, prepaid=False, servers=2, monthly_cost=Decimal("500"), earlier=earlier) is None
    assert approval_rule(rails, prepaid=False, servers=3, monthly_cost=Decimal("1"), earlier=earlier) == (
        "3 more servers would make 6 approved without an approver in the last 24 hours, more than "
        "AUTO_APPROVE_MAX_SERVERS (5)")
    assert approval_rule(rails, prepaid=False, servers=2, monthly_cost=Decimal("963.60"), earlier=earlier) == (
        "an estimated 963.60 a month on top of 1445.40 approved without an approver in the last 24 hours "
        "(1 request) makes 2409.00, above AUTO_APPROVE_MAX_MONTHLY_COST (2000)")
    unknown = AutoApproved(requests=2, servers=2, monthly_cost=Decimal(0), unpriced=2)
    assert approval_rule(rails, prepaid=False, servers=1, monthly_cost=Decimal("1"), earlier=unknown) == (
        "the cost of 2 requests approved without an approver in the last 24 hours is not known, and "
        "AUTO_APPROVE_MAX_MONTHLY_COST (2000) is set")
    assert approval_rule(Guardrails(), prepaid=False, servers=1, earlier=AutoApproved(servers=4)) is None


def test_the_pending_cap_in_words() -> None:
    assert pending_refusal(Guardrails(), waiting=4) is None
    refusal = pending_refusal(Guardrails(), waiting=5)
    assert refusal is not None and refusal.rule == "MAX_PENDING_PER_USER"
    assert refusal.sentence.startswith("You have 5 requests waiting for an approver or for payment, and "
                                       "MAX_PENDING_PER_USER is 5: this one would wait too.")


# In the storing transaction -------------------------------------------------------------------------------


async def test_six_small_requests_under_a_cost_limit_do_not_all_go_out_without_an_approver(
        engine: Engine, cloud: Cloud) -> None:
    """The review's case: six 3-server pay-per-use requests under a CNY 2,000 limit, about CNY 1,445 a month
    each, came to about CNY 8,700 a month with no approver. Sent together, one goes out; five wait."""
    flow = workflow(engine, cloud, auto_approve_max_monthly_cost=Decimal(2000), max_pending_per_user=10)
    spec = parse_spec(office_body(count=3))
    quote = await Pricer.from_cloud(cloud, timeout_seconds=30).quote(spec)
    monthly = quote.monthly_estimate()
    assert monthly is not None and Decimal(1000) < monthly <= Decimal(2000)  # each alone is within the limit
    rows = await asyncio.gather(*(flow.submit(spec, ASKER, price=quote, reason="split") for _ in range(6)))
    assert sorted(row.state for row in rows) == [State.APPROVED] + [State.PENDING_APPROVAL] * 5
    assert states(flow) == sorted([State.APPROVED.value] + [State.PENDING_APPROVAL.value] * 5)
    held = [row for row in rows if row.state == State.PENDING_APPROVAL]
    for row in held:  # the card says why, in words; the audit log too
        rule = Progress.of(row).approval_rule or ""
        assert rule == (f"an estimated {monthly} a month on top of {monthly} approved without an approver in the "
                        f"last 24 hours (1 request) makes {monthly * 2}, above AUTO_APPROVE_MAX_MONTHLY_COST (2000)")
        assert row.expires_at is not None and row.remind_at is not None and row.decided_at is None
        audit = [(e.action, e.detail) for e in flow.store.audit_log(row.id)]
        assert ("held_for_approver", rule) in audit and "auto_approved" not in [a for a, _ in audit]
    assert await flow.submit(spec, "U0SOMEONEELSE", price=quote) is not None  # another person's day is theirs
    assert states(flow, "U0SOMEONEELSE") == [State.APPROVED.value]


async def test_split_requests_cannot_pass_the_server_limit_together(engine: Engine, cloud: Cloud) -> None:
    flow = workflow(engine, cloud, auto_approve_max_servers=5)
    spec = parse_spec(office_body(count=2))
    rows = await asyncio.gather(*(flow.submit(spec, ASKER, reason="split") for _ in range(4)))
    approved = [row for row in rows if row.state == State.APPROVED]
    assert len(approved) == 2  # 4 servers of 5; a third would make 6
    for row in rows:
        if row.state == State.PENDING_APPROVAL:
            assert Progress.of(row).approval_rule == ("2 more servers would make 6 approved without an approver in "
                                                      "the last 24 hours, more than AUTO_APPROVE_MAX_SERVERS (5)")
    # Requests that ordered nothing do not count: cancel one that went out, and 2 more fit again.
    cancelled = await flow.cancel(approved[0].id, ASKER)
    assert cancelled.ok
    assert (await flow.submit(spec, ASKER)).state == State.APPROVED


async def test_what_an_approver_approved_does_not_count_towards_the_auto_limits(engine: Engine, cloud: Cloud) -> None:
    flow = workflow(engine, cloud, auto_approve_max_servers=5)
    waited = await flow.submit(parse_spec(office_body(count=6)), ASKER, reason="big")
    assert waited.state == State.PENDING_APPROVAL
    assert (await flow.approve(waited.id, "U0APPROVER")).ok
    assert (await flow.submit(parse_spec(office_body(count=5)), ASKER)).state == State.APPROVED


def test_the_pending_cap_holds_when_one_persons_requests_are_stored_at_once(engine: Engine) -> None:
    store = RequestStore(engine)

    def attempt(_: int) -> int | None:
        try:
            store.create(NewRequest(ASKER, "{}", "h" * 64, "prePaid", 1, "sg"), State.PENDING_APPROVAL, ASKER,
                         pending_cap=5)
        except OverPendingCap as over:
            return over.waiting
        return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(12)))
    assert results.count(None) == 5 and set(results) == {None, 5}
    assert store.waiting_for_a_person(ASKER) == 5
    # What goes out at once never waits, so the cap does not stop it; another person has their own five.
    store.create(NewRequest(ASKER, "{}", "h" * 64, "postPaid", 1, "sg"), State.APPROVED, ASKER, pending_cap=5)
    store.create(NewRequest("U0OTHER", "{}", "h" * 64, "prePaid", 1, "sg"), State.PENDING_APPROVAL, "U0OTHER",
                 pending_cap=5)


async def test_a_request_that_would_wait_beyond_the_pending_cap_is_refused_with_the_sentence(
        engine: Engine, cloud: Cloud) -> None:
    flow = workflow(engine, cloud, max_pending_per_user=2)
    first = await flow.submit(parse_spec(prepaid_body()), ASKER, reason="a")
    await flow.submit(parse_spec(prepaid_body()), ASKER, reason="b")
    with pytest.raises(Refused) as refused:
        await flow.submit(parse_spec(prepaid_body()), ASKER, reason="c")
    assert refused.value.refusal.rule == "MAX_PENDING_PER_USER"
    assert "You have 2 requests waiting" in refused.value.refusal.sentence
    assert len(flow.store.for_requester(ASKER, 10)) == 2
    assert (await flow.cancel(first.id, ASKER)).ok  # one less waiting: room for one more
    assert (await flow.submit(parse_spec(prepaid_body()), ASKER, reason="c")).state == State.PENDING_APPROVAL
    assert flow.store.waiting_for_a_person(ASKER) == 2
    assert flow.store.approved_without_approver(ASKER, utcnow() - timedelta(days=1)) == []


# Through the real app ---------------------------------------------------------------------------------------

FORM = {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS", "disk_size": 80}


@pytest.mark.slow
def test_a_split_request_waits_for_an_approver_and_its_card_says_why(sandbox: Sandbox, sandbox_url: str,
                                                                      tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, auto_approve_max_servers=5) as bot:
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        assert bot.submit_form(view, {**FORM, "count": 3}).status_code == 200
        wait_for(lambda: len(bot.sandbox.calls("CreateAppServers")) == 1, what="the first order")
        # Within AUTO_APPROVE_MAX_SERVERS alone, not with the first: the form asks for the reason an approver reads.
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        answer = bot.submit_form(view, {**FORM, "count": 3}).json()
        assert answer["errors"]["reason"].startswith("Say why these servers are needed: an approver decides this "
                                                     "request — 3 more servers would make 6 approved without an "
                                                     "approver in the last 24 hours")
        assert bot.submit_form(view, {**FORM, "count": 3, "reason": "Second team"}).status_code == 200
        held = wait_for(lambda: [r for r in bot.runtime.store.for_requester(REQUESTER, 10)
                                 if r.state == State.PENDING_APPROVAL and r.approval_ts], what="the approval card")[0]
        card = next(c for c in bot.slack.of("chat.postMessage") if c.get("channel") == APPROVAL_CHANNEL)
        assert "3 more servers would make 6 approved without an approver in the last 24 hours" in str(card["blocks"])
        assert held.reason == "Second team" and len(bot.sandbox.calls("CreateAppServers")) == 1


@pytest.mark.slow
def test_one_more_waiting_request_than_max_pending_per_user_is_refused_in_the_form(
        sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, max_pending_per_user=2) as bot:
        prepaid = {**FORM, "count": 1, "billing": "prePaid", "period_unit": "2", "period_num": 1, "reason": "Team"}
        for _ in range(2):
            view = bot.choose_group(bot.open_form(), OFFICE["id"])
            assert bot.submit_form(view, prepaid).content == b""  # stored: the form closes
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        answer = bot.submit_form(view, prepaid).json()
        assert answer["response_action"] == "errors"
        assert answer["errors"]["count"].startswith("You have 2 requests waiting for an approver or for payment, "
                                                    "and MAX_PENDING_PER_USER is 2")
        # Pay-per-use within the limits does not wait, so it is not refused.
        assert bot.submit_form(view, {**FORM, "count": 1}).content == b""
        assert sorted(r.state for r in bot.runtime.store.for_requester(REQUESTER, 10))[-2:] == [
            State.PENDING_APPROVAL, State.PENDING_APPROVAL]
        assert len(bot.runtime.store.for_requester(REQUESTER, 10)) == 3


@pytest.mark.slow
def test_forms_sent_at_once_never_pass_the_pending_cap_together(sandbox: Sandbox, sandbox_url: str,
                                                                  tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, max_pending_per_user=3) as bot:
        views = [bot.choose_group(bot.open_form(), OFFICE["id"]) for _ in range(6)]
        prepaid = {**FORM, "count": 1, "billing": "prePaid", "period_unit": "2", "period_num": 1, "reason": "Team"}
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda view: bot.submit_form(view, prepaid), views))
        refusals = [a.json()["errors"]["count"] for a in answers if a.content]
        assert len(refusals) == 3 and all("MAX_PENDING_PER_USER is 3" in r for r in refusals), refusals
        assert bot.runtime.store.waiting_for_a_person(REQUESTER) == 3
