"""The fake Slack Web API and the sandbox cloud in a process of their own, so a benchmark's load
generator and the bot under test do not share their CPU time with them.

    python -m benchmarks.services   # prints one JSON line: {"slack": URL, "sandbox": URL}, then serves
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings
from tests.fake_slack import FakeSlack


def start() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start this module in a process of its own; returns the process and the two base URLs."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.services"], cwd=root, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    urls: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, urls


def sandbox_settings(urls: dict[str, str]) -> Settings:
    """The bot's settings for the sandbox these services run: its keys and project, every endpoint at it."""
    cfg = SandboxConfig()
    return Settings(huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,
                    huaweicloud_sdk_project_id=cfg.project_id, workspace_endpoint=urls["sandbox"],
                    bss_endpoint=urls["sandbox"], vpc_endpoint=urls["sandbox"],
                    huaweicloud_sdk_iam_endpoint=urls["sandbox"], _env_file=None)


@contextmanager
def running() -> Iterator[dict[str, str]]:
    """The services in a process of their own for the length of a benchmark; yields the two base URLs."""
    proc, urls = start()
    try:
        yield urls
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_routes(slack: FakeSlack, sandbox: Sandbox) -> None:
    """Routes for the freshness benchmark: work that ends at chosen times, and what was called when."""

    async def work(request: Request) -> JSONResponse:
        # {"kind": "job" | "order", "ends_in": [seconds, ...]} → [{"id", "end"}]: one-server jobs, or paid
        # yearly/monthly orders still processing, each ending that many seconds from now.
        body = await request.json()
        group = next(iter(sandbox.state.groups.values()))
        subnet = sandbox.state.subnets[group["subnet_id"]]
        spec: dict[str, Any] = {"server_group_id": group["id"], "subscription_num": 1, "product_id": group["product_id"],
                                "subnet_id": subnet["id"], "vpc_id": subnet["vpc_id"]}
        sandbox.config.instance_quota = 10**9
        sandbox.state.balance = Decimal(10) ** 15
        made = []
        for seconds in body["ends_in"]:
            if body["kind"] == "job":
                sandbox.config.job_seconds = float(seconds)
                job = sandbox.state.create_job(spec)
                made.append({"id": job.id, "end": job.end})
            else:
                order = sandbox.state.create_order({**spec, "create_server_extend_param": {
                    "charging_mode": "prePaid", "period_type": 2, "period_num": 1, "is_auto_pay": True}})
                assert order.paid_at is not None
                order.paid_at += float(seconds) - sandbox.config.order_seconds  # completed `seconds` from now
                made.append({"id": order.id, "end": order.paid_at + sandbox.config.order_seconds})
        return JSONResponse(made)

    async def polls(request: Request) -> JSONResponse:
        """Cloud calls per second, by operation: {operation: {second: count}}; with `?by=target`, per job or
        order instead: {operation: {id: count}} (the id is the last part of the call's path)."""
        by_target = request.query_params.get("by") == "target"
        counts: dict[str, dict[Any, int]] = {}
        for entry in sandbox.log:
            by_key = counts.setdefault(entry["operation"], {})
            key = entry["path"].rsplit("/", 1)[-1] if by_target else int(entry["time"])
            by_key[key] = by_key.get(key, 0) + 1
        return JSONResponse(counts)

    async def calls(request: Request) -> JSONResponse:
        def keys(args: dict[str, Any]) -> list[str]:  # the news markers a post carries (several in a digest)
            metadata = args.get("metadata")
            payload = metadata.get("event_payload") or {} if isinstance(metadata, dict) else {}
            return list(payload.get("keys") or ([payload["key"]] if "key" in payload else []))

        return JSONResponse([{"method": c["method"], "at": c["at"], "channel": c["args"].get("channel"),
                              "ts": c["args"].get("ts"), "thread_ts": c["args"].get("thread_ts"),
                              "keys": keys(c["args"])} for c in slack.calls])

    sandbox.app.router.routes.insert(0, Route("/_bench/work", work, methods=["POST"]))
    sandbox.app.router.routes.insert(0, Route("/_bench/polls", polls, methods=["GET"]))
    slack.app.router.routes.insert(0, Route("/_bench/calls", calls, methods=["GET"]))


def main() -> None:
    slack = FakeSlack()
    sandbox = Sandbox(SandboxConfig(job_seconds=2.0, order_seconds=1.0, instance_quota=1_000_000))
    bench_routes(slack, sandbox)
    with BackgroundServer(slack.app) as slack_server, BackgroundServer(sandbox.app) as sandbox_server:
        print(json.dumps({"slack": slack_server.url, "sandbox": sandbox_server.url}), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
