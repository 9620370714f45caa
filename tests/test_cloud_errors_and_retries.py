"""Errors become plain sentences; reads are retried, writes are never resent after an unknown outcome."""

from __future__ import annotations

import logging

import httpx
import pytest

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.credentials import IamPasswordCredentials
from bot.cloud.errors import CloudError, FailureKind, describe, from_response, from_transport
from bot.logs import install_redaction
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.spec import parse_spec
from tests.conftest import iam_settings, sandbox_settings
from tests.specs import office_body


def _response(status: int, body: object, request_id: str | None = "req-123") -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("GET", "https://x/y"))


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "WKS.00211102", "The cloud refused the request as invalid"),
        (401, "WKS.00211302", "rejected the bot's credentials"),
        (403, "WKS.00081102", "not allowed to do this"),
        (404, "WKS.00211902", "could not find"),
        (405, "WKS.00000405", "wrong endpoint"),
        (500, "WKS.00211401", "internal error"),
        (503, "WKS.00050902", "unavailable right now"),
        (429, "APIGW.0308", "throttling"),
        (401, "APIGW.0301", "access key, secret key or token"),
        (401, "APIGW.0303", "clock"),
        (400, "CBC.99005003", "balance is not enough"),
    ],
)
def test_every_status_and_code_becomes_a_sentence_with_the_request_id(status: int, code: str, expected: str) -> None:
    error = from_response("CreateAppServers", _response(status, {"error_code": code, "error_msg": "Detail here."}))
    sentence = describe(error)
    assert expected in sentence
    assert sentence.endswith("(request id req-123).")
    assert error.status == status and error.error_code == code


def test_sdk_style_alternative_error_keys_are_understood() -> None:
    nested = from_response("X", _response(401, {"error": {"code": "401", "message": "The username or password is wrong."}}))
    assert nested.error_msg == "The username or password is wrong."
    camel = from_response("X", _response(400, {"errorCode": "CBC.0100", "errorMsg": "Parameter error."}))
    assert camel.error_code == "CBC.0100"
    bare = from_response("X", httpx.Response(502, text="Bad gateway", request=httpx.Request("GET", "https://x")))
    assert bare.error_code == "502" and "gateway" in describe(bare)


def test_request_id_from_the_gateway_body_when_no_header() -> None:
    error = from_response("X", _response(429, {"error_code": "APIGW.0308", "error_msg": "x", "request_id": "gw-9"}, None))
    assert error.request_id == "gw-9" and error.throttled


def test_timeouts_and_connection_errors() -> None:
    request = httpx.Request("POST", "https://x")
    read = from_transport("CreateAppServers", httpx.ReadTimeout("slow", request=request))
    assert read.kind is FailureKind.TIMEOUT and read.outcome_unknown
    assert describe(read) == "The cloud did not answer in time."
    connect = from_transport("CreateAppServers", httpx.ConnectError("refused", request=request))
    assert connect.kind is FailureKind.CONNECTION and not connect.outcome_unknown
    assert "could not reach" in describe(connect)
    dropped = from_transport("CreateAppServers", httpx.RemoteProtocolError("closed", request=request))
    assert dropped.outcome_unknown


async def test_a_read_is_resent_after_429_and_succeeds(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="ListVolumeType", kind="429", count=2))
    volumes = await cloud.workspace.list_volume_types()
    assert volumes.volume_types
    assert [c["status"] for c in sandbox.calls("ListVolumeType")] == [429, 429, 200]


async def test_a_read_is_resent_after_5xx_but_gives_up_after_its_attempts(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="ShowJobDetail", kind="503", count=10))
    with pytest.raises(CloudError) as failed:
        await cloud.workspace.show_job_detail("123")
    assert failed.value.status == 503
    assert len(sandbox.calls("ShowJobDetail")) == 4  # the configured number of attempts


async def test_create_is_not_resent_after_a_500(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="500-after"))
    with pytest.raises(CloudError) as failed:
        await cloud.workspace.create_app_servers(parse_spec(office_body()))
    assert failed.value.outcome_unknown
    assert len(sandbox.calls("CreateAppServers")) == 1
    assert len(sandbox.state.servers) == 2  # it was carried out: resending would have doubled it


@pytest.mark.slow
async def test_create_is_not_resent_after_a_timeout(sandbox_url: str, sandbox: Sandbox) -> None:
    sandbox.faults.configure(FaultSettings(hang_seconds=3))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="hang"))
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, cloud_read_timeout_seconds=0.5))
    try:
        with pytest.raises(CloudError) as failed:
            await cloud.workspace.create_app_servers(parse_spec(office_body()))
    finally:
        await cloud.aclose()
    assert failed.value.kind is FailureKind.TIMEOUT and failed.value.outcome_unknown
    assert len(sandbox.calls("CreateAppServers")) == 1


async def test_create_is_resent_after_an_explicit_throttle(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="429"))
    created = await cloud.workspace.create_app_servers(parse_spec(office_body()))
    assert created.job_id
    assert [c["status"] for c in sandbox.calls("CreateAppServers")] == [429, 200]
    assert len(sandbox.state.jobs) == 1


async def test_pay_order_is_not_resent_after_a_503(cloud: Cloud, sandbox: Sandbox) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(office_body(
        create_server_extend_param={"charging_mode": "prePaid", "period_type": 2, "period_num": 1})))
    assert created.order_id
    sandbox.faults.add(ScriptedFault(operation="PayOrders", kind="503"))
    with pytest.raises(CloudError):
        await cloud.billing.pay_order(created.order_id)
    assert len(sandbox.calls("PayOrders")) == 1


async def test_iam_token_is_cached_and_renewed_once_after_a_401(sandbox_url: str, sandbox: Sandbox) -> None:
    cfg = sandbox.config
    settings = iam_settings(sandbox_url, sandbox)
    cloud = build_cloud(settings)
    try:
        assert isinstance(cloud.credentials, IamPasswordCredentials)
        await cloud.workspace.list_volume_types()
        await cloud.workspace.list_availability_zones()
        assert cloud.credentials.tokens.fetch_count == 1
        assert await cloud.workspace.project_id() == cfg.project_id  # from the token's project
        sandbox.state.tokens.clear()  # the cloud forgets the token (expired or revoked)
        zones = await cloud.workspace.list_availability_zones()
        assert zones.availability_zones
        assert cloud.credentials.tokens.fetch_count == 2
        statuses = [c["status"] for c in sandbox.calls("ListAvailabilityZone")]
        assert statuses == [200, 401, 200]
        assert all(c["auth"] == "token" for c in sandbox.calls("ListAvailabilityZone"))
    finally:
        await cloud.aclose()


async def test_wrong_iam_password_is_a_clear_error(sandbox_url: str, sandbox: Sandbox) -> None:
    settings = iam_settings(sandbox_url, sandbox, huaweicloud_iam_password="not-the-password")
    cloud = build_cloud(settings)
    try:
        with pytest.raises(CloudError) as refused:
            await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()
    assert refused.value.status == 401
    assert "username or password is wrong" in describe(refused.value)
    assert "not-the-password" not in str(refused.value)


async def test_no_secret_reaches_a_log_line(sandbox_url: str, sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()  # as the program does at start
    caplog.set_level(logging.DEBUG)
    cfg = sandbox.config
    sandbox.faults.add(ScriptedFault(operation="ListVolumeType", kind="429"))
    settings = iam_settings(sandbox_url, sandbox)
    cloud = build_cloud(settings)
    try:
        await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()
    tokens = list(sandbox.state.tokens)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in text  # the retry was logged...
    for secret in [cfg.iam_password, *tokens]:
        assert secret not in text  # ...without the password or the token
    assert all("password" not in str(c["body"]) or "not recorded" in str(c["body"]) for c in sandbox.log)
