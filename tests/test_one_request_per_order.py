"""An order or a job belongs to one request at most, on SQLite and PostgreSQL: the store refuses a second
link (a unique index, so two replicas cannot both make it), and the migration that adds the index says
which requests share an id rather than fail in SQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from bot.cloud.client import Cloud
from bot.lifecycle import State
from bot.reconcile import Candidates
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.spec import CreateAppServersRequest, CreateAppServersResponse, parse_spec
from bot.store.db import make_engine
from bot.store.repository import AlreadyLinked, NewRequest, RequestStore
from bot.store.schema import alembic_config
from bot.workflow import CloudAdapter, Outcome, Policy, Workflow
from tests.specs import office_body
from tests.workflows import NoGroups

APPROVER, OTHER_APPROVER, REQUESTER = "U0APPROVER", "U0APPROVER2", "U0ASKER"


def new_request(store: RequestStore) -> str:
    spec = parse_spec(office_body(count=1))
    row = store.create(NewRequest(requester_id=REQUESTER, spec_json=spec.canonical_json(), spec_hash=spec.spec_hash(),
                                  charging_mode=spec.charging_mode, subscription_num=1,
                                  server_group_id=spec.server_group_id), State.APPROVED, REQUESTER)
    return row.id


def test_a_second_link_of_an_order_or_a_job_is_refused(engine: Engine) -> None:
    store = RequestStore(engine)
    first, second, third = new_request(store), new_request(store), new_request(store)  # unlinked: NULLs side by side
    store.update_fields(first, actor="bot", action="link", order_id="CS2612051312ABCDE", job_id="job-1")
    with pytest.raises(AlreadyLinked) as order_held:
        store.update_fields(second, actor="bot", action="link", order_id="CS2612051312ABCDE")
    assert order_held.value.owners == {"CS2612051312ABCDE": first}
    with pytest.raises(AlreadyLinked) as job_held:
        store.transition(second, State.APPROVED, State.SUBMITTING, actor="bot", action="link",
                         changes={"job_id": "job-1"})
    assert job_held.value.owners == {"job-1": first}
    with pytest.raises(AlreadyLinked):
        store.update_where(third, lambda row: {"order_id": "CS2612051312ABCDE"}, actor="bot", action="link")
    refused = [store.get(second), store.get(third)]
    assert all(r is not None and r.order_id is None and r.job_id is None and r.state == State.APPROVED
               for r in refused)
    assert [e.action for e in store.audit_log(second)] == ["created"]  # nothing written with the refused link


async def test_two_approvers_linking_one_job_to_two_requests_at_once_link_it_once(engine: Engine, cloud: Cloud,
                                                                                 sandbox: Sandbox) -> None:
    """Two of our creates go unanswered and one job fits both; each approver says "ours" on another request at
    the same moment. The job is linked to one; the other is refused and flagged on its card."""
    store = RequestStore(engine)
    policy = Policy(approvers=frozenset({APPROVER, OTHER_APPROVER}), submit_lease=timedelta(seconds=60))
    workflow = Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id="w1")
    first = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    second = await workflow.submit(parse_spec(office_body(count=1)), REQUESTER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
    await workflow.submit_due()
    [job_id] = sandbox.state.jobs
    keys = {}
    for request_id in (first.id, second.id):
        row = store.get(request_id)
        assert row is not None and [c.id for c in Candidates.of(row).items] == [job_id]
        keys[request_id] = Candidates.of(row).key()
    choices = await asyncio.gather(workflow.choose_candidate(first.id, APPROVER, job_id, keys[first.id]),
                                   workflow.choose_candidate(second.id, OTHER_APPROVER, job_id, keys[second.id]))
    assert sorted(c.ok for c in choices) == [False, True]
    refused = next(c for c in choices if not c.ok)
    assert refused.outcome is Outcome.LINK_REFUSED and "already linked to" in refused.sentence
    rows = [store.get(first.id), store.get(second.id)]
    assert [r.job_id for r in rows if r is not None].count(job_id) == 1
    loser = next(r for r in rows if r is not None and r.job_id is None)
    assert loser.state == State.NEEDS_ATTENTION and "already linked to" in (Candidates.of(loser).link_refused or "")


def test_the_migration_names_requests_that_share_an_order(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/shared.db")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")
    with engine.begin() as connection:
        for request_id in ("AS-00000001", "AS-00000002"):
            connection.execute(text(
                "INSERT INTO requests (id, requester_id, spec_json, spec_hash, charging_mode, subscription_num, "
                "server_group_id, state, order_id, server_ids_json, created_at, updated_at, version, attempts, "
                "reminders_sent, expiry_warned) VALUES (:id, 'U1', '{}', 'h', 'prePaid', 1, 'g', 'succeeded', "
                "'CS2612050000SHARE', '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1, 0, 0, 0)"), {"id": request_id})
    with pytest.raises(RuntimeError, match="CS2612050000SHARE"), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()


class AnswerHeldBack(CloudAdapter):
    """The cloud as it is, but the answer to a create reaches the bot only when the test lets it: the network
    between them is slow (the create is carried out at once)."""

    def __init__(self, cloud: Cloud) -> None:
        super().__init__(cloud)
        self.carried_out = asyncio.Event()
        self.let_through = asyncio.Event()

    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse:
        response = await super().create_app_servers(request)
        self.carried_out.set()
        await self.let_through.wait()
        return response


async def test_a_create_answered_with_a_job_another_request_holds_is_flagged_and_never_sent_again(
        engine: Engine, cloud: Cloud, sandbox: Sandbox) -> None:
    """Request A's create is carried out but its answer is slow; B's create fails with a 500, its look lists A's
    job (A is still being sent, so nothing is certain) and an approver links it to B. When A's answer arrives,
    the job is not linked twice: A is flagged for an approver, and Send again never sends it."""
    store = RequestStore(engine)
    policy = Policy(approvers=frozenset({APPROVER}), submit_lease=timedelta(seconds=60))
    held_back = AnswerHeldBack(cloud)
    slow = Workflow(store, held_back, NoGroups(), policy, worker_id="slow")
    quick = Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id="quick")
    first = await slow.submit(parse_spec(office_body(count=1)), REQUESTER)
    sending = asyncio.create_task(slow.submit_due(limit=1))
    await asyncio.wait_for(held_back.carried_out.wait(), 20)
    [job_id] = sandbox.state.jobs
    second = await quick.submit(parse_spec(office_body(count=1)), REQUESTER)
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500"))
    await quick.submit_due()
    looked = store.get(second.id)
    assert looked is not None and [c.id for c in Candidates.of(looked).items] == [job_id]
    assert (await quick.choose_candidate(second.id, APPROVER, job_id, Candidates.of(looked).key())).ok

    held_back.let_through.set()
    await sending
    flagged = store.get(first.id)
    assert flagged is not None and flagged.state == State.NEEDS_ATTENTION and flagged.job_id is None
    candidates = Candidates.of(flagged)
    assert candidates.create_answered and f"{job_id} is already linked to {second.id}" in (candidates.link_refused or "")
    assert any(e.action == "link_refused" for e in store.audit_log(first.id))
    # However long anyone waits, Send again refuses: the cloud did answer this create.
    row = store.get(first.id)
    assert row is not None and row.submit_started_at is not None
    store.update_fields(first.id, actor="test", action="time_passes",
                        submit_started_at=row.submit_started_at - timedelta(hours=1))
    refused = await quick.retry_after_attention(first.id, APPROVER)
    assert refused.outcome is Outcome.SERVERS_FOUND and "never be sent again" in refused.sentence
    assert await quick.submit_due() == [] and len(sandbox.calls("CreateAppServers")) == 2
    assert [r.id for r in (store.get(first.id), store.get(second.id)) if r and r.job_id == job_id] == [second.id]
