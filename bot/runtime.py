"""Builds the running bot from the settings: database, cloud (or the built-in sandbox), Slack, tracker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from sqlalchemy import Engine

from bot.cloud.client import Cloud, build_cloud
from bot.courier import Courier, CourierConfig
from bot.metrics import Metrics
from bot.policy import Guardrails
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings, SettingsError, StartupError
from bot.slack.app import build_app
from bot.slack.catalogue import CatalogueCache
from bot.slack.context import BotContext
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import SlackWriter, new_web_client
from bot.store.db import make_engine
from bot.store.news import NewsStore
from bot.store.repository import RequestStore
from bot.store.schema import SchemaBehind, ensure_schema
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CachedDirectory, CloudAdapter, Policy, Workflow

log = logging.getLogger(__name__)


class SlackDirectory:
    """Approver user groups resolved through Slack (usergroups.users.list)."""

    def __init__(self, writer: SlackWriter) -> None:
        self._writer = writer

    async def group_members(self, group_id: str) -> set[str]:
        response = await self._writer.client.usergroups_users_list(usergroup=group_id)
        return {str(u) for u in response.get("users") or []}


def sandbox_settings(settings: Settings, url: str, config: SandboxConfig) -> Settings:
    """Point the cloud clients at the built-in sandbox, with its credentials."""
    return settings.model_copy(update={
        "huaweicloud_sdk_ak": SecretStr(config.access_key), "huaweicloud_sdk_sk": SecretStr(config.secret_key),
        "huaweicloud_sdk_project_id": config.project_id, "huaweicloud_region": config.region,
        "workspace_endpoint": url, "bss_endpoint": url, "vpc_endpoint": url, "huaweicloud_sdk_iam_endpoint": url,
    })


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: RequestStore
    cloud: Cloud
    metrics: Metrics
    writer: SlackWriter
    tracker: Tracker
    courier: Courier
    context: BotContext
    app: AsyncApp
    sandbox_server: BackgroundServer | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, run_tracker: bool) -> None:
        self._stop = asyncio.Event()
        # One connection pool for every Slack call (slack_sdk opens a session per call otherwise).
        self.writer.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if run_tracker:
            # The worker's jobs: follow the cloud, and deliver the Slack news everybody queued.
            self._tasks = [asyncio.create_task(self.tracker.run(self._stop), name="tracker"),
                           asyncio.create_task(self.courier.run(self._stop), name="courier")]
            log.info("tracker and courier %s started (interval %ss)", self.tracker.worker_id,
                     self.settings.poll_interval_seconds)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.writer.drain()
        if self.writer.client.session is not None:
            await self.writer.client.session.close()
        await self.cloud.aclose()
        if self.sandbox_server is not None:
            self.sandbox_server.stop()
        self.engine.dispose()


def build_runtime(settings: Settings, *, need_signing_secret: bool = True) -> Runtime:
    if settings.slack_bot_token is None:
        raise SettingsError("SLACK_BOT_TOKEN is not set: the bot needs its bot token (xoxb-…) to talk to Slack.")
    bot_token = settings.slack_bot_token.get_secret_value()
    if need_signing_secret and settings.slack_signing_secret is None:
        raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify requests from Slack.")
    engine = make_engine(settings.database_url)
    try:
        ensure_schema(engine)
    except SchemaBehind as behind:
        engine.dispose()
        raise StartupError(str(behind)) from None
    sandbox_server = None
    if settings.sandbox_mode:
        config = SandboxConfig(job_seconds=20.0, order_seconds=15.0)
        sandbox_server = BackgroundServer(Sandbox(config).app).start()
        settings = sandbox_settings(settings, sandbox_server.url, config)
        log.warning("no cloud credentials: running against the built-in SANDBOX at %s", sandbox_server.url)
    store = RequestStore(engine)
    metrics = Metrics(store)
    cloud = build_cloud(settings, observers=(metrics.observe_cloud,))
    client = new_web_client(bot_token, settings.slack_api_url)
    writer = SlackWriter(client, metrics, post_interval=settings.slack_post_interval_seconds,
                         update_interval=settings.slack_update_interval_seconds,
                         edit_window=settings.slack_edit_window_seconds,
                         label="[SANDBOX]" if sandbox_server is not None else None)
    interval = timedelta(seconds=settings.poll_interval_seconds)
    policy = Policy(
        approvers=frozenset(settings.approvers), postpaid_requires_approval=settings.postpaid_requires_approval,
        approval_ttl=timedelta(hours=settings.approval_ttl_hours),
        submit_lease=timedelta(seconds=settings.submit_lease_seconds),
        first_poll_delay=timedelta(seconds=settings.poll_first_delay_seconds),
        guardrails=Guardrails.from_settings(settings),
    )
    workflow = Workflow(store, CloudAdapter(cloud), CachedDirectory(SlackDirectory(writer)), policy)
    notifier = SlackNotifier(writer, store, settings.approval_channel, settings.notify_channel,
                             sandbox=sandbox_server is not None)
    courier = Courier(NewsStore(engine), store, notifier, workflow.worker_id,
                      CourierConfig(lease=timedelta(seconds=settings.slack_news_lease_seconds)))
    tracker = Tracker(store, cloud, workflow, TrackerConfig(
        interval=interval, first_delay=timedelta(seconds=settings.poll_first_delay_seconds),
        max_concurrent_calls=settings.tracker_max_concurrent_calls,
        # A poll is one cloud call: a little longer than it may take, so a crashed tracker's work moves on soon.
        poll_lease=timedelta(seconds=settings.cloud_read_timeout_seconds + 5)), on_news=courier.wake)
    catalogue = CatalogueCache(cloud, max_servers=settings.max_servers_per_request)
    context = BotContext(settings, store, cloud, workflow, writer, catalogue, tracker, courier,
                         sandbox=sandbox_server is not None)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = build_app(context, client, signing_secret=secret)
    return Runtime(settings, engine, store, cloud, metrics, writer, tracker, courier, context, app, sandbox_server)
