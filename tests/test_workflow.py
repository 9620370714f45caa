"""The request lifecycle on SQLite and PostgreSQL, with the sandbox cloud over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from bot.cloud.client import Cloud
from bot.lifecycle import FINAL_STATES, TRANSITIONS, State, TransitionRefused, can_move
from bot.reconcile import LOOKUP_SKEW
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.spec import parse_spec
from bot.store.models import utcnow
from bot.store.repository import NewRequest, OverDailyCap, RequestStore, new_request_id, server_ids
from bot.workflow import CloudAdapter, DirectoryUnavailable, Outcome, Policy, Workflow
from tests.specs import office_body, prepaid_body

APPROVER = "U0APPROVER"
OTHER_APPROVER = "U0SECOND"
GROUP_MEMBER = "U0INGROUP"
REQUESTER = "U0ASKER"


class StaticDirectory:
    """User-group members as the Slack side would resolve them."""

    def __init__(self) -> None:
        self.lookups = 0

    async def group_members(self, group_id: str) -> set[str]:
        self.lookups += 1
        return {GROUP_MEMBER} if group_id == "S0MANAGERS" else set()


@pytest.fixture
def store(engine: Engine) -> RequestStore:
    return RequestStore(engine)


@pytest.fixture
def workflow(store: RequestStore, cloud: Cloud) -> Workflow:
    policy = Policy(approvers=frozenset({APPROVER, OTHER_APPROVER, "S0MANAGERS"}),
                    submit_lease=timedelta(seconds=60), first_poll_delay=timedelta(seconds=1))
    return Workflow(store, CloudAdapter(cloud), StaticDirectory(), policy, worker_id="test-worker")


def test_the_daily_cap_holds_when_one_persons_requests_are_stored_at_once(store: RequestStore) -> None:
    def attempt(_: int) -> bool:
        try:
            store.create(NewRequest(REQUESTER, "{}", "h" * 64, "postPaid", 2, "sg"), State.APPROVED, REQUESTER,
                         daily_cap=5)
        except OverDailyCap as over:
            assert over.already == 4
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(attempt, range(8)))
    assert stored.count(True) == 2
    assert store.servers_asked_since(REQUESTER, utcnow() - timedelta(days=1)) == 4
    other = store.create(NewRequest("U0OTHER", "{}", "h" * 64, "postPaid", 5, "sg"), State.APPROVED, "U0OTHER",
                         daily_cap=5)  # another person's day is their own
    assert other.subscription_num == 5


# The state machine -------------------------------------------------------------------------------


@pytest.mark.parametrize("old", list(State))
@pytest.mark.parametrize("new", list(State))
def test_every_transition_is_allowed_or_refused_as_the_table_says(store: RequestStore, old: State, new: State) -> None:
    row = store.create(NewRequest(REQUESTER, "{}", "h" * 64, "postPaid", 1, "sg"), old, REQUESTER)
    if can_move(old, new):
        result = store.transition(row.id, old, new, actor="t", action="move")
        assert result is not None and result.won and result.request.state == new
        assert result.request.version == row.version + 1
        assert store.audit_log(row.id)[-1].old_state == old and store.audit_log(row.id)[-1].new_state == new
    else:
        with pytest.raises(TransitionRefused):
            store.transition(row.id, old, new, actor="t", action="move")
        assert store.get(row.id).state == old  # type: ignore[union-attr]


def test_final_states_have_no_way_out() -> None:
    assert {State.SUCCEEDED, State.PARTLY_DONE, State.FAILED, State.REJECTED, State.EXPIRED, State.CANCELLED,
            State.SUBMIT_FAILED} == FINAL_STATES
    assert all(TRANSITIONS[s] == frozenset() for s in FINAL_STATES)


def test_a_stale_expected_state_loses(store: RequestStore) -> None:
    row = store.create(NewRequest(REQUESTER, "{}", "h" * 64, "prePaid", 1, "sg"), State.PENDING_APPROVAL, REQUESTER)
    assert store.transition(row.id, State.PENDING_APPROVAL, State.REJECTED, actor="a", action="reject").won  # type: ignore[union-attr]
    lost = store.transition(row.id, State.PENDING_APPROVAL, State.APPROVED, actor="b", action="approve")
    assert lost is not None and not lost.won and lost.request.state == State.REJECTED
    assert store.transition("AS-NOPE", State.PENDING_APPROVAL, State.APPROVED, actor="b", action="x") is None


# Submitting and deciding -------------------------------------------------------------------------


async def test_pay_per_use_is_queued_at_once_and_ordered_once(workflow: Workflow, store: RequestStore,
                                                              sandbox: Sandbox) -> None:
    row = await workflow.submit(parse_spec(office_body(count=2)), REQUESTER, channel_id="C1", reason="new hires")
    assert row.state == State.APPROVED and row.expires_at is None
    results = await workflow.submit_due()
    assert [r.created for r in results] == [True]
    done = store.get(row.id)
    assert done is not None and done.state == State.SUBMITTED and done.job_id and done.next_poll_at
    assert await workflow.submit_due() == []
    assert len(sandbox.calls("CreateAppServers")) == 1
    actions = [e.action for e in store.audit_log(row.id)]
    assert actions == ["created", "auto_approved", "claim_submit", "submitted"]


async def test_prepaid_waits_for_an_approver_then_sends_exactly_the_approved_body(
    workflow: Workflow, store: RequestStore, sandbox: Sandbox
) -> None:
    spec = parse_spec(prepaid_body(count=1, months=3))
    row = await workflow.submit(spec, REQUESTER)
    assert row.state == State.PENDING_APPROVAL and row.expires_at is not None
    assert await workflow.submit_due() == []  # nothing leaves before a decision
    decision = await workflow.approve(row.id, APPROVER)
    assert decision.ok and decision.request and decision.request.decided_by == APPROVER
    await workflow.submit_due()
    sent = sandbox.calls("CreateAppServers")
    assert len(sent) == 1 and sent[0]["body"] == spec.to_api_body()
    approve_event = next(e for e in store.audit_log(row.id) if e.action == "approve")
    assert approve_event.spec_hash == spec.spec_hash() and approve_event.actor == APPROVER
    assert store.get(row.id).order_id  # type: ignore[union-attr]


async def test_postpaid_approval_by_policy(store: RequestStore, cloud: Cloud) -> None:
    workflow = Workflow(store, CloudAdapter(cloud), StaticDirectory(),
                        Policy(approvers=frozenset({APPROVER}), postpaid_requires_approval=True))
    row = await workflow.submit(parse_spec(office_body()), REQUESTER)
    assert row.state == State.PENDING_APPROVAL


async def test_self_approval_and_non_approvers_are_refused_and_audited(workflow: Workflow, store: RequestStore) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), APPROVER)  # an approver asking for themselves
    own = await workflow.approve(row.id, APPROVER)
    assert own.outcome is Outcome.SELF_APPROVAL
    stranger = await workflow.approve(row.id, "U0STRANGER")
    assert stranger.outcome is Outcome.NOT_APPROVER
    stranger_reject = await workflow.reject(row.id, "U0STRANGER", "no")
    assert stranger_reject.outcome is Outcome.NOT_APPROVER
    assert store.get(row.id).state == State.PENDING_APPROVAL  # type: ignore[union-attr]
    refused = [(e.actor, e.action, e.allowed) for e in store.audit_log(row.id) if not e.allowed]
    assert refused == [(APPROVER, "approve", False), ("U0STRANGER", "approve", False), ("U0STRANGER", "reject", False)]


async def test_members_of_an_approver_user_group_may_decide(workflow: Workflow) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    assert (await workflow.approve(row.id, GROUP_MEMBER)).ok


async def test_reject_needs_a_reason_and_the_second_decider_learns_who_won(workflow: Workflow,
                                                                           store: RequestStore) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    assert (await workflow.reject(row.id, APPROVER, "  ")).outcome is Outcome.REASON_REQUIRED
    rejected = await workflow.reject(row.id, APPROVER, "Budget is frozen until Q3")
    assert rejected.ok and rejected.request and rejected.request.decision_reason == "Budget is frozen until Q3"
    late = await workflow.approve(row.id, OTHER_APPROVER)
    assert late.outcome is Outcome.ALREADY_DECIDED and f"<@{APPROVER}> already rejected" in late.sentence
    assert store.audit_log(row.id)[-1].allowed is False


async def test_double_click_decides_once(workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    results = await asyncio.gather(*[workflow.approve(row.id, APPROVER) for _ in range(10)],
                                   *[workflow.approve(row.id, OTHER_APPROVER) for _ in range(10)])
    assert sum(r.ok for r in results) == 1
    winner = next(r for r in results if r.ok).request
    assert winner is not None
    for loser in (r for r in results if not r.ok):
        assert loser.outcome is Outcome.ALREADY_DECIDED and f"<@{winner.decided_by}>" in loser.sentence
    await asyncio.gather(workflow.submit_due(), workflow.submit_due(), workflow.submit_due())
    assert len(sandbox.calls("CreateAppServers")) == 1


async def test_expiry_and_decisions_after_it(workflow: Workflow, store: RequestStore) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    other = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    past = utcnow() - timedelta(minutes=1)
    store.update_fields(row.id, actor="test", action="backdate", expires_at=past)
    store.update_fields(other.id, actor="test", action="backdate", expires_at=past)
    late = await workflow.approve(row.id, APPROVER)  # the click arrives before the sweeper
    assert late.outcome is Outcome.EXPIRED
    assert store.get(row.id).state == State.EXPIRED  # type: ignore[union-attr]
    swept = await workflow.expire_due()
    assert [r.id for r in swept] == [other.id]
    after = await workflow.approve(other.id, APPROVER)
    assert after.outcome is Outcome.EXPIRED
    assert any(not e.allowed and e.action == "approve" for e in store.audit_log(other.id))


async def test_cancel_only_by_the_requester_and_only_before_submission(workflow: Workflow,
                                                                       store: RequestStore) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    assert (await workflow.cancel(row.id, APPROVER)).outcome is Outcome.NOT_REQUESTER
    assert (await workflow.cancel(row.id, REQUESTER)).ok
    after = await workflow.approve(row.id, APPROVER)
    assert after.outcome is Outcome.WRONG_STATE and "cancelled" in after.sentence
    queued = await workflow.submit(parse_spec(office_body()), REQUESTER)
    await workflow.submit_due()
    too_late = await workflow.cancel(queued.id, REQUESTER)
    assert too_late.outcome is Outcome.WRONG_STATE and "submitted" in too_late.sentence


# Sending to the cloud ----------------------------------------------------------------------------


async def test_a_4xx_ends_in_submit_failed_with_a_sentence(workflow: Workflow, store: RequestStore,
                                                           sandbox: Sandbox) -> None:
    sandbox.config.instance_quota = 1
    try:
        row = await workflow.submit(parse_spec(office_body(count=2)), REQUESTER)
        await workflow.submit_due()
    finally:
        sandbox.config.instance_quota = 200
    failed = store.get(row.id)
    assert failed is not None and failed.state == State.SUBMIT_FAILED
    assert failed.outcome_sentence and "quota" in failed.outcome_sentence.lower()
    assert "request id" in failed.outcome_sentence
    assert len(sandbox.calls("CreateAppServers")) == 1


async def test_a_5xx_after_creating_is_linked_to_its_servers_and_followed(
    workflow: Workflow, store: RequestStore, sandbox: Sandbox
) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    row = await workflow.submit(parse_spec(office_body(count=3)), REQUESTER)
    await workflow.submit_due()
    linked = store.get(row.id)
    assert linked is not None and linked.state == State.SUBMITTED and linked.next_poll_at  # followed from here
    assert linked.lookup_found is True and linked.job_id
    assert sorted(server_ids(linked)) == sorted(sandbox.state.servers)
    assert [e.action for e in store.audit_log(row.id)][-3:] == ["outcome_unknown", "lookup", "lookup_linked"]
    assert len(sandbox.calls("CreateAppServers")) == 1
    retry = await workflow.retry_after_attention(row.id, APPROVER)
    assert retry.outcome is Outcome.WRONG_STATE
    assert len(sandbox.calls("CreateAppServers")) == 1


async def test_a_5xx_before_creating_allows_one_audited_retry_by_an_approver(
    workflow: Workflow, store: RequestStore, sandbox: Sandbox
) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="503"))
    row = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    await workflow.submit_due()
    attention = store.get(row.id)
    assert attention is not None and attention.state == State.NEEDS_ATTENTION and attention.lookup_found is False
    assert await workflow.submit_due() == []  # never resent by itself
    assert (await workflow.retry_after_attention(row.id, REQUESTER)).outcome is Outcome.SELF_APPROVAL
    # Not while what the create made could still show up in the cloud (its lease and the clock skew after).
    assert (await workflow.retry_after_attention(row.id, APPROVER)).outcome is Outcome.TOO_EARLY
    started = attention.submit_started_at
    assert started is not None
    store.update_fields(row.id, actor="test", action="time_passes",
                        submit_started_at=started - timedelta(seconds=60) - 2 * LOOKUP_SKEW - timedelta(seconds=1))
    retry = await workflow.retry_after_attention(row.id, APPROVER)
    assert retry.ok
    await workflow.submit_due()
    assert store.get(row.id).state == State.SUBMITTED  # type: ignore[union-attr]
    assert [c["status"] for c in sandbox.calls("CreateAppServers")] == [503, 200]
    assert any(e.action == "retry_after_attention" and e.actor == APPROVER for e in store.audit_log(row.id))


async def test_throttled_create_goes_back_to_the_queue(workflow: Workflow, store: RequestStore,
                                                       sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="429", count=4))
    row = await workflow.submit(parse_spec(office_body()), REQUESTER)
    await workflow.submit_due()  # four 429s use up the client's attempts
    assert store.get(row.id).state == State.APPROVED  # type: ignore[union-attr]
    await workflow.submit_due()
    assert store.get(row.id).state == State.SUBMITTED  # type: ignore[union-attr]
    assert len(sandbox.state.jobs) == 1


async def test_a_tampered_spec_is_never_sent(workflow: Workflow, store: RequestStore, sandbox: Sandbox) -> None:
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    tampered = json.loads(row.spec_json)
    tampered["subscription_num"] = 50
    store.update_fields(row.id, actor="attacker", action="edit", spec_json=json.dumps(tampered))
    await workflow.submit_due()
    assert store.get(row.id).state == State.SUBMIT_FAILED  # type: ignore[union-attr]
    assert sandbox.calls("CreateAppServers") == []


async def test_a_stale_submission_is_recovered_into_needs_attention(workflow: Workflow, store: RequestStore,
                                                                   sandbox: Sandbox) -> None:
    row = await workflow.submit(parse_spec(office_body()), REQUESTER)
    claimed = store.claim_for_submit("dead-worker", timedelta(seconds=-1))
    assert [c.id for c in claimed] == [row.id]
    recovered = await workflow.recover_stale()
    assert [r.id for r in recovered] == [row.id]
    assert recovered[0].state == State.NEEDS_ATTENTION and recovered[0].lookup_found is False
    assert sandbox.calls("CreateAppServers") == []


async def test_an_unanswered_prepaid_create_is_linked_to_its_order(workflow: Workflow, store: RequestStore,
                                                                   sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    await workflow.approve(row.id, APPROVER)
    await workflow.submit_due()
    linked = store.get(row.id)
    assert linked is not None and linked.state == State.SUBMITTED
    assert linked.lookup_found is True and linked.order_id == next(iter(sandbox.state.orders))
    assert (await workflow.retry_after_attention(row.id, OTHER_APPROVER)).outcome is Outcome.WRONG_STATE


async def test_group_membership_is_cached_and_a_failing_directory_denies() -> None:
    from bot.workflow import CachedDirectory

    inner = StaticDirectory()
    cached = CachedDirectory(inner, ttl_seconds=60)
    assert await cached.group_members("S0MANAGERS") == {GROUP_MEMBER}
    assert await cached.group_members("S0MANAGERS") == {GROUP_MEMBER}
    assert inner.lookups == 1

    class Broken:
        async def group_members(self, group_id: str) -> set[str]:
            raise RuntimeError("usergroups.users.list failed")

    with pytest.raises(DirectoryUnavailable):
        await CachedDirectory(Broken()).group_members("S0MANAGERS")


async def test_an_expired_member_list_is_not_used_when_the_directory_fails(store: RequestStore, cloud: Cloud) -> None:
    from bot.workflow import CachedDirectory

    class FailsAfterFirst:
        calls = 0

        async def group_members(self, group_id: str) -> set[str]:
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("usergroups.users.list failed")
            return {GROUP_MEMBER}

    directory = CachedDirectory(FailsAfterFirst(), ttl_seconds=0)  # every lookup finds the cache expired
    workflow = Workflow(store, CloudAdapter(cloud), directory, Policy(approvers=frozenset({"S0MANAGERS"})))
    row = await workflow.submit(parse_spec(prepaid_body()), REQUESTER)
    assert await directory.group_members("S0MANAGERS") == {GROUP_MEMBER}  # read once, then expired
    decision = await workflow.approve(row.id, GROUP_MEMBER)
    assert decision.outcome is Outcome.CHECK_FAILED
    assert decision.sentence.startswith("I could not check that you are an approver")
    assert store.get(row.id).state == State.PENDING_APPROVAL  # type: ignore[union-attr]
    refused = [e for e in store.audit_log(row.id) if e.action == "approve"]
    assert len(refused) == 1 and refused[0].allowed is False and "check_failed" in (refused[0].detail or "")
    assert await workflow.is_approver(GROUP_MEMBER) is False  # what is shown fails closed too


def test_concurrent_claims_take_disjoint_requests(store: RequestStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = {store.create(NewRequest(REQUESTER, "{}", "h" * 64, "postPaid", 1, "sg"), State.APPROVED, REQUESTER).id
           for _ in range(20)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = list(pool.map(lambda n: store.claim_for_submit(f"w{n}", timedelta(seconds=30), 5), range(8)))
    claimed = [r.id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)) == 20 and set(claimed) == ids
    assert all(r.state == State.SUBMITTING and r.lease_owner and r.attempts == 1 for batch in batches for r in batch)


def test_request_ids_use_crockfords_alphabet_and_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"AS-[0-9A-HJKMNP-TV-Z]{8}", i) for i in ids)  # no I, L, O or U
    assert {c for i in ids for c in i[3:]} == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # every letter is used
