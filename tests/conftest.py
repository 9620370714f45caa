"""Shared fixtures: a sandbox cloud on a real loopback port, and settings pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bot.cloud.client import Cloud, build_cloud
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[tuple[Sandbox, BackgroundServer]]:
    sandbox = Sandbox(SandboxConfig(job_seconds=0.6, order_seconds=0.4, extra_server_groups=150))
    with BackgroundServer(sandbox.app) as server:
        yield sandbox, server


@pytest.fixture
def sandbox(sandbox_session: tuple[Sandbox, BackgroundServer]) -> Sandbox:
    box, _ = sandbox_session
    box.reset()
    return box


@pytest.fixture
def sandbox_url(sandbox: Sandbox, sandbox_session: tuple[Sandbox, BackgroundServer]) -> str:
    return sandbox_session[1].url


def sandbox_settings(url: str, sandbox: Sandbox, **overrides: Any) -> Settings:
    cfg = sandbox.config
    values: dict[str, Any] = {
        "huaweicloud_sdk_ak": cfg.access_key,
        "huaweicloud_sdk_sk": cfg.secret_key,
        "huaweicloud_region": cfg.region,
        "workspace_endpoint": url,
        "bss_endpoint": url,
        "vpc_endpoint": url,
        "huaweicloud_sdk_iam_endpoint": url,
        "cloud_retry_base_seconds": 0.01,
        "database_url": "sqlite://",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(sandbox_url: str, sandbox: Sandbox) -> Settings:
    return sandbox_settings(sandbox_url, sandbox)


@pytest.fixture
async def cloud(settings: Settings) -> AsyncIterator[Cloud]:
    client = build_cloud(settings)
    yield client
    await client.aclose()
