"""`appserver-bot doctor`: one line per dependency, and a non-zero exit when any of them fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bot.cloud.client import build_cloud
from bot.cloud.errors import AccountIdUnavailable, CloudError, describe
from bot.cloud.iam import ProjectLookupError
from bot.settings import Settings
from bot.store.db import make_engine
from bot.store.schema import schema_status


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<9} {self.detail}"


async def check_cloud(settings: Settings) -> Check:
    if settings.sandbox_mode:
        return Check("cloud", True, "no credentials set: the bot runs against the built-in sandbox")
    cloud = build_cloud(settings)
    try:
        page = await cloud.workspace.list_server_groups_page(limit=1)
        project_id = await cloud.workspace.project_id()
    except CloudError as error:
        return Check("cloud", False, f"{cloud.endpoints.workspace}: {describe(error)}")
    except ProjectLookupError as error:
        return Check("cloud", False, str(error))
    finally:
        await cloud.aclose()
    return Check(
        "cloud", True,
        f"{cloud.credentials.description} accepted: project {project_id} in {settings.huaweicloud_region} "
        f"via {cloud.endpoints.workspace}, {page.count} server group(s)",
    )


async def check_account(settings: Settings) -> Check:
    """Where the account id that billing (a global service) needs comes from."""
    if settings.sandbox_mode:
        return Check("account", True, "no credentials set: the bot runs against the built-in sandbox")
    cloud = build_cloud(settings)
    try:
        return Check("account", True, await cloud.credentials.account_source())
    except AccountIdUnavailable as error:
        return Check("account", False, describe(error))
    finally:
        await cloud.aclose()


async def check_slack(settings: Settings) -> Check:
    if settings.slack_bot_token is None:
        return Check("slack", False, "SLACK_BOT_TOKEN is not set")
    client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    try:
        response = await client.auth_test()
    except SlackApiError as error:
        return Check("slack", False, f"auth.test failed: {error.response.get('error', 'unknown error')}")
    except Exception as error:  # network failures come in many types; the message is enough here
        return Check("slack", False, f"could not reach {settings.slack_api_url}: {type(error).__name__}")
    return Check("slack", True, f"bot {response.get('user_id')} in workspace {response.get('team')!r}")


async def check_database(settings: Settings) -> Check:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        status = schema_status(engine)
    except Exception as error:  # driver errors vary by database
        return Check("database", False, f"cannot connect: {type(error).__name__}: {str(error).splitlines()[0]}")
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if not status.up_to_date:
        return Check("database", False, f"{where}: {status.sentence}")
    return Check("database", True, f"{where}: schema at {status.current}")


CHECKS: tuple[Callable[[Settings], Awaitable[Check]], ...] = (check_cloud, check_slack, check_database, check_account)


async def run_doctor(settings: Settings) -> list[Check]:
    return [await check(settings) for check in CHECKS]
