"""Builds every cloud client from the settings, on one shared `httpx.AsyncClient` per process."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bot.cloud.billing import BillingClient
from bot.cloud.credentials import AkSkCredentials, CloudCredentials, IamPasswordCredentials
from bot.cloud.endpoints import Endpoints, resolve_endpoints
from bot.cloud.http import CallObserver, CloudHttp, RetryPolicy, default_timeout
from bot.cloud.rating import RatingClient
from bot.cloud.workspace import ProjectScoped, VpcClient, WorkspaceClient
from bot.settings import Settings


class NoCredentialsError(Exception):
    """Neither AK/SK nor an IAM user is configured."""


@dataclass
class Cloud:
    """The clients for one cloud account, sharing one connection pool."""

    http_client: httpx.AsyncClient
    endpoints: Endpoints
    credentials: CloudCredentials
    workspace: WorkspaceClient
    vpc: VpcClient
    billing: BillingClient
    region: str
    rating: RatingClient

    async def aclose(self) -> None:
        await self.http_client.aclose()


CLOUD_CONNECTIONS = 16


def new_http_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=default_timeout(settings.cloud_read_timeout_seconds),
        # Every connection is kept open: closing the ones over a keep-alive limit under load means a new
        # TCP connection per call. Few of them: the pool scans its connections on each request, and the
        # cloud's API throttles a tenant long before 16 calls at a time are a limit.
        limits=httpx.Limits(max_connections=CLOUD_CONNECTIONS, max_keepalive_connections=CLOUD_CONNECTIONS),
        follow_redirects=False,
    )


def build_cloud(
    settings: Settings,
    *,
    http_client: httpx.AsyncClient | None = None,
    observers: tuple[CallObserver, ...] = (),
) -> Cloud:
    client = http_client or new_http_client(settings)
    endpoints = resolve_endpoints(
        settings.huaweicloud_region,
        workspace=settings.workspace_endpoint,
        iam=settings.huaweicloud_sdk_iam_endpoint,
        bss=settings.bss_endpoint,
        vpc=settings.vpc_endpoint,
        sts=settings.sts_endpoint,
    )
    retry = RetryPolicy(base_seconds=settings.cloud_retry_base_seconds, attempts=settings.cloud_retry_attempts)

    def endpoint(base: str) -> CloudHttp:
        return CloudHttp(client, base, None, retry, observers)

    credentials: CloudCredentials
    if settings.huaweicloud_sdk_ak is not None and settings.huaweicloud_sdk_sk is not None:
        credentials = AkSkCredentials(
            settings.huaweicloud_sdk_ak,
            settings.huaweicloud_sdk_sk,
            security_token=settings.huaweicloud_sdk_security_token,
            project_id=settings.huaweicloud_sdk_project_id,
            domain_id=settings.huaweicloud_sdk_domain_id,
            region=settings.huaweicloud_region,
            iam=endpoint(endpoints.iam),
            sts=endpoint(endpoints.sts),
        )
    elif (
        settings.huaweicloud_iam_user
        and settings.huaweicloud_iam_password is not None
        and settings.huaweicloud_iam_domain
    ):
        credentials = IamPasswordCredentials(
            user=settings.huaweicloud_iam_user,
            password=settings.huaweicloud_iam_password,
            domain=settings.huaweicloud_iam_domain,
            project_id=settings.huaweicloud_sdk_project_id,
            region=settings.huaweicloud_region,
            iam=endpoint(endpoints.iam),
        )
    else:
        raise NoCredentialsError(
            "No cloud credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or the HUAWEICLOUD_IAM_* "
            "user, or run against the sandbox."
        )
    return Cloud(
        http_client=client,
        endpoints=endpoints,
        credentials=credentials,
        workspace=WorkspaceClient(ProjectScoped(endpoint(endpoints.workspace), credentials)),
        vpc=VpcClient(ProjectScoped(endpoint(endpoints.vpc), credentials)),
        billing=BillingClient(endpoint(endpoints.bss).with_auth(credentials.global_auth())),
        region=settings.huaweicloud_region,
        rating=RatingClient(endpoint(endpoints.bss).with_auth(credentials.global_auth())),
    )
