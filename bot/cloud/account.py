"""The account id (`X-Domain-Id`) that a global service (BSS) needs on every AK/SK-signed call.

HUAWEICLOUD_SDK_DOMAIN_ID wins when set. Otherwise the id is found once, as the SDK's
`GlobalCredentials.process_auth_params` does: IAM `GET /v3/auth/domains` signed with the same keys (no
X-Project-Id, no X-Domain-Id) gives `domains[0].id`; when IAM lists no domain, STS `GET /v5/caller-identity`,
signed the same way, gives `account_id`. The id is kept for the life of the credentials.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator

import httpx
from pydantic import Field, ValidationError

from bot.cloud.errors import AccountIdUnavailable, CloudError, FailureKind
from bot.cloud.http import CloudHttp
from bot.cloud.models import CloudModel
from bot.cloud.signer import AkSkAuth

log = logging.getLogger(__name__)

LIST_AUTH_DOMAINS = "/v3/auth/domains"
CALLER_IDENTITY = "/v5/caller-identity"
NO_DOMAIN = "IAM listed no account for these access keys"
# A refused or empty lookup needs a person to act; asking IAM again on every BSS call would only hammer it.
REMEMBER_REFUSAL_SECONDS = 60.0


class AuthDomain(CloudModel):
    id: str
    name: str | None = None
    enabled: bool | None = None


class AuthDomainList(CloudModel):
    domains: list[AuthDomain] = Field(default_factory=list)


class CallerIdentity(CloudModel):
    """STS GetCallerIdentity's answer; the SDK reads only `account_id`."""

    account_id: str | None = None
    principal_id: str | None = None
    principal_type: str | None = None


def _reason(base_url: str, error: CloudError, service: str = "IAM") -> str:
    """Why a service did not give the id, as a clause (no full stop) for the one-sentence message."""
    if error.kind is FailureKind.TIMEOUT:
        return f"{service} at {base_url} did not answer in time"
    if error.kind is FailureKind.CONNECTION:
        return f"{service} at {base_url} could not be reached"
    said = [f"status {error.status}"]
    if error.error_code and error.error_code != str(error.status):
        said.append(error.error_code)
    if error.error_msg:
        said.append(f"“{error.error_msg.strip().rstrip('.')}”")
    if error.request_id:
        said.append(f"request id {error.request_id}")
    return f"{service} refused the lookup: " + ", ".join(said)


class AccountIdFinder:
    """Finds the account id once per credentials; concurrent first calls share one lookup."""

    def __init__(
        self,
        iam: CloudHttp,
        *,
        sts: CloudHttp | None = None,
        configured: str | None = None,
        remember_refusal_seconds: float = REMEMBER_REFUSAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._iam = iam
        self._sts = sts
        self._account_id = configured or None
        self.configured = bool(configured)
        self.found_through: str | None = None  # "IAM" or "STS" once looked up
        self._remember_refusal = remember_refusal_seconds
        self.clock = clock
        self._lock = asyncio.Lock()
        self._failure: AccountIdUnavailable | None = None
        self._refused_until = 0.0
        self._lookups_done = 0

    async def account_id(self) -> str:
        if self._account_id:
            return self._account_id
        seen = self._lookups_done
        async with self._lock:
            if self._account_id:
                return self._account_id
            failure = self._failure
            # Share the answer of a lookup that ended while this call waited, and a recent refusal.
            if failure is not None and (self._lookups_done != seen or self.clock() < self._refused_until):
                raise AccountIdUnavailable(failure.cause, failure.reason, operation=failure.operation,
                                           via=failure.via)
            try:
                self._account_id = await self._look_up()
            except AccountIdUnavailable as error:
                self._failure = error
                self._refused_until = self.clock() + (0.0 if error.transient else self._remember_refusal)
                raise
            finally:
                self._lookups_done += 1
            self._failure = None
            return self._account_id

    async def _look_up(self) -> str:
        try:
            response = await self._iam.call("KeystoneListAuthDomains", "GET", LIST_AUTH_DOMAINS)
        except CloudError as error:
            log.warning("finding the account id through IAM failed: %s", error)
            raise AccountIdUnavailable(error, _reason(self._iam.base_url, error)) from None
        try:
            domains = AuthDomainList.model_validate(response.json()).domains
        except (ValueError, ValidationError):
            raise AccountIdUnavailable(None, "IAM's answer listing the accounts could not be read") from None
        if not domains:
            return await self._ask_sts()
        log.info("found the account id %s through IAM", domains[0].id)
        self.found_through = "IAM"
        return domains[0].id

    async def _ask_sts(self) -> str:
        """IAM listed no domain: the SDK then asks STS who the caller is."""
        if self._sts is None:
            raise AccountIdUnavailable(None, NO_DOMAIN)
        failed = {"operation": "GetCallerIdentity", "via": "IAM or STS"}
        try:
            response = await self._sts.call("GetCallerIdentity", "GET", CALLER_IDENTITY)
        except CloudError as error:
            log.warning("finding the account id through STS failed: %s", error)
            reason = f"{NO_DOMAIN}, and {_reason(self._sts.base_url, error, 'STS')}"
            raise AccountIdUnavailable(error, reason, **failed) from None
        try:
            account_id = CallerIdentity.model_validate(response.json()).account_id
        except (ValueError, ValidationError):
            account_id = None
        if not account_id:
            raise AccountIdUnavailable(None, f"{NO_DOMAIN}, and STS's answer named no account", **failed)
        log.info("found the account id %s through STS", account_id)
        self.found_through = "STS"
        return account_id


class GlobalServiceAuth(httpx.Auth):
    """AK/SK signing for a global service: a signed `X-Domain-Id`, found through IAM when not configured."""

    requires_request_body = True  # the signature covers the body's hash

    def __init__(self, signer: AkSkAuth, finder: AccountIdFinder) -> None:
        self._signer = signer
        self._finder = finder

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("finding the account id needs an httpx.AsyncClient")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        domain_id = await self._finder.account_id()
        self._signer.with_domain(domain_id).sign(request)  # the header is set before signing, so it is signed
        yield request
