"""`appserver-bot doctor`: one line per check (ok, warn or FAIL), and a non-zero exit when any fails.

A check is an async function from the settings to a `Check`; add one to `CHECKS` to add a line. The
doctor changes nothing: it reads from Slack and the cloud, and never creates or migrates a database.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from bot.cloud.client import build_cloud
from bot.cloud.errors import AccountIdUnavailable, CloudError, describe
from bot.cloud.iam import ProjectLookupError
from bot.settings import Settings, StartupError
from bot.slack.access import BOT_SCOPES, channel_access, error_code, granted_scopes, refused
from bot.startup import NETWORK_ERRORS, bot_token_refused
from bot.store.db import describe_url, is_sqlite, open_database
from bot.store.schema import schema_status


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passes, but part of the bot will not work until it is fixed

    def line(self) -> str:
        mark = "FAIL" if not self.ok else "warn" if self.warning else "ok  "
        return f"{mark}  {self.name:<9} {self.detail}"


# Cloud ---------------------------------------------------------------------------------------------


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
    """Where the account id that billing (a global service) needs comes from, or the token it takes."""
    if settings.sandbox_mode:
        return Check("account", True, "no credentials set: the bot runs against the built-in sandbox")
    cloud = build_cloud(settings)
    try:
        return Check("account", True, await cloud.credentials.account_source())
    except AccountIdUnavailable as error:
        return Check("account", False, describe(error))
    except CloudError as error:  # an IAM user's token scoped to the account was refused
        return Check("account", False, f"{cloud.endpoints.iam}: {describe(error)}")
    finally:
        await cloud.aclose()


# Slack ---------------------------------------------------------------------------------------------


class SlackUnusable(Exception):
    """The bot token does not work; the message says why (the `slack` line has the details)."""


def slack_client(settings: Settings) -> AsyncWebClient:
    if settings.slack_bot_token is None:
        raise SlackUnusable("SLACK_BOT_TOKEN is not set")
    return AsyncWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)


async def slack_identity(settings: Settings) -> tuple[AsyncWebClient, dict[str, object], frozenset[str] | None]:
    """The client, `auth.test`'s answer and the granted scopes; `SlackUnusable` when the token does not work."""
    client = slack_client(settings)
    try:
        response = await client.auth_test()
    except SlackApiError as error:
        if refused(error):
            raise SlackUnusable(str(bot_token_refused(error_code(error)))) from None
        raise SlackUnusable(f"auth.test failed: Slack answered {error_code(error)}; try again later") from None
    except NETWORK_ERRORS as error:
        raise SlackUnusable(f"could not reach {settings.slack_api_url}: {type(error).__name__}") from None
    return client, dict(response.data) if isinstance(response.data, dict) else {}, granted_scopes(response.headers)


async def check_slack(settings: Settings) -> Check:
    try:
        _, identity, _ = await slack_identity(settings)
    except SlackUnusable as error:
        return Check("slack", False, str(error))
    return Check("slack", True, f"bot {identity.get('user_id')} in workspace {identity.get('team')!r}")


async def check_scopes(settings: Settings) -> Check:
    try:
        _, _, scopes = await slack_identity(settings)
    except SlackUnusable:
        return Check("scopes", False, "cannot be checked until SLACK_BOT_TOKEN works")
    if scopes is None:
        return Check("scopes", True, "Slack did not list the granted scopes", warning=True)
    missing = sorted(set(BOT_SCOPES) - scopes)
    if missing:
        return Check("scopes", False, f"the app lacks {', '.join(missing)}: add them (or create the app from "
                                      "its manifest in manifests/) and reinstall it")
    return Check("scopes", True, f"all {len(BOT_SCOPES)} the bot needs are granted")


async def check_channels(settings: Settings) -> Check:
    wanted = [(name, channel) for name, channel in (("APPROVAL_CHANNEL", settings.approval_channel),
                                                      ("NOTIFY_CHANNEL", settings.notify_channel)) if channel]
    if not wanted:
        return Check("channels", True, "APPROVAL_CHANNEL and NOTIFY_CHANNEL are not set: approvers decide from "
                                       "the Home tab, and outcomes go to the requester only", warning=True)
    try:
        client, _, scopes = await slack_identity(settings)
    except SlackUnusable:
        return Check("channels", False, "cannot be checked until SLACK_BOT_TOKEN works")
    try:
        found = [await channel_access(client, name, channel, scopes) for name, channel in wanted]
    except NETWORK_ERRORS as error:
        return Check("channels", False, f"could not reach {settings.slack_api_url}: {type(error).__name__}")
    detail = "; ".join(access.sentence for access in found)
    unset = [name for name in ("APPROVAL_CHANNEL", "NOTIFY_CHANNEL") if name not in dict(wanted)]
    if unset:
        detail += f"; {unset[0]} is not set"
    return Check("channels", all(a.can_post for a in found), detail, warning=bool(unset))


async def _approver(client: AsyncWebClient, entry: str) -> tuple[int, str | None]:
    """How many people `entry` stands for, and what is wrong with it (None when nothing is)."""
    try:
        if entry.startswith("S"):
            members = (await client.usergroups_users_list(usergroup=entry)).get("users") or []
            return len(members), None if members else f"user group {entry} has no members"
        user = (await client.users_info(user=entry)).get("user") or {}
    except SlackApiError as error:
        return 0, f"{entry}: {error_code(error)}"
    if user.get("deleted"):
        return 0, f"{entry} is deactivated"
    return 1, None


async def check_approvers(settings: Settings) -> Check:
    if not settings.approvers:
        return Check("approvers", True, "APPROVERS is not set: nobody can approve yearly/monthly requests",
                     warning=True)
    try:
        client, _, _ = await slack_identity(settings)
        found = [await _approver(client, entry) for entry in settings.approvers]
    except SlackUnusable:
        return Check("approvers", False, "cannot be checked until SLACK_BOT_TOKEN works")
    except NETWORK_ERRORS as error:
        return Check("approvers", False, f"could not reach {settings.slack_api_url}: {type(error).__name__}")
    problems = [problem for _, problem in found if problem]
    if problems:
        return Check("approvers", False, "APPROVERS: " + "; ".join(problems))
    people = sum(count for count, _ in found)
    return Check("approvers", True, f"{', '.join(settings.approvers)}: {people} "
                                    f"{'person' if people == 1 else 'people'} can approve")


# Database ------------------------------------------------------------------------------------------


def _missing_sqlite_file(settings: Settings) -> Check | None:
    """A SQLite file that is not there yet is fine (made on first start), if its folder can hold it."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if url.database in (None, "", ":memory:"):
        return Check("database", True, "SQLite in memory: created and migrated at each start")
    path = Path(url.database)
    if path.exists():
        return None
    folder = path.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return Check("database", False, f"DATABASE_URL names {url.database}, but the folder {folder} does not "
                                        "exist or is not writable")
    return Check("database", True, f"{settings.database_url}: the file does not exist yet; it is created and "
                                   "migrated on first start")


async def check_database(settings: Settings) -> Check:
    missing = _missing_sqlite_file(settings)
    if missing is not None:
        return missing
    try:
        engine = open_database(settings.database_url)
    except StartupError as error:
        return Check("database", False, str(error))
    try:
        status = schema_status(engine)
    except StartupError as error:
        return Check("database", False, str(error))
    finally:
        engine.dispose()
    where = describe_url(engine)
    if status.up_to_date:
        return Check("database", True, f"{where}: schema at {status.current}")
    if is_sqlite(engine) and status.known:
        found = f"at {status.current}" if status.current else "empty"
        return Check("database", True, f"{where}: {found}; migrated to {status.head} on first start")
    return Check("database", False, f"{where}: {status.sentence}")


CHECKS: tuple[Callable[[Settings], Awaitable[Check]], ...] = (
    check_cloud, check_account, check_slack, check_scopes, check_channels, check_approvers, check_database,
)


async def run_doctor(settings: Settings) -> list[Check]:
    return [await check(settings) for check in CHECKS]

