"""Every cloud call against the sandbox over real loopback HTTP, signed with AK/SK."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.errors import CloudError
from bot.cloud.iam import ProjectLookupError
from bot.cloud.models import ORDER_COMPLETED, ORDER_PENDING_PAYMENT
from bot.sandbox import Sandbox
from bot.sandbox.seed import server_groups
from bot.spec import parse_spec
from tests.conftest import sandbox_settings
from tests.specs import office_body, prepaid_body


async def test_project_id_is_looked_up_once_through_iam(cloud: Cloud, sandbox: Sandbox) -> None:
    assert await cloud.workspace.project_id() == sandbox.config.project_id
    await cloud.workspace.list_volume_types()
    assert len(sandbox.calls("KeystoneListProjects")) == 1
    assert sandbox.calls("KeystoneListProjects")[0]["query"] == {"name": "cn-north-4"}


async def test_configured_project_id_skips_the_lookup(sandbox_url: str, sandbox: Sandbox) -> None:
    settings = sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_project_id=sandbox.config.project_id)
    cloud = build_cloud(settings)
    try:
        await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()
    assert sandbox.calls("KeystoneListProjects") == []


async def test_several_projects_with_the_region_name_is_a_clear_error(sandbox_url: str, sandbox: Sandbox) -> None:
    sandbox.config.duplicate_project_names = True
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox))
    try:
        with pytest.raises(ProjectLookupError, match=r"Several IAM projects.*HUAWEICLOUD_SDK_PROJECT_ID"):
            await cloud.workspace.list_volume_types()
    finally:
        sandbox.config.duplicate_project_names = False
        await cloud.aclose()


async def test_no_project_with_the_region_name_is_a_clear_error(sandbox_url: str, sandbox: Sandbox) -> None:
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_region="ap-southeast-1"))
    try:
        with pytest.raises(ProjectLookupError, match="No IAM project is named 'ap-southeast-1'"):
            await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()


async def test_server_groups_are_read_across_all_pages(cloud: Cloud, sandbox: Sandbox) -> None:
    groups = await cloud.workspace.list_server_groups()
    assert len(groups) == len(server_groups(150)) == 153
    assert len({g.id for g in groups}) == 153
    assert len(sandbox.calls("ListServerGroups")) == 2
    office = await cloud.workspace.show_server_group(groups[0].id)
    assert office.name == "office-apps"
    assert office.product_info is not None and office.product_info.flavor_id == "c7.xlarge.2"


async def test_catalogue_calls(cloud: Cloud) -> None:
    products = await cloud.workspace.list_products(availability_zone="cn-north-4c")
    statuses = {p.product_id: p.status for p in products.products}
    assert statuses["workspace.appstream.graphics.2xlarge.8"] == "sellout"
    zones = await cloud.workspace.list_availability_zones()
    assert [z.availability_zone for z in zones.availability_zones] == ["cn-north-4a", "cn-north-4b", "cn-north-4c"]
    assert not zones.availability_zones[2].sells("workspace.appstream.graphics.2xlarge.8")
    summary = await cloud.workspace.availability_zone_summary()
    assert summary.default_type == "CENTER" and len(summary.azs["CENTER"]) == 3
    volumes = await cloud.workspace.list_volume_types()
    assert {v.volume_type for v in volumes.volume_types} == {"SAS", "SSD", "GPSSD", "ESSD"}
    quota = await cloud.workspace.check_quota(
        product_id="workspace.appstream.general.xlarge.2", subscription_num=3, disk_size=80, is_period=True
    )
    assert quota.is_enough and quota.shortfalls() == []
    too_many = await cloud.workspace.check_quota(
        product_id="workspace.appstream.general.xlarge.2", subscription_num=100, disk_size=80
    )
    assert too_many.is_enough  # 200 instances in the sandbox's quota


async def test_subnet_lookup_gives_the_vpc(cloud: Cloud) -> None:
    group = (await cloud.workspace.list_server_groups(name="office"))[0]
    assert group.subnet_id is not None
    subnet = await cloud.vpc.show_subnet(group.subnet_id)
    assert subnet.vpc_id == office_body()["vpc_id"]


@pytest.mark.slow
async def test_pay_per_use_create_then_job_to_success(cloud: Cloud, sandbox: Sandbox) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(office_body(count=2)))
    assert created.job_id and created.order_id is None
    job = await cloud.workspace.show_job(created.job_id)
    assert job.job_status in (2, 3) and len(job.sub_jobs) == 2
    await asyncio.sleep(0.7)
    detail = await cloud.workspace.show_job_detail(created.job_id)
    assert detail.status == "SUCCESS"
    server_ids = {s.job_resource_info.resource_id for s in detail.sub_jobs if s.job_resource_info}
    assert len(server_ids) == 2
    subs = await cloud.workspace.list_sub_jobs(job_id=created.job_id)
    assert {s.status for s in subs} == {"SUCCESS"}
    servers = await cloud.workspace.list_servers(server_group_id=office_body()["server_group_id"])
    assert {s.id for s in servers} == server_ids
    assert all(s.status == "REGISTERED" for s in servers)
    v1 = await cloud.workspace.show_job(created.job_id)
    assert v1.job_status == 1 and {e.resource_id for s in v1.sub_jobs for e in s.entities} == server_ids


@pytest.mark.slow
async def test_failing_job_reports_the_failed_sub_job(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.state.fail_next_jobs = 1
    created = await cloud.workspace.create_app_servers(parse_spec(office_body(count=2)))
    assert created.job_id
    await asyncio.sleep(0.7)
    detail = await cloud.workspace.show_job_detail(created.job_id)
    assert detail.status == "FAILED"
    failed = [s for s in detail.sub_jobs if s.status == "FAILED"]
    assert len(failed) == 1 and failed[0].error_code and failed[0].error_message


@pytest.mark.slow
async def test_prepaid_order_waits_for_payment_then_completes(cloud: Cloud, sandbox: Sandbox) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(count=2)))
    assert created.order_id and created.job_id is None
    order = await cloud.billing.show_order(created.order_id)
    assert order.order_info.status == ORDER_PENDING_PAYMENT
    assert order.order_info.pending_payment_end_time
    assert await cloud.billing.list_order_resources(created.order_id) == []
    await cloud.billing.pay_order(created.order_id)
    await asyncio.sleep(0.5)
    assert (await cloud.billing.show_order(created.order_id)).order_info.status == ORDER_COMPLETED
    resources = await cloud.billing.list_order_resources(created.order_id)
    assert len(resources) == 2
    with pytest.raises(CloudError) as paid_twice:
        await cloud.billing.pay_order(created.order_id)
    assert paid_twice.value.error_code == "CBC.99003106"


async def test_auto_pay_order_is_paid_at_once(cloud: Cloud) -> None:
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body(auto_pay=True)))
    assert created.order_id
    assert (await cloud.billing.show_order(created.order_id)).order_info.status in (3, 5)


async def test_insufficient_balance_is_cbc_99005003(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.state.balance = Decimal(1)
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body()))
    assert created.order_id
    with pytest.raises(CloudError) as refused:
        await cloud.billing.pay_order(created.order_id)
    assert refused.value.status == 400 and refused.value.error_code == "CBC.99005003"


async def test_orders_since_finds_a_new_order(cloud: Cloud) -> None:
    from datetime import UTC, datetime, timedelta

    since = datetime.now(UTC) - timedelta(seconds=5)
    created = await cloud.workspace.create_app_servers(parse_spec(prepaid_body()))
    orders = await cloud.billing.list_new_workspace_orders(since, since + timedelta(minutes=5))
    assert created.order_id in {o.order_id for o in orders}


async def test_sandbox_refuses_what_the_api_refuses(cloud: Cloud) -> None:
    with pytest.raises(CloudError) as wrong_vpc:
        await cloud.workspace.create_app_servers(parse_spec(office_body(vpc_id="vpc-elsewhere")))
    assert wrong_vpc.value.status == 400 and "VPC" in (wrong_vpc.value.error_msg or "")
    with pytest.raises(CloudError) as missing:
        await cloud.workspace.show_job_detail("does-not-exist")
    assert missing.value.status == 404 and missing.value.request_id


async def test_quota_is_enforced_on_create(cloud: Cloud, sandbox: Sandbox) -> None:
    sandbox.config.instance_quota = 3
    try:
        await cloud.workspace.create_app_servers(parse_spec(office_body(count=2)))
        with pytest.raises(CloudError) as refused:
            await cloud.workspace.create_app_servers(parse_spec(office_body(count=2)))
        assert refused.value.status == 400 and "quota" in (refused.value.error_msg or "").lower()
    finally:
        sandbox.config.instance_quota = 200


async def test_wrong_secret_key_is_refused_with_apigw_0301(sandbox_url: str, sandbox: Sandbox) -> None:
    cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_sk="WRONG-SECRET",
                                         huaweicloud_sdk_project_id=sandbox.config.project_id))
    try:
        with pytest.raises(CloudError) as refused:
            await cloud.workspace.list_volume_types()
    finally:
        await cloud.aclose()
    assert refused.value.status == 401 and refused.value.error_code == "APIGW.0301"
    assert len(sandbox.calls("ListVolumeType")) == 1  # a 401 is not retried


async def test_temporary_credentials_send_a_signed_security_token(sandbox_url: str, sandbox: Sandbox) -> None:
    sandbox.config.security_token = "TEMP-SECURITY-TOKEN"
    try:
        cloud = build_cloud(sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_security_token="TEMP-SECURITY-TOKEN"))
        try:
            assert (await cloud.workspace.list_volume_types()).volume_types
        finally:
            await cloud.aclose()
        cloud = build_cloud(sandbox_settings(sandbox_url, sandbox))
        try:
            with pytest.raises(CloudError):
                await cloud.workspace.list_volume_types()
        finally:
            await cloud.aclose()
    finally:
        sandbox.config.security_token = None
