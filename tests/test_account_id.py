"""The account id (`X-Domain-Id`) that BSS needs with AK/SK: found once through IAM as the SDK does it,
refused by the sandbox's gateway when missing or wrong, and reported by doctor. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.endpoints import resolve_endpoints
from bot.cloud.errors import AccountIdUnavailable, CloudError, describe, from_response
from bot.cloud.signer import AkSkAuth
from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.app import GLOBAL_SERVICE_PREFIXES, is_global_service
from bot.sandbox.faults import ScriptedFault
from bot.sandbox.server import BackgroundServer, free_port
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.spec import parse_spec
from bot.store.repository import server_ids
from tests.conftest import iam_settings, sandbox_settings
from tests.fake_slack import FakeSlack
from tests.flows import fill, final_state, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, NOTIFY_CHANNEL, OTHER_APPROVER, SIGNING_SECRET, running_bot, wait_for
from tests.specs import prepaid_body
from tests.test_doctor_and_schema import doctor_env, run_cli

BSS_OPERATIONS = {"ShowCustomerOrderDetails", "ListCustomerOrders", "PayOrders", "CancelCustomerOrder",
                  "ListPayPerUseCustomerResources"}
LOOKUP = "KeystoneListAuthDomains"


async def read_orders(cloud: Cloud) -> object:
    """A BSS read (ListCustomerOrders) over the last minutes."""
    now = datetime.now(UTC)
    return await cloud.billing.list_new_workspace_orders(now - timedelta(minutes=5), now + timedelta(minutes=1))


def test_iam_endpoints_follow_the_sdk_table_and_fall_back_to_the_global_host() -> None:
    assert resolve_endpoints("cn-north-4").iam == "https://iam.cn-north-4.myhuaweicloud.com"
    assert resolve_endpoints("ap-southeast-3").iam == "https://iam.ap-southeast-3.myhuaweicloud.com"
    for unlisted in ("af-north-1", "cn-north-11"):
        assert resolve_endpoints(unlisted).iam == "https://iam.myhuaweicloud.com"
    assert resolve_endpoints("af-north-1", iam="http://127.0.0.1:9/").iam == "http://127.0.0.1:9"


@pytest.mark.parametrize("code", ["CBC.0150", "CBC.0156"])
def test_the_wrong_billing_site_names_the_bss_endpoint_to_set(code: str) -> None:
    answer = httpx.Response(403, json={"error_code": code, "error_msg": "customer does not belong to the website "
                                                                        "you are now at"},
                            headers={"X-Request-Id": "r-1"})
    sentence = describe(from_response("ShowCustomerOrderDetails", answer))
    assert "set BSS_ENDPOINT to https://bss-intl.myhuaweicloud.com for an international account" in sentence
    assert "https://bss.myhuaweicloud.eu for a European one" in sentence
    assert sentence.endswith(f": {code} (request id r-1).") and one_sentence(sentence)


def bss_calls(sandbox: Sandbox) -> list[dict[str, object]]:
    return [c for c in sandbox.calls() if c["operation"] in BSS_OPERATIONS]


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text and text[0].isupper()


async def test_many_concurrent_bss_calls_share_one_iam_lookup(cloud: Cloud, sandbox: Sandbox) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body()))
    assert created.order_id
    answers = await asyncio.gather(*[cloud.billing.show_order(created.order_id) for _ in range(12)],
                                   *[read_orders(cloud) for _ in range(8)])
    assert len(answers) == 20
    assert len(sandbox.calls(LOOKUP)) == 1
    lookup = sandbox.calls(LOOKUP)[0]
    assert lookup["auth"] == "aksk" and lookup["domain_id"] is None and lookup["status"] == 200
    calls = bss_calls(sandbox)
    assert len(calls) == 20 and {(c["status"], c["domain_id"]) for c in calls} == {(200, sandbox.config.domain_id)}
    await cloud.billing.pay_order(created.order_id)  # later calls, writes too, reuse the id
    assert len(sandbox.calls(LOOKUP)) == 1 and sandbox.calls("PayOrders")[0]["domain_id"] == sandbox.config.domain_id


async def test_the_sandbox_refuses_a_bss_call_without_a_signed_right_account_id(sandbox: Sandbox,
                                                                                 sandbox_url: str) -> None:
    cfg = sandbox.config
    path = "/v2/orders/customer-orders"
    signer = AkSkAuth(cfg.access_key, cfg.secret_key)
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        missing = await client.get(path, auth=signer)
        wrong = await client.get(path, auth=signer.with_domain("0" * 32))
        unsigned = client.build_request("GET", path)
        next(signer.sync_auth_flow(unsigned))
        unsigned.headers["X-Domain-Id"] = cfg.domain_id  # present, but added after signing
        not_signed = await client.send(unsigned)
        right = await client.get(path, auth=signer.with_domain(cfg.domain_id))
    for refused in (missing, wrong, not_signed):
        assert refused.status_code == 401 and refused.json()["error_code"] == "APIGW.0301"
        assert refused.json()["request_id"]
    assert "X-Domain-Id" in missing.json()["error_msg"] and "X-Domain-Id" in not_signed.json()["error_msg"]
    assert "account" in wrong.json()["error_msg"]
    assert right.status_code == 200 and "order_infos" in right.json()


def test_every_bss_path_is_a_global_service_path() -> None:
    assert GLOBAL_SERVICE_PREFIXES == ("/v2/orders", "/v3/orders", "/v2/bills", "/v2/products", "/v2/accounts")
    for path in ("/v2/orders/customer-orders", "/v3/orders/customer-orders/pay", "/v2/bills/ratings/on-demand-resources",
                 "/v2/products/service-types", "/v2/accounts/customer-accounts/balances"):
        assert is_global_service(path), path
    for path in ("/v2/5a4b/job/1", "/v1/5a4b/app-servers", "/v3/auth/domains", "/v2/ordersx"):
        assert not is_global_service(path), path


async def test_an_explicit_account_id_wins_and_no_lookup_is_made(sandbox: Sandbox, sandbox_url: str) -> None:
    cfg = sandbox.config
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_domain_id=cfg.domain_id))
    wrong = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_domain_id="f" * 32))
    try:
        await read_orders(cloud)
        with pytest.raises(CloudError) as refused:
            await read_orders(wrong)
    finally:
        await cloud.aclose()
        await wrong.aclose()
    assert refused.value.status == 401 and refused.value.error_code == "APIGW.0301"
    assert sandbox.calls(LOOKUP) == []
    assert [c["domain_id"] for c in sandbox.calls("ListCustomerOrders")] == [cfg.domain_id, "f" * 32]


async def test_a_refused_lookup_is_one_sentence_remembered_for_a_while(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.faults.add(ScriptedFault(operation=LOOKUP, kind="403"))
    attempts = await asyncio.gather(*[read_orders(cloud) for _ in range(6)],
                                    return_exceptions=True)
    assert all(isinstance(a, AccountIdUnavailable) for a in attempts)
    error = attempts[0]
    assert isinstance(error, AccountIdUnavailable)
    sentence = describe(error)
    assert sentence.startswith("The bot could not find the cloud account id through IAM (IAM refused the lookup: "
                               "status 403, “You are not authorized to perform the requested action”, request id ")
    assert sentence.endswith("); set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.") and one_sentence(sentence)
    assert error.sentence == sentence and not error.transient
    assert not error.retryable_read and not error.resendable_write and not error.outcome_unknown
    assert sandbox.config.secret_key not in sentence and sandbox.config.access_key not in sentence
    # The refusal is remembered: neither more reads nor a payment go to IAM or BSS, and nothing retries.
    with pytest.raises(AccountIdUnavailable):
        await cloud.billing.pay_order("CS0000000000AAAAA")
    assert len(sandbox.calls(LOOKUP)) == 1 and bss_calls(sandbox) == []
    # A minute later the bot asks IAM again (the fault is used up, so IAM now answers).
    finder = cloud.credentials.account  # type: ignore[attr-defined]
    later = time.monotonic() + 61
    finder.clock = lambda: later
    await read_orders(cloud)
    assert len(sandbox.calls(LOOKUP)) == 2 and bss_calls(sandbox)[0]["domain_id"] == sandbox.config.domain_id


async def test_no_domains_and_no_account_from_sts_is_a_clear_sentence(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.config.list_no_domains = True
    sandbox.faults.add(ScriptedFault(operation="GetCallerIdentity", kind="404"))
    try:
        with pytest.raises(AccountIdUnavailable) as refused:
            await cloud.billing.show_order("CS0000000000AAAAA")
        with pytest.raises(AccountIdUnavailable):
            await cloud.billing.show_order("CS0000000000AAAAA")
    finally:
        sandbox.config.list_no_domains = False
    assert describe(refused.value).startswith(
        "The bot could not find the cloud account id through IAM or STS (IAM listed no account for these access "
        "keys, and STS refused the lookup: status 404, APIGW.0101, ")
    assert describe(refused.value).endswith("); set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")
    assert len(sandbox.calls(LOOKUP)) == 1 and len(sandbox.calls("GetCallerIdentity")) == 1 and bss_calls(sandbox) == []


async def test_an_iam_fault_is_retried_by_the_lookup_only_and_not_remembered(sandbox: Sandbox,
                                                                              sandbox_url: str) -> None:
    sandbox.faults.add(ScriptedFault(operation=LOOKUP, kind="503", count=4))
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, cloud_retry_attempts=2))
    try:
        with pytest.raises(AccountIdUnavailable) as first:
            await read_orders(cloud)
        assert len(sandbox.calls(LOOKUP)) == 2  # the lookup's own retries; the BSS call adds none
        with pytest.raises(AccountIdUnavailable):
            await read_orders(cloud)
        assert len(sandbox.calls(LOOKUP)) == 4  # a passing fault is not remembered: the next call asks again
        await read_orders(cloud)
    finally:
        await cloud.aclose()
    assert first.value.transient and not first.value.retryable_read
    assert "status 503" in describe(first.value) and one_sentence(describe(first.value))
    assert len(sandbox.calls(LOOKUP)) == 5 and len(bss_calls(sandbox)) == 1


async def test_unreachable_iam_names_the_endpoint(sandbox: Sandbox, sandbox_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_iam_endpoint=nowhere,
                                         huaweicloud_sdk_project_id=sandbox.config.project_id,
                                         cloud_retry_attempts=1))
    try:
        with pytest.raises(AccountIdUnavailable) as unreachable:
            await read_orders(cloud)
    finally:
        await cloud.aclose()
    assert describe(unreachable.value) == (f"The bot could not find the cloud account id through IAM (IAM at {nowhere} "
                                           "could not be reached); set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")
    assert bss_calls(sandbox) == []


async def test_token_authentication_needs_no_account_id(sandbox: Sandbox, sandbox_url: str) -> None:
    cfg = sandbox.config
    cloud = build_cloud(iam_settings(sandbox_url, sandbox))
    try:
        created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(auto_pay=True)))
        assert created.order_id
        await cloud.billing.show_order(created.order_id)
        assert await cloud.credentials.account_source() == (
            f"billing uses an IAM token of {cfg.iam_user} scoped to the account {cfg.iam_domain} "
            f"(account id {cfg.domain_id})")
    finally:
        await cloud.aclose()
    assert sandbox.calls(LOOKUP) == []
    assert [(c["auth"], c["domain_id"]) for c in bss_calls(sandbox)] == [("token", None)]


# doctor ------------------------------------------------------------------------------------------


@pytest.fixture
def slack_url() -> Iterator[str]:
    with BackgroundServer(FakeSlack().app) as server:
        yield server.url + "/api/"


@pytest.mark.slow
def test_doctor_says_an_explicit_account_id_is_set(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                                   tmp_path: Path) -> None:
    env = doctor_env(sandbox, sandbox_url, slack_url, f"sqlite:///{tmp_path}/bot.db")
    env["HUAWEICLOUD_SDK_DOMAIN_ID"] = sandbox.config.domain_id
    result = run_cli("doctor", env=env, cwd=tmp_path)
    account = [line for line in result.stdout.splitlines() if "account" in line.split()[1:2]]
    assert account == [f"ok    account   account id {sandbox.config.domain_id} set by HUAWEICLOUD_SDK_DOMAIN_ID"]
    assert sandbox.calls(LOOKUP) == []


@pytest.mark.slow
def test_doctor_gives_the_sentence_when_iam_refuses(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                                    tmp_path: Path) -> None:
    sandbox.faults.add(ScriptedFault(operation=LOOKUP, kind="403"))
    db = f"sqlite:///{tmp_path}/bot.db"
    env = doctor_env(sandbox, sandbox_url, slack_url, db)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    [account] = [line for line in lines if line.split()[1:2] == ["account"]]
    assert account.startswith("FAIL  account   The bot could not find the cloud account id through IAM (IAM refused")
    assert account.endswith("; set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")
    assert [line for line in lines if line.startswith("FAIL")] == [account], result.stdout  # only this one fails
    assert len(sandbox.calls(LOOKUP)) == 1


# The whole bot -----------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack(group_members={"S0MANAGERS": [OTHER_APPROVER]})
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


@pytest.mark.slow
def test_a_yearly_monthly_request_finds_the_account_id_and_reaches_its_servers(
    slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    fake, url = slack
    settings = sandbox_settings(
        sandbox_url, sandbox, slack_bot_token=fake.token, slack_signing_secret=SIGNING_SECRET, slack_api_url=url,
        approvers=APPROVER, approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL,
        database_url=f"sqlite:///{tmp_path}/bot.db", poll_interval_seconds=0.2, poll_first_delay_seconds=0.1,
        slack_post_interval_seconds=0, slack_update_interval_seconds=0, slack_edit_window_seconds=0.2,
    )
    assert settings.huaweicloud_sdk_domain_id is None
    with running_bot(settings, sandbox, fake) as bot:
        fill(bot, billing="prePaid", period_unit="2", period_num=1, auto_pay=True, count=1)
        final_state(bot, State.PENDING_APPROVAL)
        row = wait_for(lambda: only_request(bot).approval_ts and only_request(bot), what="the approval card")
        clicked = bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
        assert clicked.status_code == 200
        done = final_state(bot, State.SUCCEEDED)
    assert done.order_id and len(server_ids(done)) == 1
    calls = bss_calls(sandbox)
    assert {c["operation"] for c in calls} >= {"ShowCustomerOrderDetails", "ListPayPerUseCustomerResources"}
    assert {(c["status"], c["auth"], c["domain_id"]) for c in calls} == {(200, "aksk", sandbox.config.domain_id)}
    assert len(sandbox.calls(LOOKUP)) == 1
