"""Shared fixtures: a sandbox cloud on a real loopback port, and settings pointing at it."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text

from bot.cloud.client import Cloud, build_cloud
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings
from bot.store.db import make_engine
from bot.store.schema import migrate
from tests.fake_slack import FakeSlack

# The machine is shared and noisy: judge properties, never the time one example takes.
hypothesis_settings.register_profile("default", deadline=None)
hypothesis_settings.load_profile("default")


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


@pytest.fixture
def fake_slack() -> Iterator[tuple[FakeSlack, str]]:
    """A fake Slack Web API on loopback, and its base URL for SLACK_API_URL."""
    fake = FakeSlack()
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


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
        "sts_endpoint": url,
        "cloud_retry_base_seconds": 0.01,
        "database_url": "sqlite://",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def iam_settings(url: str, sandbox: Sandbox, **overrides: Any) -> Settings:
    """Settings that log in with the sandbox's IAM user instead of AK/SK."""
    cfg = sandbox.config
    values: dict[str, Any] = {
        "huaweicloud_sdk_ak": None, "huaweicloud_sdk_sk": None, "huaweicloud_iam_user": cfg.iam_user,
        "huaweicloud_iam_password": cfg.iam_password, "huaweicloud_iam_domain": cfg.iam_domain,
    }
    values.update(overrides)
    return sandbox_settings(url, sandbox, **values)


@pytest.fixture
def settings(sandbox_url: str, sandbox: Sandbox) -> Settings:
    return sandbox_settings(sandbox_url, sandbox)


@pytest.fixture
async def cloud(settings: Settings) -> AsyncIterator[Cloud]:
    client = build_cloud(settings)
    yield client
    await client.aclose()


# Databases ---------------------------------------------------------------------------------------


DEFAULT_TEST_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    """The PostgreSQL to test against, or a skip (a failure when CI demands PostgreSQL)."""
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES)
    try:
        probe = create_engine(url, connect_args={"connect_timeout": 3})
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
        probe.dispose()
    except Exception as error:
        reason = f"PostgreSQL tests need a server at {url} ({type(error).__name__}); set TEST_POSTGRES_URL"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema of its own in the test PostgreSQL, dropped afterwards."""
    base = postgres_base_url()
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


# The PostgreSQL twin of each store test is left out of the fast loop (`pytest -m "not slow"`): the
# SQLite run checks the same logic there, and the full suite (CI) runs both.
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bot.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    db = make_engine(database_url)
    migrate(db)
    yield db
    db.dispose()


# The running bot for whole-flow tests; defined beside the steps those tests share.
from tests.flows import bot, slack  # noqa: E402, F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts the whole bot (its server, tracker and courier, a fake Slack) is left out of the
    fast loop: the flows are CI's and the final check's, the fast loop is for the parts."""
    for item in items:
        if "bot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
