"""Builds the running bot from the settings: database, cloud (or the built-in sandbox), Slack, tracker."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from sqlalchemy import Engine

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.pricing import Pricer
from bot.courier import Courier, CourierConfig
from bot.metrics import Metrics
from bot.policy import Guardrails
from bot.retention import Retention
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings, SettingsError, StartupError
from bot.slack import early_ack
from bot.slack.app import build_app
from bot.slack.catalogue import CatalogueCache
from bot.slack.context import BotContext
from bot.slack.forms import ApprovalRules
from bot.slack.names import NameBook
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import DatabasePace, SlackWriter, new_web_client
from bot.startup import SlackRefused, check_slack
from bot.store.db import describe_url, open_database
from bot.store.news import NewsStore
from bot.store.pace import SharedPace
from bot.store.repository import RequestStore
from bot.store.schema import ensure_schema
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CachedDirectory, CloudAdapter, Policy, Workflow

log = logging.getLogger(__name__)
# The price estimate is made while the form waits (beside the quota check), so it gets about a second.
PRICE_SECONDS = 1.0
SHUTDOWN_GRACE_SECONDS = 10.0


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
        "sts_endpoint": url,
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
    retention: Retention | None = None  # pruned by the processes that run the tracker
    # Set by the commands an operator runs: check Slack in the background at start, and whom to tell
    # when Slack refuses the token (the program then stops with that sentence).
    check_slack_at_start: bool = False
    whole_process: bool = False  # the runtime is the process's one (not one of a test's): its heap is ours
    on_fatal: Callable[[str], None] | None = None
    fatal: str | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _checks: asyncio.Task[None] | None = None

    def summary(self) -> str:
        """What runs, in a few words: the database, the cloud, the approvers."""
        cloud = (f"SANDBOX cloud at {self.sandbox_server.url} (no cloud credentials set)" if self.sandbox_server
                 else f"cloud region {self.settings.huaweicloud_region}")
        approvers = len(self.settings.approvers)
        return (f"database {describe_url(self.engine)}, {cloud}, "
                f"{approvers} approver{'' if approvers == 1 else 's'}")

    async def start(self, *, run_tracker: bool) -> None:
        self._stop = asyncio.Event()
        # One connection pool for every Slack call (slack_sdk opens a session per call otherwise).
        self.writer.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if run_tracker:
            # The worker's jobs: follow the cloud, and deliver the Slack news everybody queued.
            self._tasks = [asyncio.create_task(self.tracker.run(self._stop), name="tracker"),
                           asyncio.create_task(self.courier.run(self._stop), name="courier")]
            if self.retention is not None:
                self._tasks.append(asyncio.create_task(self.retention.run(self._stop), name="retention"))
            log.debug("tracker and courier %s started (interval %ss)", self.tracker.worker_id,
                      self.settings.poll_interval_seconds)
        if self.whole_process:
            # What start-up built lives as long as the process: out of the collector's sight, a full
            # collection walks only what requests create (it paused answers for 40-90 ms, now for half that).
            gc.collect()
            gc.freeze()
        if self.check_slack_at_start:
            # The channels matter where the courier posts.
            self._checks = asyncio.create_task(self._check_slack(channels=run_tracker), name="slack checks")

    async def _check_slack(self, *, channels: bool) -> None:
        try:
            await check_slack(self.settings, self.writer.client, self._stop, channels=channels)
        except SlackRefused as refused:
            self.fatal = str(refused)
            if self.on_fatal is not None:
                self.on_fatal(self.fatal)

    async def stop(self) -> None:
        self._stop.set()
        if self._checks is not None:
            self._checks.cancel()
            await asyncio.gather(self._checks, return_exceptions=True)
        await asyncio.gather(*self._tasks)
        await early_ack.drain(SHUTDOWN_GRACE_SECONDS)  # clicks answered just before the stop finish their work
        await self.writer.drain()
        if self.writer.client.session is not None:
            await self.writer.client.session.close()
        await self.cloud.aclose()
        if self.sandbox_server is not None:
            self.sandbox_server.stop()
        self.store.close()
        self.engine.dispose()
        log.info("stopped")


def require_bot_token(settings: Settings) -> str:
    if settings.slack_bot_token is None:
        raise SettingsError("SLACK_BOT_TOKEN is not set: the bot needs its bot token (xoxb-…) to talk to Slack.")
    return settings.slack_bot_token.get_secret_value()


def build_runtime(settings: Settings, *, need_signing_secret: bool = True) -> Runtime:
    bot_token = require_bot_token(settings)
    if need_signing_secret and settings.slack_signing_secret is None:
        raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify requests from Slack.")
    engine = open_database(settings.database_url)
    try:
        ensure_schema(engine)
    except StartupError:
        engine.dispose()
        raise
    sandbox_server = None
    if settings.sandbox_mode:
        config = SandboxConfig(job_seconds=20.0, order_seconds=15.0)
        sandbox_server = BackgroundServer(Sandbox(config).app).start()
        settings = sandbox_settings(settings, sandbox_server.url, config)
    store = RequestStore(engine)
    metrics = Metrics(store)
    cloud = build_cloud(settings, observers=(metrics.observe_cloud,))
    client = new_web_client(bot_token, settings.slack_api_url)
    writer = SlackWriter(client, metrics, post_interval=settings.slack_post_interval_seconds,
                         update_interval=settings.slack_update_interval_seconds,
                         edit_window=settings.slack_edit_window_seconds,
                         label="[SANDBOX]" if sandbox_server is not None else None,
                         pace=DatabasePace(SharedPace(engine)),  # one budget for every process on the database
                         # Posts paced at all (SLACK_POST_INTERVAL_SECONDS above 0): 240 a minute in all, too.
                         workspace_post_interval=min(SlackWriter.workspace_post_interval,
                                                     settings.slack_post_interval_seconds))
    interval = timedelta(seconds=settings.poll_interval_seconds)
    policy = Policy(
        approvers=frozenset(settings.approvers), postpaid_requires_approval=settings.postpaid_requires_approval,
        approval_ttl=timedelta(hours=settings.approval_ttl_hours),
        remind_after=timedelta(minutes=settings.approval_remind_after_minutes),
        remind_per_channel=not settings.approval_channel,
        submit_lease=timedelta(seconds=settings.submit_lease_seconds),
        first_poll_delay=timedelta(seconds=settings.poll_first_delay_seconds),
        guardrails=Guardrails.from_settings(settings),
    )
    workflow = Workflow(store, CloudAdapter(cloud), CachedDirectory(SlackDirectory(writer)), policy)
    catalogue = CatalogueCache(cloud, max_servers=settings.max_servers_per_request, approval=ApprovalRules.from_guardrails(
        policy.guardrails, postpaid_requires_approval=policy.postpaid_requires_approval))
    names = NameBook(catalogue, cloud)
    notifier = SlackNotifier(writer, store, settings.approval_channel, settings.notify_channel,
                             sandbox=sandbox_server is not None, approvers=tuple(settings.approvers), names=names,
                             console_url=settings.region_console_url)
    courier = Courier(NewsStore(engine), store, notifier, workflow.worker_id,
                      CourierConfig(lease=timedelta(seconds=settings.slack_news_lease_seconds)), metrics=metrics)
    tracker = Tracker(store, cloud, workflow, TrackerConfig(
        interval=interval, first_delay=timedelta(seconds=settings.poll_first_delay_seconds),
        budget_per_second=settings.poll_budget_per_second,
        max_concurrent_calls=settings.tracker_max_concurrent_calls,
        # A poll is one cloud call: a little longer than it may take, so a crashed tracker's work moves on soon.
        poll_lease=timedelta(seconds=settings.cloud_read_timeout_seconds + 5)), on_news=courier.wake)
    context = BotContext(settings, store, cloud, workflow, writer, catalogue, tracker, courier,
                         sandbox=sandbox_server is not None, pricer=Pricer.from_cloud(cloud, timeout_seconds=PRICE_SECONDS),
                         names=names)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = build_app(context, client, signing_secret=secret)
    return Runtime(settings, engine, store, cloud, metrics, writer, tracker, courier, context, app, sandbox_server,
                   retention=Retention(engine, settings.retention_days))
