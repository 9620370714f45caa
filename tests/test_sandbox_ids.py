"""The sandbox never gives a job, order or server id twice: not after a reset, not after a restart. A bot whose
database outlives the sandbox would otherwise see an old request's id again and take it for that request's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.cloud.client import build_cloud
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import free_port
from bot.settings import Settings
from bot.spec import parse_spec
from tests.processes import wait_for_sandbox
from tests.specs import office_body, prepaid_body

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def sandbox_command(cwd: Path) -> Iterator[str]:
    """`appserver-bot sandbox` as its own process; its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port", str(port)], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_sandbox(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


async def ids_of_one_run(url: str) -> set[str]:
    """A job and an order (paid at once, so its servers exist) made the same way in every run; their ids."""
    cfg = SandboxConfig()
    settings = Settings(huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,  # type: ignore[arg-type]
                        workspace_endpoint=url, huaweicloud_sdk_iam_endpoint=url, bss_endpoint=url,
                        vpc_endpoint=url, _env_file=None)  # type: ignore[call-arg]
    cloud = build_cloud(settings)
    try:
        job = await cloud.workspace.create_app_servers(parse_spec(office_body(count=2)))
        order = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(count=2, auto_pay=True)))
        servers = await cloud.workspace.list_servers()
    finally:
        await cloud.aclose()
    assert job.job_id and order.order_id
    return {job.job_id, order.order_id, *(s.id for s in servers)}


@pytest.mark.slow
async def test_a_restarted_sandbox_gives_no_id_again(tmp_path: Path) -> None:
    with sandbox_command(tmp_path) as url:
        first = await ids_of_one_run(url)
    with sandbox_command(tmp_path) as url:
        second = await ids_of_one_run(url)
    assert len(first) == len(second) == 6
    assert first.isdisjoint(second)


def test_a_reset_sandbox_gives_no_id_again() -> None:
    sandbox = Sandbox(SandboxConfig())
    spec = parse_spec(prepaid_body(count=3)).to_api_body()
    seen: set[str] = set()
    for _ in range(3):
        job = sandbox.state.create_job(parse_spec(office_body(count=3)).to_api_body())
        order = sandbox.state.create_order(spec)
        ids = {job.id, *job.server_ids, *job.sub_job_ids, order.id}
        assert len(ids) == 8 and ids.isdisjoint(seen)
        seen |= ids
        sandbox.reset()
