"""Recovery after an unknown create, against the sandbox over loopback, on SQLite and PostgreSQL: the bot
links what its create made only when it is certainly ours, and otherwise asks an approver."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.lifecycle import State
from bot.notify import Event
from bot.reconcile import LOOKUP_SKEW, Candidates
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.spec import parse_spec
from bot.store.news import NewsStore
from bot.store.repository import RequestStore
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CloudAdapter, Outcome, Policy, Workflow
from tests.specs import office_body, prepaid_body
from tests.tracking import cycle_until
from tests.workflows import APPROVER, REQUESTER, NoGroups, lost_answer, one_approver_workflow


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


@pytest.fixture
def workflow(store: RequestStore, cloud: Cloud) -> Workflow:
    return one_approver_workflow(store, cloud)


def shown(store: RequestStore, request_id: str) -> str:
    """The key of the candidates the request's card shows now (what its buttons carry)."""
    row = store.get(request_id)
    assert row is not None
    return Candidates.of(row).key()


def window_closed(store: RequestStore, request_id: str, lease: timedelta = timedelta(seconds=60)) -> None:
    """As if the time in which the create could still show up in the cloud had passed: its start moved back."""
    row = store.get(request_id)
    assert row is not None and row.submit_started_at is not None
    store.update_fields(request_id, actor="test", action="time_passes",
                        submit_started_at=row.submit_started_at - lease - 2 * LOOKUP_SKEW - timedelta(seconds=1))


def foreign(sandbox: Sandbox, service: str, spec: dict[str, object]) -> str:
    return sandbox.state.place_foreign_order(service_type_code=service, spec=spec, at=time.time(),
                                             amount=Decimal("42.00")).id


async def test_the_right_order_is_linked_beside_other_services_and_other_workspace_orders(
        workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    # Ordered in the same second by others: an ECS order, and a Workspace order for another period and count.
    other_service = foreign(sandbox, "hws.service.type.ec2", {"subscription_num": 1})
    other_workspace = foreign(sandbox, "hws.service.type.vdi", prepaid_body(count=4, months=6))
    request_id = await lost_answer(workflow, sandbox, prepaid_body(count=2, months=3))
    row = store.get(request_id)
    assert row is not None and row.lookup_found is True
    ours = next(o for o in sandbox.state.orders.values() if o.id not in (other_service, other_workspace))
    assert row.order_id == ours.id
    listed = sandbox.calls("ListCustomerOrders")[-1]["query"]
    assert listed["service_type_code"] == "hws.service.type.vdi" and listed["order_type"] == "1"
    assert listed["create_time_begin"] < listed["create_time_end"]
    # The line items were read only for Workspace orders: BSS filtered the other service out.
    read = {c["path"].rsplit("/", 1)[1] for c in sandbox.calls("ShowCustomerOrderDetails")}
    assert other_service not in read and {ours.id, other_workspace} <= read


async def test_two_fitting_orders_go_to_an_approver_who_chooses(workflow: Workflow, store: RequestStore,
                                                                sandbox: Sandbox) -> None:
    # Someone else ordered exactly the same thing in the same second: nothing tells them apart.
    twin = foreign(sandbox, "hws.service.type.vdi", prepaid_body(count=1))
    request_id = await lost_answer(workflow, sandbox, prepaid_body(count=1))
    row = store.get(request_id)
    assert row is not None and row.order_id is None and row.lookup_found is False
    candidates = Candidates.of(row)
    assert {c.id for c in candidates.items} >= {twin} and len(candidates.items) == 2
    assert all(c.fits for c in candidates.items)
    # Never paid, nor payable, while not linked.
    refused = await workflow.pay_order(request_id, APPROVER)
    assert refused.outcome is Outcome.WRONG_STATE and sandbox.calls("PayOrders") == []
    # A resend is refused while the cloud shows candidates.
    assert (await workflow.retry_after_attention(request_id, APPROVER)).outcome is Outcome.SERVERS_FOUND
    # The requester does not choose; an unknown id is refused; the approver's choice is linked and audited.
    assert not (await workflow.choose_candidate(request_id, REQUESTER, twin, shown(store, request_id))).ok
    unknown = await workflow.choose_candidate(request_id, APPROVER, "CSNOTACANDIDATE", shown(store, request_id))
    assert unknown.outcome is Outcome.NOT_A_CANDIDATE
    ours = next(c.id for c in candidates.items if c.id != twin)
    chosen = await workflow.choose_candidate(request_id, APPROVER, ours, shown(store, request_id))
    assert chosen.ok and chosen.request is not None
    assert chosen.request.state == State.SUBMITTED and chosen.request.order_id == ours
    audit = [e for e in store.audit_log(request_id) if e.action == "choose_candidate"]
    assert audit[-1].actor == APPROVER and ours in (audit[-1].detail or "") and audit[-1].allowed
    assert Event.SUBMITTED.value in [n.event for n in NewsStore(store.engine).pending(request_id)]
    # Decided: no second choice.
    assert not (await workflow.choose_candidate(request_id, APPROVER, twin, shown(store, request_id))).ok


async def test_none_of_these_rules_them_out_and_then_allows_a_resend(workflow: Workflow, store: RequestStore,
                                                                    sandbox: Sandbox) -> None:
    foreign(sandbox, "hws.service.type.vdi", prepaid_body(count=1))
    request_id = await lost_answer(workflow, sandbox, prepaid_body(count=1))
    ruled = await workflow.choose_candidate(request_id, APPROVER, None, shown(store, request_id))
    assert ruled.ok
    row = store.get(request_id)
    assert row is not None and Candidates.of(row).items == [] and len(Candidates.of(row).ruled_out) == 2
    assert any(e.action == "rule_out_candidates" and e.actor == APPROVER for e in store.audit_log(request_id))
    window_closed(store, request_id)
    resent = await workflow.retry_after_attention(request_id, APPROVER)  # the fresh look skips what was ruled out
    assert resent.ok and resent.request is not None and resent.request.state == State.APPROVED


async def test_no_fitting_order_is_shown_not_linked(workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    """A Workspace order in the window that does not match (the create itself failed) is offered, never linked."""
    other = foreign(sandbox, "hws.service.type.vdi", prepaid_body(count=5, months=2))
    row = await workflow.submit(parse_spec(prepaid_body(count=1)), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))  # refused before acting: 5xx
    [result] = await workflow.submit_due()
    fresh = store.get(row.id)
    assert result.request.state == State.NEEDS_ATTENTION and fresh is not None and fresh.order_id is None
    items = Candidates.of(fresh).items
    assert [c.id for c in items] == [other] and not items[0].fits


async def test_jobs_are_told_apart_by_group_and_count(workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    # Another person's create in the same group in the same second, for 3 servers.
    sandbox.state.create_job(office_body(count=3))
    request_id = await lost_answer(workflow, sandbox, office_body(count=2))
    row = store.get(request_id)
    assert row is not None and row.lookup_found is True and row.job_id is not None
    job = sandbox.state.jobs[row.job_id]
    assert len(job.server_ids) == 2 and sorted(json.loads(row.server_ids_json)) == sorted(job.server_ids)


async def test_two_fitting_jobs_go_to_an_approver(workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    twin = sandbox.state.create_job(office_body(count=2)).id
    request_id = await lost_answer(workflow, sandbox, office_body(count=2))
    row = store.get(request_id)
    assert row is not None and row.job_id is None
    items = Candidates.of(row).items
    assert {c.kind for c in items} == {"job"} and twin in {c.id for c in items} and len(items) == 2
    ours = next(c.id for c in items if c.id != twin)
    assert (await workflow.choose_candidate(request_id, APPROVER, ours, shown(store, request_id))).ok
    linked = store.get(request_id)
    assert linked is not None and linked.job_id == ours and linked.state == State.SUBMITTED


@pytest.mark.slow
async def test_a_late_create_answer_is_linked_and_stops_a_queued_resend(
        store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    short = Policy(approvers=frozenset({APPROVER}), submit_lease=timedelta(seconds=0.3),
                   first_poll_delay=timedelta(seconds=0.05))
    slow_worker = Workflow(store, CloudAdapter(cloud), NoGroups(), short, worker_id="slow")
    other_worker = Workflow(store, CloudAdapter(cloud), NoGroups(), short, worker_id="other")
    row = await slow_worker.submit(parse_spec(office_body(count=1)), REQUESTER)
    sandbox.faults.configure(FaultSettings(slow_seconds=2.0))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="slow"))
    sending = asyncio.create_task(slow_worker.submit_due())
    # The lease runs out while the create is still on its way; another worker takes over, finds nothing yet.
    for _ in range(100):
        await asyncio.sleep(0.05)
        if await other_worker.recover_stale():
            break
    middle = store.get(row.id)
    assert middle is not None and middle.state == State.NEEDS_ATTENTION
    [result] = await sending
    done = store.get(row.id)
    assert done is not None and done.state == State.SUBMITTED and done.job_id is not None and result.created
    assert any(e.action == "late_create_answer_linked" for e in store.audit_log(row.id))
    assert len(sandbox.calls("CreateAppServers")) == 1


async def test_an_order_waits_for_payment_in_a_state_of_its_own_and_is_paid_once(
        workflow: Workflow, store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    tracker = Tracker(store, cloud, workflow, TrackerConfig(interval=timedelta(seconds=0.1),
                                                            first_delay=timedelta(seconds=0.05)))
    row = await workflow.submit(parse_spec(prepaid_body(count=2, months=2)), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    current = await cycle_until(tracker, store, row.id, lambda r: r.state == State.AWAITING_PAYMENT)
    assert current.order_id
    order = sandbox.state.orders[current.order_id]
    progress = json.loads(current.progress_json or "{}")
    assert Decimal(progress["order_amount"]) == order.amount and progress["order_currency"] == "CNY"
    assert progress["payment_deadline"]
    assert Event.PAYMENT_DUE.value in [n.event for n in NewsStore(store.engine).pending(row.id)]
    refused = await workflow.pay_order(row.id, REQUESTER)
    assert not refused.ok and "pay" in refused.sentence and "decide" not in refused.sentence
    clicks = await asyncio.gather(*(workflow.pay_order(row.id, APPROVER) for _ in range(4)))
    assert sum(c.ok for c in clicks) == 1 and len(sandbox.calls("PayOrders")) == 1
    paid = store.get(row.id)
    assert paid is not None and paid.state == State.PROVISIONING and paid.payment_by == APPROVER


async def test_a_cancelled_order_ends_the_request_with_a_sentence(workflow: Workflow, store: RequestStore,
                                                                 cloud: Cloud, sandbox: Sandbox) -> None:
    tracker = Tracker(store, cloud, workflow, TrackerConfig(interval=timedelta(seconds=0.1),
                                                            first_delay=timedelta(seconds=0.05)))
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    waiting = await cycle_until(tracker, store, row.id, lambda r: r.state == State.AWAITING_PAYMENT)
    sandbox.state.orders[waiting.order_id or ""].cancelled_at = time.time()  # cancelled in the Billing Center
    current = await cycle_until(tracker, store, row.id, lambda r: r.state == State.FAILED)
    assert current.outcome_sentence and "cancelled" in current.outcome_sentence


@pytest.mark.slow
async def test_a_payment_with_no_answer_is_not_repeated_until_the_order_shows_unpaid(
        store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    policy = Policy(approvers=frozenset({APPROVER, "U0SECOND"}), first_poll_delay=timedelta(seconds=0.05),
                    payment_settles=timedelta(seconds=0.3))
    workflow = Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id="w1")
    tracker = Tracker(store, cloud, workflow, TrackerConfig(interval=timedelta(seconds=0.1),
                                                            first_delay=timedelta(seconds=0.05)))
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    await cycle_until(tracker, store, row.id, lambda r: r.state == State.AWAITING_PAYMENT)
    sandbox.faults.add(ScriptedFault(operation="PayOrders", kind="503"))  # refused, but a 5xx: unknown to us
    unknown = await workflow.pay_order(row.id, APPROVER)
    assert unknown.outcome is Outcome.PAYMENT_UNKNOWN and "does not pay again" in unknown.sentence
    early = await workflow.pay_order(row.id, "U0SECOND")
    assert early.outcome is Outcome.ALREADY_DECIDED  # too soon to believe "unpaid"
    await asyncio.sleep(0.4)
    paid = await workflow.pay_order(row.id, "U0SECOND")
    assert paid.ok and paid.request is not None and paid.request.payment_by == "U0SECOND"
    assert [c["status"] for c in sandbox.calls("PayOrders")] == [503, 204]
    assert not (await workflow.pay_order(row.id, APPROVER)).ok  # paid: never again
    assert len(sandbox.calls("PayOrders")) == 2


async def test_a_crash_mid_create_links_our_order_and_never_another_services(
        store: RequestStore, cloud: Cloud, sandbox: Sandbox) -> None:
    """A worker claims the request, its create reaches the cloud, and it dies before recording the answer;
    in the same second someone orders another service. The next worker links our order, not theirs."""
    short = Policy(approvers=frozenset({APPROVER}), submit_lease=timedelta(seconds=0.2),
                   first_poll_delay=timedelta(seconds=0.05))
    dead = Workflow(store, CloudAdapter(cloud), NoGroups(), short, worker_id="dead")
    survivor = Workflow(store, CloudAdapter(cloud), NoGroups(), short, worker_id="survivor")
    row = await dead.submit(parse_spec(prepaid_body(count=2)), REQUESTER)
    await dead.approve(row.id, APPROVER)
    [claimed] = store.claim_for_submit("dead", short.submit_lease)
    ours = sandbox.state.create_order(json.loads(claimed.spec_json))  # what the dead worker's create made
    theirs = foreign(sandbox, "hws.service.type.ec2", {"subscription_num": 2})
    await asyncio.sleep(0.3)  # the dead worker's lease runs out
    [recovered] = await survivor.recover_stale()
    assert recovered.state == State.SUBMITTED and recovered.order_id == ours.id and recovered.lookup_found
    assert theirs not in {recovered.order_id, *(c.id for c in Candidates.of(recovered).items)}
    assert sandbox.calls("CreateAppServers") == [] and sandbox.calls("PayOrders") == []


async def test_another_unanswered_create_of_ours_makes_a_fit_uncertain(workflow: Workflow, store: RequestStore,
                                                                       sandbox: Sandbox) -> None:
    """Two of our creates for the same group and count go unanswered at once; only one reached the cloud.
    The one job fits both, so neither is linked by the bot: an approver says whose it is."""
    first = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    second = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
    results = await workflow.submit_due()
    assert {r.request.id for r in results} == {first.id, second.id} and len(sandbox.state.jobs) == 1
    [job_id] = sandbox.state.jobs
    rows = [store.get(first.id), store.get(second.id)]
    assert all(r is not None and r.state == State.NEEDS_ATTENTION and r.job_id is None for r in rows)
    assert all(r is not None and [c.id for c in Candidates.of(r).items] == [job_id] for r in rows)
    assert (await workflow.choose_candidate(first.id, APPROVER, job_id, shown(store, first.id))).ok
    refused = await workflow.choose_candidate(second.id, APPROVER, job_id, shown(store, second.id))
    assert refused.outcome is Outcome.LINK_REFUSED and f"{job_id} is already linked to {first.id}" in refused.sentence
    flagged = store.get(second.id)
    assert flagged is not None and flagged.state == State.NEEDS_ATTENTION and flagged.job_id is None
    assert f"already linked to {first.id}" in (Candidates.of(flagged).link_refused or "")


async def test_choices_at_once_after_an_unknown_create_count_once(workflow: Workflow, store: RequestStore,
                                                                  sandbox: Sandbox) -> None:
    """Double clicks and two approvers at once: "None of these" rules out once; Send again, once the window has
    closed, queues one create however many clicks reach the replicas together."""
    foreign(sandbox, "hws.service.type.vdi", prepaid_body(count=5, months=2))  # shown, does not fit
    row = await workflow.submit(parse_spec(prepaid_body(count=1)), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
    await workflow.submit_due()
    key = shown(store, row.id)
    ruled = await asyncio.gather(*(workflow.choose_candidate(row.id, APPROVER, None, key) for _ in range(4)))
    assert sum(d.ok for d in ruled) == 1
    assert len([e for e in store.audit_log(row.id) if e.action == "rule_out_candidates" and e.allowed]) == 1
    early = await workflow.retry_after_attention(row.id, APPROVER)
    assert early.outcome is Outcome.TOO_EARLY and "Nothing was sent" in early.sentence
    window_closed(store, row.id)
    resent = await asyncio.gather(*(workflow.retry_after_attention(row.id, APPROVER) for _ in range(4)))
    assert sum(d.ok for d in resent) == 1
    assert len(await workflow.submit_due()) == 1 and len(sandbox.calls("CreateAppServers")) == 2


async def test_a_look_that_finds_nothing_before_its_window_closes_says_so(workflow: Workflow, store: RequestStore,
                                                                          sandbox: Sandbox) -> None:
    row = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
    await workflow.submit_due()
    [look] = [e for e in store.audit_log(row.id) if e.action == "lookup"]
    assert "so far" in (look.detail or "") and "may still show up until" in (look.detail or "")
    assert "nothing created between" in (look.detail or "")
    current = store.get(row.id)
    assert current is not None and current.lookup_found is False
    resend_from = Candidates.of(current).resend_from
    assert resend_from is not None and resend_from > look.at
