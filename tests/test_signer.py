"""The signer reproduces the official SDK's known-answer vectors byte for byte."""

import json
from pathlib import Path

import httpx
import pytest

from bot.cloud.signer import AkSkAuth, canonical_query, canonical_uri, parse_authorization, query_value
from bot.sandbox import Sandbox

VECTORS = json.loads((Path(__file__).parent / "fixtures" / "huawei-signing-vectors.json").read_text())


def _request(case: dict) -> httpx.Request:
    params = [(k, query_value(v)) for k, v in case["query"]]
    url = httpx.URL(f"https://{VECTORS['host']}{case['path']}", params=params)
    headers = {k: v for k, v in case["headers_signed"].items() if k.lower() not in ("x-project-id", "x-security-token")}
    return httpx.Request(case["method"], url, headers=headers, content=case["body"].encode())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_vector_authorization_matches_official_signer(case: dict) -> None:
    auth = AkSkAuth(VECTORS["ak"], VECTORS["sk"], project_id=VECTORS["project_id"],
                    security_token=case["security_token"])
    request = _request(case)
    flow = auth.sync_auth_flow(request)
    signed = next(flow)
    assert signed.headers["Authorization"] == case["authorization"]
    assert str(signed.url) == case["url_sent"]
    for name, value in case["headers_signed"].items():
        assert signed.headers[name] == value


def test_canonical_uri_always_ends_with_slash_and_escapes_segments() -> None:
    assert canonical_uri("/v1/p/app-servers") == "/v1/p/app-servers/"
    assert canonical_uri("/v1/p/x%20y/") == "/v1/p/x%20y/"
    assert canonical_uri("/a/b~c") == "/a/b~c/"


def test_canonical_query_sorts_by_key_then_value() -> None:
    assert canonical_query([("b", "2"), ("a", "z"), ("a", "y x")]) == "a=y%20x&a=z&b=2"
    assert canonical_query([]) == ""


def test_canonical_query_sorts_the_raw_pairs_before_escaping_them() -> None:
    # Raw, "." < "/" < "0"; escaped, "%2F" would come before ".".
    assert canonical_query([("x0", "3"), ("x/", "2"), ("x.", "1")]) == "x.=1&x%2F=2&x0=3"
    assert canonical_query([("k", "a/b"), ("k", "a.b")]) == "k=a.b&k=a%2Fb"


async def test_the_sandbox_verifies_what_the_signer_sends_for_such_a_query(sandbox: Sandbox, sandbox_url: str) -> None:
    cfg = sandbox.config
    auth = AkSkAuth(cfg.access_key, cfg.secret_key, project_id=cfg.project_id)
    params = [("x0", "3"), ("x/", "2"), ("x.", "1"), ("tag", "a/b"), ("tag", "a.b"), ("limit", "10")]
    async with httpx.AsyncClient(base_url=sandbox_url) as client:
        response = await client.get(f"/v1/{cfg.project_id}/app-servers", params=params, auth=auth)
    assert response.status_code == 200, response.text
    assert response.request.url.query == b"limit=10&tag=a.b&tag=a%2Fb&x.=1&x%2F=2&x0=3"  # sent as signed


def test_non_json_body_is_sent_unsigned_payload() -> None:
    auth = AkSkAuth("AK", "SK", project_id="p")
    request = httpx.Request("POST", "https://h/x", headers={"Content-Type": "text/plain"}, content=b"hi")
    signed = next(auth.sync_auth_flow(request))
    assert signed.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-sdk-content-sha256" in parse_authorization(signed.headers["Authorization"])["SignedHeaders"]


def test_repr_hides_keys() -> None:
    assert "SECRETKEY" not in repr(AkSkAuth("AKID", "SECRETKEY"))
    assert "SECRETKEY" not in repr(AkSkAuth("AKID", "SECRETKEY").with_domain("d"))


def test_a_global_service_signs_its_account_id() -> None:
    signed = next(AkSkAuth("AK", "SK").with_domain("acc-1").sync_auth_flow(httpx.Request("GET", "https://bss/v2/x")))
    assert signed.headers["X-Domain-Id"] == "acc-1" and "X-Project-Id" not in signed.headers
    assert "x-domain-id" in parse_authorization(signed.headers["Authorization"])["SignedHeaders"].split(";")
