"""Billing (BSS, a global service) with every supported login, over real HTTP to the sandbox: an IAM user's
token scoped to the account, the account id through STS when IAM lists no domain, and doctor's account line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.credentials import AkSkCredentials, IamPasswordCredentials
from bot.cloud.endpoints import resolve_endpoints
from bot.cloud.errors import AccountIdUnavailable, describe
from bot.cloud.rating_models import ResourceSpecsQuery
from bot.doctor import check_account
from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.faults import ScriptedFault
from bot.sandbox.server import BackgroundServer, free_port
from bot.settings import Settings
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.slack.messages import payable_amount
from bot.spec import parse_spec
from bot.store.repository import server_ids
from tests.conftest import iam_settings, sandbox_settings
from tests.fake_slack import FakeSlack
from tests.flows import fill, final_state
from tests.harness import APPROVAL_CHANNEL, APPROVER, NOTIFY_CHANNEL, SIGNING_SECRET, running_bot
from tests.specs import prepaid_body

BSS_OPERATIONS = {"ShowCustomerOrderDetails", "ListCustomerOrders", "PayOrders", "ListResourceSpecs",
                  "ListPayPerUseCustomerResources"}
STS = "GetCallerIdentity"
IAM_DOMAINS = "KeystoneListAuthDomains"


def bss_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls() if c["operation"] in BSS_OPERATIONS]


def token_scopes(sandbox: Sandbox) -> list[str]:
    """What each CreateToken asked for: "project" or "domain"."""
    return ["domain" if "domain" in c["body"]["scope"] else "project" for c in sandbox.calls("CreateToken")]


async def read_orders(cloud: Cloud) -> object:
    now = datetime.now(UTC)
    return await cloud.billing.list_new_workspace_orders(now - timedelta(minutes=5), now + timedelta(minutes=1))


def spec_query() -> ResourceSpecsQuery:
    return ResourceSpecsQuery(cloud_service_type="hws.service.type.vdi",
                              resource_type="hws.resource.type.workspace.appstream", region_code="cn-north-4",
                              charge_mode="1")


# IAM password login ---------------------------------------------------------------------------------


async def test_the_sandbox_refuses_a_project_scoped_token_on_billing(sandbox: Sandbox, sandbox_url: str) -> None:
    """What the bot sent BSS before: the project's token. The gateway takes it as valid but without rights."""
    cloud = build_cloud(iam_settings(sandbox_url, sandbox))
    try:
        assert isinstance(cloud.credentials, IamPasswordCredentials)
        project_token = await cloud.credentials.tokens.token()
        answer = await cloud.http_client.get(sandbox_url + "/v2/orders/customer-orders",
                                             headers={"X-Auth-Token": project_token})
        account_token = await cloud.credentials.account_tokens.token()
        wrong_way = await cloud.http_client.get(f"{sandbox_url}/v1/{sandbox.config.project_id}/volume-type",
                                                headers={"X-Auth-Token": account_token})
    finally:
        await cloud.aclose()
    assert answer.status_code == 403 and answer.json()["error_code"] == "CBC.0151"
    assert wrong_way.status_code == 401 and wrong_way.json()["error_code"] == "APIGW.0301"
    assert token_scopes(sandbox) == ["project", "domain"]


async def test_an_iam_user_pays_and_reads_billing_with_a_token_scoped_to_the_account(
    sandbox: Sandbox, sandbox_url: str
) -> None:
    cfg = sandbox.config
    cloud = build_cloud(iam_settings(sandbox_url, sandbox))
    try:
        created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body()))
        assert created.order_id
        # Many billing calls at once share one account-scoped token, beside the project's token.
        await asyncio.gather(*[cloud.billing.show_order(created.order_id) for _ in range(6)],
                             *[read_orders(cloud) for _ in range(4)],
                             cloud.rating.list_resource_specs(spec_query()))
        await cloud.billing.pay_order(created.order_id)
        await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()
    calls = bss_calls(sandbox)
    assert len(calls) == 12
    assert {(c["status"], c["auth"], c["domain_id"]) for c in calls} == {(200, "token", None), (204, "token", None)}
    assert [c["status"] for c in sandbox.calls("PayOrders")] == [204]
    assert {c["status"] for c in sandbox.calls("CreateAppServers") + sandbox.calls("ListVolumeType")} == {200}
    assert sorted(token_scopes(sandbox)) == ["domain", "project"]
    [account_scope] = [c["body"]["scope"] for c in sandbox.calls("CreateToken") if "domain" in c["body"]["scope"]]
    assert account_scope == {"domain": {"name": cfg.iam_domain}}
    assert sandbox.calls(IAM_DOMAINS) == [] and sandbox.calls(STS) == []


async def test_the_account_token_is_renewed_like_the_project_token(sandbox: Sandbox, sandbox_url: str) -> None:
    cloud = build_cloud(iam_settings(sandbox_url, sandbox))
    assert isinstance(cloud.credentials, IamPasswordCredentials)
    provider = cloud.credentials.account_tokens
    now = [datetime.now(UTC)]
    provider._clock = lambda: now[0]
    try:
        await read_orders(cloud)
        now[0] += timedelta(hours=22)  # 2 h before the end: still fresh
        await read_orders(cloud)
        assert provider.fetch_count == 1
        now[0] += timedelta(hours=1, minutes=30)  # 30 min before the end: renewed before use
        await read_orders(cloud)
        assert provider.fetch_count == 2
        now[0] = datetime.now(UTC)
        sandbox.state.tokens.clear()  # the cloud forgets it (revoked): one 401, a new token, the call again
        await read_orders(cloud)
        assert provider.fetch_count == 3
    finally:
        await cloud.aclose()
    assert [c["status"] for c in sandbox.calls("ListCustomerOrders")] == [200, 200, 200, 401, 200]
    assert token_scopes(sandbox) == ["domain"] * 3  # the project's token was never needed
    assert cloud.credentials.tokens.fetch_count == 0


async def test_doctor_names_the_account_an_iam_user_bills(sandbox: Sandbox, sandbox_url: str) -> None:
    cfg = sandbox.config
    check = await check_account(iam_settings(sandbox_url, sandbox))
    assert check.ok and check.line() == (f"ok    account   billing uses an IAM token of {cfg.iam_user} scoped to the "
                                         f"account {cfg.iam_domain} (account id {cfg.domain_id})")
    assert token_scopes(sandbox) == ["domain"]


async def test_doctor_says_when_the_account_token_is_refused(sandbox: Sandbox, sandbox_url: str) -> None:
    sandbox.faults.add(ScriptedFault(operation="CreateToken", kind="403"))
    check = await check_account(iam_settings(sandbox_url, sandbox))
    assert not check.ok
    assert check.detail.startswith(f"{sandbox_url}: The bot's cloud account is not allowed to do this")
    assert sandbox.config.iam_password not in check.detail


# The account id through STS -------------------------------------------------------------------------


def test_sts_endpoints_follow_the_sdk_table_and_sts_endpoint_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_endpoints("cn-north-4").sts == "https://sts.cn-north-4.myhuaweicloud.com"
    assert resolve_endpoints("ap-southeast-3").sts == "https://sts.ap-southeast-3.myhuaweicloud.com"
    for unlisted in ("af-north-1", "cn-north-11", "cn-north-1"):
        assert resolve_endpoints(unlisted).sts == "https://sts.cn-north-4.myhuaweicloud.com"
    monkeypatch.setenv("STS_ENDPOINT", "http://127.0.0.1:9/")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.sts_endpoint == "http://127.0.0.1:9/"
    monkeypatch.setenv("STS_ENDPOINT", "sts.example")
    with pytest.raises(ValueError, match="must be a URL"):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_when_iam_lists_no_domain_sts_gives_the_account_id_once(
    sandbox: Sandbox, sandbox_url: str, cloud: Cloud
) -> None:
    cfg = sandbox.config
    cfg.list_no_domains = True
    try:
        created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body()))
        assert created.order_id
        await asyncio.gather(*[cloud.billing.show_order(created.order_id) for _ in range(6)],
                             *[read_orders(cloud) for _ in range(4)])
        await cloud.billing.pay_order(created.order_id)
        assert isinstance(cloud.credentials, AkSkCredentials)
        assert await cloud.credentials.account_source() == f"account id {cfg.domain_id} found through STS"
    finally:
        cfg.list_no_domains = False
    assert [c["status"] for c in sandbox.calls(IAM_DOMAINS)] == [200]
    [sts] = sandbox.calls(STS)
    assert (sts["method"], sts["path"], sts["auth"], sts["domain_id"], sts["status"]) == (
        "GET", "/v5/caller-identity", "aksk", None, 200)
    calls = bss_calls(sandbox)
    assert len(calls) == 11 and {c["domain_id"] for c in calls} == {cfg.domain_id}
    assert {c["status"] for c in calls} == {200, 204}


async def test_a_refused_sts_lookup_is_one_sentence_and_billing_is_not_called(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.config.list_no_domains = True
    sandbox.faults.add(ScriptedFault(operation=STS, kind="403"))
    try:
        with pytest.raises(AccountIdUnavailable) as refused:
            await cloud.billing.show_order("CS0000000000AAAAA")
        with pytest.raises(AccountIdUnavailable) as again:
            await cloud.billing.pay_order("CS0000000000AAAAA")
    finally:
        sandbox.config.list_no_domains = False
    sentence = describe(refused.value)
    assert sentence.startswith("The bot could not find the cloud account id through IAM or STS (IAM listed no "
                               "account for these access keys, and STS refused the lookup: status 403, APIGW.0302, "
                               "“The IAM user is not authorized to access this API”, request id ")
    assert sentence.endswith("); set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")
    assert describe(again.value) == sentence  # remembered, not asked again at once
    assert not refused.value.transient and refused.value.operation == STS
    assert len(sandbox.calls(IAM_DOMAINS)) == 1 and len(sandbox.calls(STS)) == 1 and bss_calls(sandbox) == []


async def test_sts_endpoint_is_the_host_asked(sandbox: Sandbox, sandbox_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, sts_endpoint=nowhere + "/", cloud_retry_attempts=1))
    sandbox.config.list_no_domains = True
    try:
        assert cloud.endpoints.sts == nowhere
        with pytest.raises(AccountIdUnavailable) as unreachable:
            await read_orders(cloud)
    finally:
        sandbox.config.list_no_domains = False
        await cloud.aclose()
    assert describe(unreachable.value) == (
        "The bot could not find the cloud account id through IAM or STS (IAM listed no account for these access "
        f"keys, and STS at {nowhere} could not be reached); set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")
    assert unreachable.value.transient
    assert sandbox.calls(STS) == [] and bss_calls(sandbox) == []


async def test_doctor_says_the_account_id_came_through_sts(sandbox: Sandbox, sandbox_url: str) -> None:
    sandbox.config.list_no_domains = True
    try:
        check = await check_account(sandbox_settings(sandbox_url, sandbox))
        sandbox.faults.add(ScriptedFault(operation=STS, kind="403"))
        refused = await check_account(sandbox_settings(sandbox_url, sandbox))
    finally:
        sandbox.config.list_no_domains = False
    assert check.line() == f"ok    account   account id {sandbox.config.domain_id} found through STS"
    assert not refused.ok and refused.line().startswith(
        "FAIL  account   The bot could not find the cloud account id through IAM or STS (IAM listed no account")


async def test_an_explicit_account_id_asks_neither_iam_nor_sts(sandbox: Sandbox, sandbox_url: str) -> None:
    sandbox.config.list_no_domains = True
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_domain_id=sandbox.config.domain_id))
    try:
        await read_orders(cloud)
    finally:
        sandbox.config.list_no_domains = False
        await cloud.aclose()
    assert sandbox.calls(IAM_DOMAINS) == [] and sandbox.calls(STS) == []


# The whole bot ------------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


@pytest.mark.slow
@pytest.mark.parametrize("login", ["iam-user", "aksk-account-from-sts"])
def test_a_yearly_monthly_request_is_paid_and_tracked_with_each_login(
    login: str, slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    fake, url = slack
    make = iam_settings if login == "iam-user" else sandbox_settings
    settings = make(
        sandbox_url, sandbox, slack_bot_token=fake.token, slack_signing_secret=SIGNING_SECRET, slack_api_url=url,
        approvers=APPROVER, approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL,
        database_url=f"sqlite:///{tmp_path}/bot.db", poll_interval_seconds=0.2, poll_first_delay_seconds=0.1,
        slack_post_interval_seconds=0, slack_update_interval_seconds=0, slack_edit_window_seconds=0.2,
    )
    sandbox.config.list_no_domains = True
    try:
        with running_bot(settings, sandbox, fake) as bot:
            fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
            row = final_state(bot, State.PENDING_APPROVAL)
            assert bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL).status_code == 200
            waiting = final_state(bot, State.AWAITING_PAYMENT)
            assert bot.click(Action.PAY.value, button_value(waiting, amount=payable_amount(waiting)), APPROVER,
                             APPROVAL_CHANNEL).status_code == 200
            done = final_state(bot, State.SUCCEEDED, State.FAILED)
    finally:
        sandbox.config.list_no_domains = False
    assert done.state == State.SUCCEEDED, done.last_error
    assert done.order_id and len(server_ids(done)) == 1
    calls = bss_calls(sandbox)
    assert {"ShowCustomerOrderDetails", "PayOrders", "ListPayPerUseCustomerResources"} <= {c["operation"] for c in calls}
    assert all(c["status"] < 400 for c in calls), [(c["operation"], c["status"]) for c in calls if c["status"] >= 400]
    if login == "iam-user":
        assert {c["auth"] for c in calls} == {"token"} and "domain" in token_scopes(sandbox)
        assert sandbox.calls(STS) == []
    else:
        assert {(c["auth"], c["domain_id"]) for c in calls} == {("aksk", sandbox.config.domain_id)}
        assert len(sandbox.calls(STS)) == 1
