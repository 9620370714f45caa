"""WorkspaceApp (application streaming) and the VPC subnet lookup, project-scoped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from bot.cloud.credentials import CloudCredentials
from bot.cloud.http import CloudHttp
from bot.cloud.models import (
    AppServer,
    AppServerPage,
    AvailabilityZoneList,
    AvailabilityZoneSummary,
    JobDetailV2,
    JobV1,
    JobV1Envelope,
    ProductList,
    QuotaCheck,
    ServerGroup,
    ServerGroupPage,
    SubJobPage,
    SubJobV2,
    Subnet,
    SubnetEnvelope,
    VolumeTypeList,
)
from bot.spec import CreateAppServersRequest, CreateAppServersResponse

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
PAGE_SIZE = 100
MAX_PAGES = 1000  # a guard against a service that never stops paging


class ProjectScoped:
    """A service endpoint whose paths start with the project id; resolves it once, on first use."""

    def __init__(self, endpoint: CloudHttp, credentials: CloudCredentials) -> None:
        self._endpoint = endpoint
        self._credentials = credentials
        self._bound: tuple[CloudHttp, str] | None = None
        self._lock = asyncio.Lock()

    async def bound(self) -> tuple[CloudHttp, str]:
        if self._bound is None:
            async with self._lock:
                if self._bound is None:
                    project_id = await self._credentials.project_id()
                    auth = self._credentials.project_auth(project_id)
                    self._bound = (self._endpoint.with_auth(auth), project_id)
        return self._bound

    async def get(self, operation: str, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        http, project_id = await self.bound()
        response = await http.call(operation, "GET", path.format(project_id=project_id), params=params)
        return model.model_validate(response.json())

    async def post(self, operation: str, path: str, model: type[M], body: Any) -> M:
        http, project_id = await self.bound()
        response = await http.call(operation, "POST", path.format(project_id=project_id), json=body)
        return model.model_validate(response.json() if response.content else {})


def segment(value: str) -> str:
    """A path parameter, escaped as the SDK does (also keeps `{` out of the path template)."""
    return quote(value, safe="")


async def _all_pages(fetch: Callable[[int], Awaitable[tuple[int, list[T]]]]) -> list[T]:
    items: list[T] = []
    for page in range(MAX_PAGES):
        total, batch = await fetch(page * PAGE_SIZE)
        items.extend(batch)
        if not batch or len(items) >= total or len(batch) < PAGE_SIZE:
            break
    return items


class WorkspaceClient:
    def __init__(self, scope: ProjectScoped) -> None:
        self._scope = scope

    async def project_id(self) -> str:
        return (await self._scope.bound())[1]

    # Creating ----------------------------------------------------------------------------------

    async def create_app_servers(self, request: CreateAppServersRequest) -> CreateAppServersResponse:
        """CreateAppServers. Never resent after a timeout or 5xx (there is no idempotency key)."""
        return await self._scope.post(
            "CreateAppServers", "/v1/{project_id}/app-servers/actions/create",
            CreateAppServersResponse, request.to_api_body(),
        )

    # Jobs --------------------------------------------------------------------------------------

    async def show_job(self, job_id: str) -> JobV1:
        envelope = await self._scope.get("ShowJob", f"/v1/{{project_id}}/job/{segment(job_id)}", JobV1Envelope)
        return envelope.job

    async def show_job_detail(self, job_id: str) -> JobDetailV2:
        return await self._scope.get("ShowJobDetail", f"/v2/{{project_id}}/job/{segment(job_id)}", JobDetailV2)

    async def list_sub_jobs(
        self, *, job_type: str = "CREATE_SERVER", job_id: str | None = None, status: str | None = None
    ) -> list[SubJobV2]:
        async def page(offset: int) -> tuple[int, list[SubJobV2]]:
            result = await self._scope.get(
                "ListSubJobs", "/v1/{project_id}/app-server-sub-jobs", SubJobPage,
                {"job_type": job_type, "job_id": job_id, "status": status, "offset": offset, "limit": PAGE_SIZE},
            )
            return result.count, result.items

        return await _all_pages(page)

    # Catalogue ---------------------------------------------------------------------------------

    async def list_server_groups(self, *, name: str | None = None) -> list[ServerGroup]:
        async def page(offset: int) -> tuple[int, list[ServerGroup]]:
            result = await self._scope.get(
                "ListServerGroups", "/v1/{project_id}/app-server-groups", ServerGroupPage,
                {"offset": offset, "limit": PAGE_SIZE, "server_group_name": name},
            )
            return result.count, result.items

        return await _all_pages(page)

    async def list_server_groups_page(self, *, offset: int = 0, limit: int = PAGE_SIZE) -> ServerGroupPage:
        return await self._scope.get(
            "ListServerGroups", "/v1/{project_id}/app-server-groups", ServerGroupPage,
            {"offset": offset, "limit": limit},
        )

    async def show_server_group(self, server_group_id: str) -> ServerGroup:
        return await self._scope.get(
            "ShowServerGroup", f"/v1/{{project_id}}/app-server-groups/{segment(server_group_id)}", ServerGroup
        )

    async def list_products(
        self,
        *,
        product_id: str | None = None,
        availability_zone: str | None = None,
        charge_mode: str | None = None,
        os_type: str | None = None,
    ) -> ProductList:
        return await self._scope.get(
            "ListProduct", "/v1/{project_id}/product", ProductList,
            {"product_id": product_id, "availability_zone": availability_zone,
             "charge_mode": charge_mode, "os_type": os_type},
        )

    async def list_availability_zones(self) -> AvailabilityZoneList:
        return await self._scope.get(
            "ListAvailabilityZone", "/v1/{project_id}/availability-zone", AvailabilityZoneList
        )

    async def availability_zone_summary(self) -> AvailabilityZoneSummary:
        return await self._scope.get(
            "ListAz", "/v1/{project_id}/availability-zone/summary", AvailabilityZoneSummary
        )

    async def list_volume_types(self) -> VolumeTypeList:
        return await self._scope.get("ListVolumeType", "/v1/{project_id}/volume-type", VolumeTypeList)

    async def check_quota(
        self,
        *,
        product_id: str,
        subscription_num: int,
        disk_size: int,
        disk_num: int = 1,
        is_period: bool = False,
        flavor_id: str | None = None,
        deh_id: str | None = None,
    ) -> QuotaCheck:
        return await self._scope.get(
            "CheckQuota", "/v1/{project_id}/check/quota", QuotaCheck,
            {"product_id": product_id, "subscription_num": subscription_num, "disk_size": disk_size,
             "disk_num": disk_num, "is_period": is_period, "flavor_id": flavor_id, "deh_id": deh_id},
        )

    async def list_servers(self, *, server_group_id: str | None = None) -> list[AppServer]:
        async def page(offset: int) -> tuple[int, list[AppServer]]:
            result = await self._scope.get(
                "ListServers", "/v1/{project_id}/app-servers", AppServerPage,
                {"server_group_id": server_group_id, "offset": offset, "limit": PAGE_SIZE},
            )
            return result.count, result.items

        return await _all_pages(page)


class VpcClient:
    def __init__(self, scope: ProjectScoped) -> None:
        self._scope = scope

    async def show_subnet(self, subnet_id: str) -> Subnet:
        envelope = await self._scope.get(
            "ShowSubnet", f"/v1/{{project_id}}/subnets/{segment(subnet_id)}", SubnetEnvelope
        )
        return envelope.subnet
