"""A separate OS process running the workflow, for the multi-process and crash tests.

    python tests/process_worker.py approve  DB_URL SANDBOX_URL START_AT FIRST_ID COUNT REQUEST_ID
    python tests/process_worker.py submit   DB_URL SANDBOX_URL

Prints one JSON line with what happened.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta

from bot.cloud.client import build_cloud
from bot.sandbox import SandboxConfig
from bot.settings import Settings
from bot.store.db import make_engine
from bot.store.repository import RequestStore
from bot.workflow import CloudAdapter, Policy, Workflow
from tests.workflows import NoGroups

APPROVERS = frozenset(f"U0APPROVER{i:03d}" for i in range(200))


def _workflow(db_url: str, sandbox_url: str, worker: str) -> tuple[Workflow, object]:
    cfg = SandboxConfig()
    settings = Settings(
        huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,  # type: ignore[arg-type]
        huaweicloud_sdk_project_id=cfg.project_id, workspace_endpoint=sandbox_url, bss_endpoint=sandbox_url,
        vpc_endpoint=sandbox_url, huaweicloud_sdk_iam_endpoint=sandbox_url, cloud_retry_base_seconds=0.01,
        _env_file=None,  # type: ignore[call-arg]
    )
    cloud = build_cloud(settings)
    store = RequestStore(make_engine(db_url))
    policy = Policy(approvers=APPROVERS, submit_lease=timedelta(seconds=1))
    return Workflow(store, CloudAdapter(cloud), NoGroups(), policy, worker_id=worker), cloud


async def approve(db_url: str, sandbox_url: str, start_at: float, first: int, count: int, request_id: str) -> None:
    workflow, cloud = _workflow(db_url, sandbox_url, f"approver-{first}")
    await asyncio.sleep(max(start_at - time.time(), 0))
    decisions = await asyncio.gather(*(workflow.approve(request_id, f"U0APPROVER{i:03d}")
                                       for i in range(first, first + count)))
    submitted = await workflow.submit_due()
    print(json.dumps({
        "won": [d.request.decided_by for d in decisions if d.ok and d.request],
        "lost": [(d.outcome.value, d.sentence) for d in decisions if not d.ok],
        "created": sum(1 for s in submitted if s.created),
    }), flush=True)
    await cloud.aclose()  # type: ignore[attr-defined]


async def submit(db_url: str, sandbox_url: str) -> None:
    workflow, cloud = _workflow(db_url, sandbox_url, "doomed-worker")
    print(json.dumps({"started": True}), flush=True)
    results = await workflow.submit_due()
    print(json.dumps({"created": sum(1 for s in results if s.created)}), flush=True)
    await cloud.aclose()  # type: ignore[attr-defined]


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "approve":
        asyncio.run(approve(rest[0], rest[1], float(rest[2]), int(rest[3]), int(rest[4]), rest[5]))
    else:
        asyncio.run(submit(rest[0], rest[1]))
