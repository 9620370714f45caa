"""Several OS processes on one database: exactly one decision and one create; crashes lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cloud.client import Cloud
from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.repository import RequestStore, server_ids
from bot.store.schema import migrate
from bot.workflow import CloudAdapter, Outcome, Policy, Workflow
from tests.specs import office_body, prepaid_body
from tests.workflows import NoGroups

pytestmark = pytest.mark.slow  # OS processes and long fault runs: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("process_worker.py")


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


async def test_two_processes_and_100_concurrent_approvals_decide_once_and_order_once(
    postgres_url: str, sandbox: Sandbox, sandbox_url: str, cloud: Cloud
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    store = RequestStore(engine)
    workflow = Workflow(store, CloudAdapter(cloud), NoGroups(), Policy())
    row = await workflow.submit(parse_spec(prepaid_body()), "U0ASKER")
    start_at = time.time() + 2.0  # both processes are importing by then; they start together
    procs = [_spawn("approve", postgres_url, sandbox_url, str(start_at), str(first), "50", row.id) for first in (0, 50)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    winners = [w for o in outputs for w in o["won"]]
    assert len(winners) == 1
    losers = [loss for o in outputs for loss in o["lost"]]
    assert len(losers) == 99
    assert all(outcome == Outcome.ALREADY_DECIDED.value and f"<@{winners[0]}>" in sentence
               for outcome, sentence in losers)
    assert sum(o["created"] for o in outputs) == 1
    assert len(sandbox.calls("CreateAppServers")) == 1
    final = store.get(row.id)
    assert final is not None and final.state == State.SUBMITTED and final.decided_by == winners[0]
    refused = [e for e in store.audit_log(row.id) if e.action == "approve" and not e.allowed]
    assert len(refused) == 99
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sigkill_between_the_create_call_and_the_record(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sandbox: Sandbox, sandbox_url: str, cloud: Cloud
) -> None:
    url = f"sqlite:///{tmp_path}/bot.db" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    engine = make_engine(url)
    migrate(engine)
    store = RequestStore(engine)
    policy = Policy(submit_lease=timedelta(seconds=1))
    row = await Workflow(store, CloudAdapter(cloud), NoGroups(), policy).submit(parse_spec(office_body(count=2)), "U0ASKER")
    # The cloud creates the servers, then takes its time to answer: the process dies while it waits.
    sandbox.faults.configure(FaultSettings(hang_seconds=8))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="hang"))
    proc = _spawn("submit", url, sandbox_url)
    deadline = time.monotonic() + 60
    while not sandbox.calls("CreateAppServers"):
        assert time.monotonic() < deadline, "the worker never called the cloud"
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert store.get(row.id).state == State.SUBMITTING  # type: ignore[union-attr]

    time.sleep(1.1)  # the dead worker's lease runs out
    restarted = Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id="after-restart")
    recovered = await restarted.recover_stale()
    assert [r.id for r in recovered] == [row.id]
    after = store.get(row.id)
    assert after is not None and after.state == State.SUBMITTED  # certainly ours: followed from here
    assert after.lookup_found is True and after.job_id == next(iter(sandbox.state.jobs))
    assert sorted(server_ids(after)) == sorted(sandbox.state.servers)
    assert await restarted.submit_due() == []
    assert len(sandbox.calls("CreateAppServers")) == 1
    actions = [e.action for e in store.audit_log(row.id)]
    assert actions[-3:] == ["recovered_stale", "lookup", "lookup_linked"]
    engine.dispose()
