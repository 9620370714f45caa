"""A Workflow driven without Slack, as the store and cloud tests use it: nobody is in a user group, one
approver, and a create that the cloud carries out but answers with a 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.cloud.client import Cloud
from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.spec import parse_spec
from bot.store.repository import RequestStore
from bot.workflow import CloudAdapter, Policy, Workflow

APPROVER = "U0APPROVER"
REQUESTER = "U0ASKER"


class NoGroups:
    async def group_members(self, group_id: str) -> set[str]:
        return set()


def one_approver_workflow(store: RequestStore, cloud: Cloud) -> Workflow:
    """APPROVER decides, creates hold their lease for a minute, and the first look comes at once."""
    policy = Policy(approvers=frozenset({APPROVER}), submit_lease=timedelta(seconds=60),
                    first_poll_delay=timedelta(seconds=0.05))
    return Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id="w1")


async def lost_answer(workflow: Workflow, sandbox: Sandbox, body: dict[str, Any]) -> str:
    """Submit (and approve, when it waits for an approver) a request whose create is carried out but
    answered with a 500."""
    row = await workflow.submit(parse_spec(body), REQUESTER)
    if row.state == State.PENDING_APPROVAL:
        assert (await workflow.approve(row.id, APPROVER)).ok
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    [result] = await workflow.submit_due()
    assert result.request.state in (State.NEEDS_ATTENTION, State.SUBMITTED)  # SUBMITTED: linked with certainty
    return row.id
