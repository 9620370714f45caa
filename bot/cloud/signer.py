"""AK/SK request signing (SDK-HMAC-SHA256), exactly as the official Huawei Cloud SDK signer does it.

The signature covers the method, the canonical path (always ending in `/`), the query sorted then escaped,
every signed header and the SHA-256 of the body. The gateway rebuilds the same string and compares.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

import httpx

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers the HTTP library adds on the wire. The SDK signs only the headers it set itself (its
# transport adds these after signing), and a proxy may rewrite hop-by-hop ones, so they stay unsigned.
TRANSPORT_HEADERS = frozenset({"accept", "accept-encoding", "connection", "content-length"})


@dataclass(frozen=True)
class SignedParts:
    canonical_request: str
    string_to_sign: str
    signed_headers: str
    signature: str


def canonical_uri(path: str) -> str:
    segments = [quote(segment, safe="~") for segment in unquote(path).split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Sort the raw (key, value) pairs, then escape them, as the SDK does: `x.`, `x/` and `x0` sort differently
    once `/` is `%2F`, and the gateway sorts the decoded query the same way."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(pairs))


def query_value(value: object) -> str:
    """Render a query value the way the SDK does (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    if not body:
        return EMPTY_BODY_SHA256
    for name, value in headers.items():
        if name.lower() == "x-sdk-content-sha256":
            return value
    return hashlib.sha256(body).hexdigest()


def sign_parts(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secret_key: str,
    signed_header_names: Iterable[str] | None = None,
) -> SignedParts:
    """Compute the signature. `headers` must already contain X-Sdk-Date and Host."""
    lowered = {name.lower(): str(value).strip() for name, value in headers.items()}
    if signed_header_names is None:
        names = sorted(n for n in lowered if "_" not in n and n not in TRANSPORT_HEADERS)
    else:
        names = sorted(n.lower() for n in signed_header_names)
    canonical_headers = "".join(f"{n}:{lowered.get(n, '')}\n" for n in names)
    signed = ";".join(names)
    request = "\n".join(
        [method.upper(), canonical_uri(path), canonical_query(query), canonical_headers, signed,
         payload_hash(headers, body)]
    )
    date = lowered["x-sdk-date"]
    to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(request.encode()).hexdigest()}"
    signature = hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return SignedParts(request, to_sign, signed, signature)


def authorization_header(access_key: str, parts: SignedParts) -> str:
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={parts.signed_headers}, Signature={parts.signature}"


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split `SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..` into its fields."""
    if not value.startswith(ALGORITHM + " "):
        return None
    fields: dict[str, str] = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        key, _, val = part.strip().partition("=")
        fields[key] = val
    return fields if {"Access", "SignedHeaders", "Signature"} <= fields.keys() else None


def utc_now() -> datetime:
    return datetime.now(UTC)


class AkSkAuth(httpx.Auth):
    """httpx authentication that signs each request with an access key / secret key pair.

    Adds `X-Project-Id` (or `X-Domain-Id` for global services) and `X-Security-Token` for temporary
    credentials before signing, so both are covered by the signature, as the SDK does.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        project_id: str | None = None,
        domain_id: str | None = None,
        security_token: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._access_key = access_key
        self._secret_key = secret_key
        self.project_id = project_id
        self.domain_id = domain_id
        self._security_token = security_token
        self._clock = clock

    def __repr__(self) -> str:  # never show the keys
        return f"AkSkAuth(project_id={self.project_id!r}, domain_id={self.domain_id!r})"

    def with_project(self, project_id: str | None) -> AkSkAuth:
        return AkSkAuth(self._access_key, self._secret_key, project_id=project_id,
                        domain_id=self.domain_id, security_token=self._security_token, clock=self._clock)

    def with_domain(self, domain_id: str | None) -> AkSkAuth:
        """The same keys for a global service: `X-Domain-Id` instead of a project."""
        return AkSkAuth(self._access_key, self._secret_key, domain_id=domain_id,
                        security_token=self._security_token, clock=self._clock)

    def sign(self, request: httpx.Request) -> None:
        headers = request.headers
        if self.project_id:
            headers["X-Project-Id"] = self.project_id
        elif self.domain_id:
            headers["X-Domain-Id"] = self.domain_id
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        if DATE_HEADER not in headers:
            headers[DATE_HEADER] = self._clock().strftime(DATE_FORMAT)
        content_type = headers.get("Content-Type", "")
        if content_type and not content_type.startswith(("application/json", "application/bson")):
            headers["X-Sdk-Content-Sha256"] = "UNSIGNED-PAYLOAD"
        pairs = parse_qsl(request.url.query.decode(), keep_blank_values=True)
        query = canonical_query(pairs)
        # The query sent is exactly the canonical one, as the SDK does.
        request.url = request.url.copy_with(query=query.encode() if query else None)
        parts = sign_parts(
            method=request.method,
            path=request.url.raw_path.split(b"?")[0].decode(),
            query=pairs,
            headers=dict(headers.items()),
            body=request.content,
            secret_key=self._secret_key,
        )
        for name in parts.signed_headers.split(";"):
            headers[name] = headers[name].strip()
        headers["Authorization"] = authorization_header(self._access_key, parts)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request
