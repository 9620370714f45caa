"""The account id (`X-Domain-Id`) that a global service (BSS) needs on every AK/SK-signed call.

HUAWEICLOUD_SDK_DOMAIN_ID wins when set. Otherwise the id is found once, as the SDK's
`GlobalCredentials.process_auth_params` does: IAM `GET /v3/auth/domains` signed with the same keys (no
X-Project-Id, no X-Domain-Id), and `domains[0].id` is kept for the life of the credentials.
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
# A refused or empty lookup needs a person to act; asking IAM again on every BSS call would only hammer it.
REMEMBER_REFUSAL_SECONDS = 60.0


class AuthDomain(CloudModel):
    id: str
    name: str | None = None
    enabled: bool | None = None


class AuthDomainList(CloudModel):
    domains: list[AuthDomain] = Field(default_factory=list)


def _reason(iam: str, error: CloudError) -> str:
    """Why IAM did not give the id, as a clause (no full stop) for the one-sentence message."""
    if error.kind is FailureKind.TIMEOUT:
        return f"IAM at {iam} did not answer in time"
    if error.kind is FailureKind.CONNECTION:
        return f"IAM at {iam} could not be reached"
    said = [f"status {error.status}"]
    if error.error_code and error.error_code != str(error.status):
        said.append(error.error_code)
    if error.error_msg:
        said.append(f"“{error.error_msg.strip().rstrip('.')}”")
    if error.request_id:
        said.append(f"request id {error.request_id}")
    return "IAM refused the lookup: " + ", ".join(said)


class AccountIdFinder:
    """Finds the account id once per credentials; concurrent first calls share one lookup."""

    def __init__(
        self,
        iam: CloudHttp,
        *,
        configured: str | None = None,
        remember_refusal_seconds: float = REMEMBER_REFUSAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._iam = iam
        self._account_id = configured or None
        self.configured = bool(configured)
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
                raise AccountIdUnavailable(failure.cause, failure.reason)
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
            raise AccountIdUnavailable(None, "IAM listed no account for these access keys")
        log.info("found the account id %s through IAM", domains[0].id)
        return domains[0].id


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
