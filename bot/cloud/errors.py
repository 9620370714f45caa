"""One exception type for every cloud failure, and the plain sentence a Slack user reads for it."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import httpx


class FailureKind(StrEnum):
    HTTP = "http"  # the service answered with a status >= 400
    TIMEOUT = "timeout"  # no answer in time: the request may or may not have been acted on
    CONNECTION = "connection"  # the service could not be reached


class CloudError(Exception):
    def __init__(
        self,
        operation: str,
        kind: FailureKind,
        *,
        status: int | None = None,
        error_code: str | None = None,
        error_msg: str | None = None,
        request_id: str | None = None,
        reached_service: bool = True,
        detail: str | None = None,
    ) -> None:
        self.operation = operation
        self.kind = kind
        self.status = status
        self.error_code = error_code
        self.error_msg = error_msg
        self.request_id = request_id
        self.reached_service = reached_service
        self.detail = detail
        super().__init__(self._summary())

    def _summary(self) -> str:
        parts = [f"{self.operation} failed: {self.kind}"]
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.error_code:
            parts.append(f"code {self.error_code}")
        if self.error_msg:
            parts.append(f"message {self.error_msg!r}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        if self.detail:
            parts.append(self.detail)
        return ", ".join(parts)

    @property
    def throttled(self) -> bool:
        return self.status == 429 or (self.error_code or "").endswith(".0308")

    @property
    def outcome_unknown(self) -> bool:
        """True when a write may have been carried out although we got no success answer."""
        if self.kind is FailureKind.TIMEOUT:
            return True
        if self.kind is FailureKind.CONNECTION:
            return self.reached_service
        return self.status is not None and self.status >= 500

    @property
    def retryable_read(self) -> bool:
        """Worth trying a read (GET) again: throttling, a server-side fault, or no connection."""
        if self.kind is not FailureKind.HTTP:
            return True
        return self.throttled or (self.status is not None and self.status >= 500)

    @property
    def resendable_write(self) -> bool:
        """Safe to send a write again: the gateway throttled it, or it never reached the service."""
        return self.throttled or not self.reached_service


class AccountIdUnavailable(CloudError):
    """The account id (`X-Domain-Id`) for a global service could not be found through IAM (or STS).

    The global service was never called. The lookup already retried what IAM may answer later, so the
    call that needed the id fails at once instead of retrying; `transient` tells a timeout or server
    fault at IAM (worth a later try) from a refusal or an empty answer (it needs the setting).
    """

    def __init__(
        self, cause: CloudError | None, reason: str, *, operation: str = "KeystoneListAuthDomains", via: str = "IAM"
    ) -> None:
        self.cause = cause
        self.reason = reason
        self.via = via  # the services asked, in words
        self.transient = cause is not None and cause.retryable_read
        super().__init__(
            operation, cause.kind if cause else FailureKind.HTTP,
            status=cause.status if cause else None, error_code=cause.error_code if cause else None,
            error_msg=cause.error_msg if cause else None, request_id=cause.request_id if cause else None,
            reached_service=False, detail=reason,
        )

    @property
    def sentence(self) -> str:
        return (f"The bot could not find the cloud account id through {self.via} ({self.reason}); "
                "set HUAWEICLOUD_SDK_DOMAIN_ID to the account id.")

    @property
    def throttled(self) -> bool:
        return False

    @property
    def outcome_unknown(self) -> bool:
        return False  # the global service was never called

    @property
    def retryable_read(self) -> bool:
        return False

    @property
    def resendable_write(self) -> bool:
        return False


def _find_code(data: Any) -> tuple[str | None, str | None]:
    """Look for an error code and message the way the SDK does, nested objects included."""
    if not isinstance(data, dict):
        return None, None
    for code_key, msg_key in (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message")):
        if code_key in data and isinstance(data[code_key], (str, int)):
            msg = data.get(msg_key)
            return str(data[code_key]), str(msg) if msg is not None else None
    for value in data.values():
        code, msg = _find_code(value)
        if code:
            return code, msg
    return None, None


def from_response(operation: str, response: httpx.Response) -> CloudError:
    code: str | None = None
    msg: str | None = None
    body_request_id: str | None = None
    try:
        data = json.loads(response.content or b"null")
    except ValueError:
        data = None
    if isinstance(data, dict):
        code, msg = _find_code(data)
        rid = data.get("request_id")
        body_request_id = str(rid) if rid else None
    if msg is None and not isinstance(data, dict):
        text = response.text.strip()
        msg = text[:300] if text else None
    return CloudError(
        operation,
        FailureKind.HTTP,
        status=response.status_code,
        error_code=code or str(response.status_code),
        error_msg=msg,
        request_id=response.headers.get("X-Request-Id") or body_request_id,
    )


def from_transport(operation: str, error: httpx.TransportError) -> CloudError:
    if isinstance(error, httpx.TimeoutException):
        # A connect or pool timeout means nothing was sent; a read/write timeout may have been acted on.
        sent = not isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout))
        kind = FailureKind.TIMEOUT if sent else FailureKind.CONNECTION
        return CloudError(operation, kind, reached_service=sent, detail=type(error).__name__)
    sent = not isinstance(error, httpx.ConnectError)
    return CloudError(operation, FailureKind.CONNECTION, reached_service=sent, detail=type(error).__name__)


_WRONG_SITE = (
    "The billing service says this account belongs to another Huawei Cloud website; set BSS_ENDPOINT to "
    "https://bss-intl.myhuaweicloud.com for an international account or to https://bss.myhuaweicloud.eu for a "
    "European one, or leave it unset for a Chinese mainland account"
)

# Codes whose meaning is specific enough to say in words of its own.
_CODE_SENTENCES = {
    "APIGW.0301": "The cloud rejected the bot's credentials (the access key, secret key or token is wrong "
    "or expired); an administrator needs to check them",
    "APIGW.0303": "The cloud rejected the bot's request signature, most often because the bot's clock is "
    "more than 15 minutes off; an administrator needs to check the server time",
    "APIGW.0308": "The cloud is throttling the bot's requests right now; it will try again shortly",
    "APIG.0308": "The cloud is throttling the bot's requests right now; it will try again shortly",
    "APIGW.0101": "The cloud does not know this API in this region; check the region and endpoint settings",
    "CBC.99005003": "The account balance is not enough to pay for this order; top up the account, or pay "
    "the order in the Billing Center",
    "CBC.99003106": "The order's status has changed, so it can no longer be paid",
    "CBC.30000010": "The billing service does not recognise this order",
    "CBC.0150": _WRONG_SITE,
    "CBC.0156": _WRONG_SITE,
    "CBC.0154": "The billing service rejected the bot's credentials",
    "CBC.0151": "The bot's account may not use the billing service for this",
    "CBC.0155": "The billing service does not allow this request",
}

_STATUS_SENTENCES = {
    400: "The cloud refused the request as invalid",
    401: "The cloud rejected the bot's credentials; an administrator needs to check them",
    403: "The bot's cloud account is not allowed to do this",
    404: "The cloud could not find what was asked for",
    405: "The cloud does not allow this method here, so the bot is probably calling the wrong endpoint",
    409: "The cloud reports a conflict with the current state of the resource",
    429: "The cloud is throttling the bot's requests right now; it will try again shortly",
    500: "The cloud had an internal error",
    502: "The cloud's gateway got a bad answer from the service",
    503: "The cloud service is unavailable right now",
    504: "The cloud's gateway timed out waiting for the service",
}


def describe(error: CloudError) -> str:
    """A plain sentence for a Slack user, with the cloud's own message and request id when known."""
    if isinstance(error, AccountIdUnavailable):
        return error.sentence
    if error.kind is FailureKind.TIMEOUT:
        sentence = "The cloud did not answer in time"
    elif error.kind is FailureKind.CONNECTION:
        sentence = "The bot could not reach the cloud service"
    elif error.error_code in _CODE_SENTENCES:
        sentence = _CODE_SENTENCES[error.error_code]
    elif error.status in _STATUS_SENTENCES:
        sentence = _STATUS_SENTENCES[error.status]
    elif error.status is not None and error.status >= 500:
        sentence = f"The cloud failed with status {error.status}"
    else:
        sentence = f"The cloud refused the request (status {error.status})"
    details = []
    code = error.error_code
    if error.error_msg and error.error_code not in _CODE_SENTENCES:
        details.append(f"“{error.error_msg.strip().rstrip('.')}”")
    if code and code != str(error.status):
        details.append(code)
    if details:
        sentence += ": " + ", ".join(details)
    if error.request_id:
        sentence += f" (request id {error.request_id})"
    return sentence + "."
