"""Which host answers which service in a region, as the official SDK's region tables have it."""

from __future__ import annotations

from dataclasses import dataclass

# WorkspaceApp: these regions are served on `appstream.<region>`, the rest on `workspace.<region>`.
APPSTREAM_HOST_REGIONS = frozenset({"cn-north-4", "cn-north-9", "cn-east-3", "cn-south-1", "cn-southwest-2"})
WORKSPACE_HOST_REGIONS = frozenset({
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "af-south-1", "af-north-1", "la-south-2",
    "la-north-2", "sa-brazil-1", "me-east-1", "tr-west-1", "cn-east-5", "cn-north-11",
})
KNOWN_REGIONS = APPSTREAM_HOST_REGIONS | WORKSPACE_HOST_REGIONS
BSS_GLOBAL_ENDPOINT = "https://bss.myhuaweicloud.com"

# IAM: the SDK's `get_iam_endpoint_by_id` table. A region missing from it (af-north-1, cn-north-11, ...)
# is served by the global IAM host, not by an `iam.<region>` host that may not exist.
IAM_REGIONS = frozenset({
    "cn-north-1", "cn-north-2", "cn-north-4", "cn-north-9", "cn-north-12", "cn-east-2", "cn-east-3", "cn-east-4",
    "cn-east-5", "cn-south-1", "cn-south-2", "cn-southwest-2", "ap-southeast-1", "ap-southeast-2",
    "ap-southeast-3", "ap-southeast-4", "af-south-1", "sa-brazil-1", "la-south-2", "la-north-2", "na-mexico-1",
    "eu-west-0", "my-kualalumpur-1", "ru-moscow-1", "me-east-1", "ae-ad-1", "tr-west-1",
})
IAM_GLOBAL_ENDPOINT = "https://iam.myhuaweicloud.com"

# STS (asked for the account id when IAM lists none): the SDK's `get_sts_endpoint_by_id` table; a region
# missing from it is served by the SDK's default STS host, in cn-north-4.
STS_REGIONS = frozenset({
    "cn-north-4", "cn-south-1", "cn-east-3", "cn-southwest-2", "ap-southeast-1", "ap-southeast-3",
    "ap-southeast-2", "sa-brazil-1", "la-south-2", "af-south-1", "ap-southeast-4", "tr-west-1",
})
STS_DEFAULT_ENDPOINT = "https://sts.cn-north-4.myhuaweicloud.com"


@dataclass(frozen=True)
class Endpoints:
    workspace: str
    iam: str
    bss: str
    vpc: str
    sts: str


def workspace_endpoint(region: str) -> str:
    prefix = "appstream" if region in APPSTREAM_HOST_REGIONS else "workspace"
    return f"https://{prefix}.{region}.myhuaweicloud.com"


def iam_endpoint(region: str) -> str:
    return f"https://iam.{region}.myhuaweicloud.com" if region in IAM_REGIONS else IAM_GLOBAL_ENDPOINT


def sts_endpoint(region: str) -> str:
    return f"https://sts.{region}.myhuaweicloud.com" if region in STS_REGIONS else STS_DEFAULT_ENDPOINT


def resolve_endpoints(
    region: str,
    *,
    workspace: str | None = None,
    iam: str | None = None,
    bss: str | None = None,
    vpc: str | None = None,
    sts: str | None = None,
) -> Endpoints:
    """The region's default hosts; any explicit override wins (trailing slashes removed)."""
    return Endpoints(
        workspace=(workspace or workspace_endpoint(region)).rstrip("/"),
        iam=(iam or iam_endpoint(region)).rstrip("/"),
        bss=(bss or BSS_GLOBAL_ENDPOINT).rstrip("/"),
        vpc=(vpc or f"https://vpc.{region}.myhuaweicloud.com").rstrip("/"),
        sts=(sts or sts_endpoint(region)).rstrip("/"),
    )
