"""Sending one cloud call: auth, explicit timeouts, typed errors and the retry policy.

Reads (GET, and POSTs the caller marks `idempotent=True` because they only read, such as the BSS
price inquiries) are retried on throttling, server faults and connection errors with exponential backoff
and jitter. Writes are never resent, because CreateAppServers and PayOrders have no idempotency key:
the only exceptions are an explicit throttling answer (the gateway refused the call) and a connection
that was never established (nothing was sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from bot import __version__
from bot.cloud.errors import CloudError, from_response, from_transport
from bot.cloud.signer import query_value

log = logging.getLogger(__name__)

USER_AGENT = f"appserver-bot/{__version__}"
# Observers see (operation, seconds, outcome) for every attempt; outcome is "ok" or an error code.
CallObserver = Callable[[str, float, str], None]


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_seconds: float = 30.0
    attempts: int = 4


def default_timeout(read_seconds: float = 35.0) -> httpx.Timeout:
    # The gateway waits 30 s for the backend, so a read timeout just above that.
    return httpx.Timeout(connect=5.0, read=read_seconds, write=10.0, pool=5.0)


def _should_retry(idempotent: bool) -> Callable[[BaseException], bool]:
    def check(error: BaseException) -> bool:
        if not isinstance(error, CloudError):
            return False
        if idempotent:
            return error.retryable_read
        return error.resendable_write

    return check


class CloudHttp:
    """One service endpoint on the process's shared `httpx.AsyncClient`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        auth: httpx.Auth | None,
        retry: RetryPolicy,
        observers: tuple[CallObserver, ...] = (),
    ) -> None:
        self._client = client
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self._retry = retry
        self._observers = observers

    def with_auth(self, auth: httpx.Auth | None) -> CloudHttp:
        """The same endpoint and client, signing with other credentials."""
        return CloudHttp(self._client, self.base_url, auth, self._retry, self._observers)

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send the call; `idempotent=True` marks a POST that only reads, so it may be retried like a GET."""
        idempotent = idempotent or method.upper() in ("GET", "HEAD")
        retrying = AsyncRetrying(
            retry=retry_if_exception(_should_retry(idempotent)),
            wait=wait_exponential_jitter(
                multiplier=self._retry.base_seconds, max=self._retry.max_seconds, jitter=self._retry.base_seconds
            ),
            stop=stop_after_attempt(self._retry.attempts),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "cloud call %s failed (attempt %d), retrying: %s",
                operation, state.attempt_number, state.outcome.exception() if state.outcome else "",
            ),
        )
        async for attempt in retrying:
            with attempt:
                return await self._send_once(operation, method, path, params, json, headers)
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    async def _send_once(
        self,
        operation: str,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        clean_params = {k: query_value(v) for k, v in (params or {}).items() if v is not None}
        request_headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        request_headers.update(headers or {})
        started = time.perf_counter()
        try:
            response = await self._client.request(
                method,
                self.base_url + path,
                params=clean_params or None,
                json=body,
                headers=request_headers,
                auth=self.auth if self.auth is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as transport_error:
            error = from_transport(operation, transport_error)
            self._observe(operation, started, error.kind.value)
            raise error from None
        if response.status_code >= 400:
            error = from_response(operation, response)
            self._observe(operation, started, error.error_code or str(response.status_code))
            raise error
        self._observe(operation, started, "ok")
        return response

    def _observe(self, operation: str, started: float, outcome: str) -> None:
        elapsed = time.perf_counter() - started
        for observer in self._observers:
            observer(operation, elapsed, outcome)
