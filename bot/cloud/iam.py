"""IAM: password tokens (cached, renewed before expiry and once on 401) and the project-id lookup.

A project's APIs (WorkspaceApp, VPC) take a token scoped to the project; a global service (BSS) takes
only one scoped to the account (`"scope": {"domain": …}`). Each scope has its own provider.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from bot import logs
from bot.cloud.errors import CloudError, FailureKind
from bot.cloud.http import CloudHttp
from bot.cloud.models import ProjectList, parse_cloud_time
from bot.cloud.signer import utc_now

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"
SUBJECT_TOKEN_HEADER = "X-Subject-Token"
# Tokens live 24 h; take a new one well before the end so no call goes out with a dying token.
RENEW_BEFORE = timedelta(hours=1)


class ProjectLookupError(Exception):
    """The project id could not be found; the message says what to set."""


@dataclass
class _Token:
    value: str
    expires_at: datetime
    project_id: str | None
    account_id: str | None = None


class TokenProvider:
    """Fetches and caches an IAM token for one user, scoped to a project or (`account_scoped`) to the account."""

    def __init__(
        self,
        iam: CloudHttp,
        *,
        user: str,
        password: SecretStr,
        domain: str,
        project_id: str | None,
        project_name: str,
        account_scoped: bool = False,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._iam = iam
        self._user = user
        self._password = password
        logs.add_secret(password.get_secret_value())
        self._domain = domain
        self._project_id = project_id
        self._project_name = project_name
        self.account_scoped = account_scoped
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    def _body(self) -> dict[str, Any]:
        scope: dict[str, Any]
        if self.account_scoped:
            scope = {"domain": {"name": self._domain}}
        else:
            scope = {"project": {"id": self._project_id} if self._project_id else {"name": self._project_name}}
        return {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._user,
                            "password": self._password.get_secret_value(),
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": scope,
            }
        }

    def _fresh(self, token: _Token | None) -> bool:
        return token is not None and self._clock() < token.expires_at - RENEW_BEFORE

    async def token(self, *, replacing: str | None = None) -> str:
        """A valid token; `replacing` names one the service refused, so a new one is fetched."""
        async with self._lock:
            current = self._token
            if current is not None and current.value != replacing and self._fresh(current):
                return current.value
            self._token = await self._fetch()
            return self._token.value

    async def project_id(self) -> str:
        await self.token()
        assert self._token is not None
        if not self._token.project_id:
            raise ProjectLookupError(
                "The IAM token carries no project; set HUAWEICLOUD_SDK_PROJECT_ID."
            )
        return self._token.project_id

    async def account_id(self) -> str | None:
        """The account (domain) id the token names, when IAM says it."""
        await self.token()
        assert self._token is not None
        return self._token.account_id

    async def _fetch(self) -> _Token:
        response = await self._iam.call(
            "CreateToken", "POST", "/v3/auth/tokens", params={"nocatalog": "true"}, json=self._body()
        )
        self.fetch_count += 1
        value = response.headers.get(SUBJECT_TOKEN_HEADER)
        if not value:
            raise CloudError("CreateToken", FailureKind.HTTP, status=response.status_code,
                             error_msg="IAM answered without an X-Subject-Token header")
        logs.add_secret(value)
        body = response.json().get("token", {})
        expires = parse_cloud_time(body.get("expires_at")) or self._clock() + timedelta(hours=24)
        project = body.get("project") or {}
        account = body.get("domain") or project.get("domain") or {}
        log.info("obtained an IAM token for user %s scoped to the %s, valid until %s", self._user,
                 "account" if self.account_scoped else "project", expires.isoformat())
        project_id = None if self.account_scoped else project.get("id") or self._project_id
        return _Token(value, expires, project_id, account.get("id"))


class IamTokenAuth(httpx.Auth):
    """Sends `X-Auth-Token`; on a 401 takes a new token once and sends the request again."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("IAM token authentication needs an httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._provider.token()
        request.headers[TOKEN_HEADER] = token
        response = yield request
        if response.status_code == 401:
            # The gateway refused the token, so the call was not acted on: one retry is safe.
            await response.aread()
            request.headers[TOKEN_HEADER] = await self._provider.token(replacing=token)
            yield request


async def lookup_project_id(iam: CloudHttp, region: str) -> str:
    """`GET /v3/projects?name=<region>`: exactly one project must answer to the region's name."""
    response = await iam.call("KeystoneListProjects", "GET", "/v3/projects", params={"name": region})
    projects = ProjectList.model_validate(response.json()).projects
    if not projects:
        raise ProjectLookupError(
            f"No IAM project is named {region!r}; check HUAWEICLOUD_REGION or set HUAWEICLOUD_SDK_PROJECT_ID."
        )
    if len(projects) > 1:
        names = ", ".join(sorted(p.id for p in projects))
        raise ProjectLookupError(
            f"Several IAM projects answer to {region!r} ({names}); set HUAWEICLOUD_SDK_PROJECT_ID to one of them."
        )
    return projects[0].id
