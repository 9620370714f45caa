"""The sandbox as other tools use it (over HTTP, as a command), the endpoint table, token renewal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.cloud.client import build_cloud
from bot.cloud.credentials import IamPasswordCredentials
from bot.cloud.endpoints import resolve_endpoints, workspace_endpoint
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.faults import FaultSettings
from bot.sandbox.server import free_port
from bot.settings import Settings
from bot.spec import parse_spec
from tests.conftest import iam_settings
from tests.processes import wait_for_sandbox
from tests.specs import office_body

ROOT = Path(__file__).resolve().parent.parent


def test_endpoints_follow_the_sdk_region_table() -> None:
    assert workspace_endpoint("cn-north-4") == "https://appstream.cn-north-4.myhuaweicloud.com"
    assert workspace_endpoint("ap-southeast-1") == "https://workspace.ap-southeast-1.myhuaweicloud.com"
    defaults = resolve_endpoints("cn-east-3")
    assert defaults.iam == "https://iam.cn-east-3.myhuaweicloud.com"
    assert defaults.bss == "https://bss.myhuaweicloud.com"
    assert defaults.vpc == "https://vpc.cn-east-3.myhuaweicloud.com"
    assert resolve_endpoints("cn-east-3", workspace="http://127.0.0.1:9/", bss="http://b/").workspace == "http://127.0.0.1:9"


async def test_call_log_and_faults_are_reachable_over_http(sandbox: Sandbox, sandbox_url: str, settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        fault = {"operation": "ListVolumeType", "kind": "503"}
        assert (await control.post("/_sandbox/faults", json=fault)).status_code == 204
        cloud = build_cloud(settings)
        try:
            await cloud.workspace.list_volume_types()
        finally:
            await cloud.aclose()
        calls = (await control.get("/_sandbox/log", params={"operation": "ListVolumeType"})).json()["calls"]
        assert [c["status"] for c in calls] == [503, 200] and calls[0]["fault"] == "503"
        assert (await control.post("/_sandbox/jobs/fail-next", json={"count": 1})).status_code == 204
        assert sandbox.state.fail_next_jobs == 1
        assert (await control.post("/_sandbox/balance", json={"amount": 5})).status_code == 204
        assert sandbox.state.balance == 5
        assert (await control.post("/_sandbox/reset")).status_code == 204
        assert (await control.get("/_sandbox/log")).json()["calls"] == []


async def test_a_rate_of_random_faults_still_lets_reads_through(sandbox: Sandbox, settings: Settings) -> None:
    sandbox.faults.configure(FaultSettings(rate=0.3, slow_seconds=0.05, seed=7,
                                           operations=["ListAvailabilityZone"]))
    cloud = build_cloud(settings.model_copy(update={"cloud_retry_attempts": 10}))
    try:
        for _ in range(20):
            assert (await cloud.workspace.list_availability_zones()).availability_zones
    finally:
        await cloud.aclose()
    faults = {c["fault"] for c in sandbox.calls("ListAvailabilityZone")}
    assert {"429", "500", "503"} & faults and None in faults


async def test_unsigned_and_unknown_requests_are_refused(sandbox: Sandbox, sandbox_url: str) -> None:
    async with httpx.AsyncClient(base_url=sandbox_url) as plain:
        unsigned = await plain.get(f"/v1/{sandbox.config.project_id}/volume-type")
        assert unsigned.status_code == 401 and unsigned.json()["error_code"] == "APIGW.0301"
        unknown = await plain.get("/v9/nothing")
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "APIGW.0101"


async def test_a_stale_signature_date_is_apigw_0303(sandbox: Sandbox, sandbox_url: str) -> None:
    from bot.cloud.signer import AkSkAuth

    old = datetime.now(UTC) - timedelta(minutes=20)
    auth = AkSkAuth(sandbox.config.access_key, sandbox.config.secret_key, project_id=sandbox.config.project_id,
                    clock=lambda: old)
    async with httpx.AsyncClient(base_url=sandbox_url, auth=auth) as client:
        response = await client.get(f"/v1/{sandbox.config.project_id}/volume-type",
                                    headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and response.json()["error_code"] == "APIGW.0303"


async def test_iam_token_is_renewed_before_it_ends(sandbox: Sandbox, sandbox_url: str) -> None:
    settings = iam_settings(sandbox_url, sandbox)
    cloud = build_cloud(settings)
    assert isinstance(cloud.credentials, IamPasswordCredentials)
    provider = cloud.credentials.tokens
    now = [datetime.now(UTC)]
    provider._clock = lambda: now[0]
    try:
        await cloud.workspace.list_volume_types()
        now[0] += timedelta(hours=22)  # 2 h before the end: still fresh
        await cloud.workspace.list_volume_types()
        assert provider.fetch_count == 1
        now[0] += timedelta(hours=1, minutes=30)  # 30 min before the end: renewed before use
        await cloud.workspace.list_volume_types()
        assert provider.fetch_count == 2
        assert all(c["status"] == 200 for c in sandbox.calls("ListVolumeType"))
    finally:
        await cloud.aclose()




@pytest.mark.slow
async def test_the_sandbox_command_serves_signed_calls(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port", str(port), "--job-seconds", "0.2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_sandbox(url, proc)
        cfg = SandboxConfig()
        settings = Settings(huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,  # type: ignore[arg-type]
                            workspace_endpoint=url, huaweicloud_sdk_iam_endpoint=url, bss_endpoint=url,
                            vpc_endpoint=url, _env_file=None)  # type: ignore[call-arg]
        cloud = build_cloud(settings)
        try:
            created = await cloud.workspace.create_app_servers(parse_spec(office_body()))
            assert created.job_id
        finally:
            await cloud.aclose()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@pytest.mark.parametrize("count", [1, 3])
async def test_one_sub_job_per_server(count: int, settings: Settings) -> None:
    cloud = build_cloud(settings)
    try:
        created = await cloud.workspace.create_app_servers(parse_spec(office_body(count=count)))
        assert created.job_id
        detail = await cloud.workspace.show_job_detail(created.job_id)
        assert detail.sub_jobs_total == count == len(detail.sub_jobs)
    finally:
        await cloud.aclose()
