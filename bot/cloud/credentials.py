"""How the bot proves who it is to the cloud: AK/SK signing or an IAM password token.

Both give an `httpx.Auth` for project-scoped services (WorkspaceApp, VPC) and one for global services
(BSS), and both know the project id: from settings, or looked up once through IAM. With AK/SK a global
service also needs the account id (`X-Domain-Id`): from settings, or found once through IAM (or STS when
IAM lists none); an IAM user sends a second token, scoped to the account, which implies it.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

import httpx
from pydantic import SecretStr

from bot import logs
from bot.cloud.account import AccountIdFinder, GlobalServiceAuth
from bot.cloud.http import CloudHttp
from bot.cloud.iam import IamTokenAuth, TokenProvider, lookup_project_id
from bot.cloud.signer import AkSkAuth


class CloudCredentials(ABC):
    def __init__(self, configured_project_id: str | None) -> None:
        self._project_id = configured_project_id
        self._lock = asyncio.Lock()

    async def project_id(self) -> str:
        if self._project_id:
            return self._project_id
        async with self._lock:
            if not self._project_id:
                self._project_id = await self._look_up_project_id()
            return self._project_id

    @abstractmethod
    async def _look_up_project_id(self) -> str: ...

    @abstractmethod
    def project_auth(self, project_id: str) -> httpx.Auth: ...

    @abstractmethod
    def global_auth(self) -> httpx.Auth: ...

    @abstractmethod
    async def account_source(self) -> str:
        """Where global services' account id comes from, in words; raises `AccountIdUnavailable`."""

    @property
    @abstractmethod
    def description(self) -> str: ...


class AkSkCredentials(CloudCredentials):
    def __init__(
        self,
        access_key: SecretStr,
        secret_key: SecretStr,
        *,
        security_token: SecretStr | None,
        project_id: str | None,
        domain_id: str | None,
        region: str,
        iam: CloudHttp,
        sts: CloudHttp,
    ) -> None:
        super().__init__(project_id)
        for secret in (access_key, secret_key, security_token):
            logs.add_secret(secret.get_secret_value() if secret else None)
        self._signer = AkSkAuth(
            access_key.get_secret_value(),
            secret_key.get_secret_value(),
            security_token=security_token.get_secret_value() if security_token else None,
        )
        self._region = region
        # The IAM lookups themselves are signed without a project id or account id, as the SDK does.
        self._iam = iam.with_auth(self._signer)
        self.account = AccountIdFinder(self._iam, sts=sts.with_auth(self._signer), configured=domain_id)
        self._temporary = security_token is not None

    async def _look_up_project_id(self) -> str:
        return await lookup_project_id(self._iam, self._region)

    def project_auth(self, project_id: str) -> httpx.Auth:
        return self._signer.with_project(project_id)

    def global_auth(self) -> httpx.Auth:
        return GlobalServiceAuth(self._signer, self.account)

    async def account_source(self) -> str:
        if self.account.configured:
            return f"account id {await self.account.account_id()} set by HUAWEICLOUD_SDK_DOMAIN_ID"
        account_id = await self.account.account_id()
        return f"account id {account_id} found through {self.account.found_through or 'IAM'}"

    @property
    def description(self) -> str:
        return "temporary AK/SK" if self._temporary else "AK/SK"


class IamPasswordCredentials(CloudCredentials):
    def __init__(
        self,
        *,
        user: str,
        password: SecretStr,
        domain: str,
        project_id: str | None,
        region: str,
        iam: CloudHttp,
    ) -> None:
        super().__init__(project_id)
        self.tokens = TokenProvider(
            iam, user=user, password=password, domain=domain, project_id=project_id, project_name=region
        )
        # Billing is a global service: it takes only a token scoped to the account, cached and renewed alike.
        self.account_tokens = TokenProvider(
            iam, user=user, password=password, domain=domain, project_id=project_id, project_name=region,
            account_scoped=True,
        )
        self._auth = IamTokenAuth(self.tokens)
        self._account_auth = IamTokenAuth(self.account_tokens)
        self._user = user
        self._domain = domain

    async def _look_up_project_id(self) -> str:
        return await self.tokens.project_id()

    def project_auth(self, project_id: str) -> httpx.Auth:
        return self._auth

    def global_auth(self) -> httpx.Auth:
        return self._account_auth

    async def account_source(self) -> str:
        account_id = await self.account_tokens.account_id()
        named = f" (account id {account_id})" if account_id else ""
        return f"billing uses an IAM token of {self._user} scoped to the account {self._domain}{named}"

    @property
    def description(self) -> str:
        return f"IAM user {self._user}"
