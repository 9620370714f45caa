"""Builds the running bot from the settings: database, cloud (or the built-in sandbox), Slack, tracker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from sqlalchemy import Engine

from bot.cloud.client import Cloud, build_cloud
from bot.cloud.pricing import Pricer
from bot.courier import Courier, CourierConfig
from bot.metrics import Metrics
from bot.outage import OUTAGES, is_database_outage
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
from bot.store.heartbeats import Heartbeats, role_of
from bot.store.news import NewsStore
from bot.store.pace import SharedPace
from bot.store.repository import RequestStore
from bot.store.schema import ensure_schema
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CachedDirectory, CloudAdapter, Policy, Workflow

log = logging.getLogger(__name__)
# The price estimate is made while the form waits (beside the quota check), so it gets about a second.
PRICE_SECONDS = 1.0
# A stop (SIGTERM) ends the process within 25 s whatever is in flight, inside the 30 s platforms give
# before SIGKILL: the web server's connections get 3 s (bot.cli), Socket Mode's close 2 s (bot.server), the rest
# of the process this long, with a little left for the interpreter to exit.
STOP_SECONDS = 18.0
# Within it: a create in flight may still get its answer for this long before it is cancelled.
CREATE_ANSWER_GRACE_SECONDS = 5.0
# Each process writes its heartbeat this often; a worker not heard from for WORKER_SILENCE is reported.
HEARTBEAT_SECONDS = 5.0
WORKER_SILENCE = timedelta(seconds=60)


@dataclass(frozen=True)
class WorkerHealth:
    """Whether a worker (tracker and courier) has been heard from lately, as a web process's /healthz says."""

    last_seen: float | None  # Unix time of the latest worker heartbeat this process read
    seconds_ago: float | None
    problem: str | None  # a sentence when no worker has been heard from for WORKER_SILENCE


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
    _heartbeat: asyncio.Task[None] | None = None
    _started_at: float = field(default_factory=time.time)
    _worker_seen: float | None = None

    def summary(self) -> str:
        """What runs, in a few words: the database, the cloud, the approvers."""
        cloud = (f"SANDBOX cloud at {self.sandbox_server.url} (no cloud credentials set)" if self.sandbox_server
                 else f"cloud region {self.settings.huaweicloud_region}")
        approvers = len(self.settings.approvers)
        return (f"database {describe_url(self.engine)}, {cloud}, "
                f"{approvers} approver{'' if approvers == 1 else 's'}")

    async def start(self, *, run_tracker: bool, answer_slack: bool = True) -> None:
        self._stop = asyncio.Event()
        self._started_at = time.time()
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
        role = role_of(serves=answer_slack, tracks=run_tracker)
        self._heartbeat = asyncio.create_task(self._beat(role), name="heartbeat")
        if self.whole_process:
            # What start-up built lives as long as the process: out of the collector's sight, a full
            # collection walks only what requests create (it paused answers for 40-90 ms, now for half that).
            gc.collect()
            gc.freeze()
        if self.check_slack_at_start:
            # The channels matter where the courier posts.
            self._checks = asyncio.create_task(self._check_slack(channels=run_tracker), name="slack checks")

    async def _beat(self, role: str) -> None:
        """Say this process is alive, and read when a worker (this one or another) last said so."""
        heartbeats = Heartbeats(self.engine)
        started = datetime.fromtimestamp(self._started_at, UTC)
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(heartbeats.beat, self.tracker.worker_id, role, started)
                seen = await asyncio.to_thread(heartbeats.seen, WORKER_SILENCE)
                if seen.last_worker is not None:
                    self._worker_seen = seen.last_worker.timestamp()
            except Exception as error:
                if not is_database_outage(error):
                    log.exception("could not write the heartbeat")
                else:
                    OUTAGES.report("writing the heartbeat", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HEARTBEAT_SECONDS)

    def worker_health(self) -> WorkerHealth:
        now = time.time()
        seen = self._worker_seen
        ago = None if seen is None else round(max(now - seen, 0.0), 1)
        silence = WORKER_SILENCE.total_seconds()
        if ago is not None and ago <= silence:
            return WorkerHealth(seen, ago, None)
        if seen is None and now - self._started_at <= silence:
            return WorkerHealth(None, None, None)  # just started: a worker starting beside it gets its minute
        since = f"for {ago:.0f} s" if ago is not None else f"since this process started {now - self._started_at:.0f} s ago"
        return WorkerHealth(seen, ago, f"no worker has been heard from {since}: nothing follows the orders or tells "
                                       "Slack; start `appserver-bot worker` (or serve without --no-tracker)")

    async def _check_slack(self, *, channels: bool) -> None:
        try:
            await check_slack(self.settings, self.writer.client, self._stop, channels=channels)
        except SlackRefused as refused:
            self.fatal = str(refused)
            if self.on_fatal is not None:
                self.on_fatal(self.fatal)

    async def stop(self) -> None:
        """Within STOP_SECONDS whatever is in flight: what does not end in time is cancelled (a create then
        waits out its lease, as after a crash; news not delivered stays queued)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_SECONDS

        def left(most: float = STOP_SECONDS) -> float:
            return max(0.0, min(most, deadline - loop.time()))

        self._stop.set()
        if self._checks is not None:
            self._checks.cancel()
            await asyncio.gather(self._checks, return_exceptions=True)
        # The tracker's cycle and the courier end at their next step; a cloud or Slack call in the middle of
        # one is cancelled after a while (a poll is repeated by the next tracker, news stays queued).
        await _finish(self._tasks, left(8.0))
        await self.tracker.stop_creates(left(CREATE_ANSWER_GRACE_SECONDS))
        await _finish([t for t in [self._heartbeat] if t is not None], left(2.0))
        # Clicks answered just before the stop finish their work, and pending edits go out, while time remains.
        await early_ack.drain(left(8.0))
        try:
            await asyncio.wait_for(self.writer.drain(), left())
        except TimeoutError:
            log.warning("stopping before every pending Slack edit went out")
        if self.writer.client.session is not None:
            await self.writer.client.session.close()
        await self.cloud.aclose()
        if self.sandbox_server is not None:
            self.sandbox_server.stop()
        self.store.close()
        self.engine.dispose()
        log.info("stopped")


async def _finish(tasks: list[asyncio.Task[None]], seconds: float) -> None:
    """Wait up to `seconds` for `tasks` to end, then cancel what is left."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=seconds) if seconds > 0 else (set(), set(tasks))
    for task in late:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.error("%s ended with %s while stopping", task.get_name(), type(result).__name__)


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
        resources_grace=timedelta(minutes=settings.order_resources_grace_minutes),
        # A poll is one cloud call: a little longer than it may take, so a crashed tracker's work moves on soon.
        poll_lease=timedelta(seconds=settings.cloud_read_timeout_seconds + 5)), on_news=courier.wake)
    context = BotContext(settings, store, cloud, workflow, writer, catalogue, tracker, courier,
                         sandbox=sandbox_server is not None, pricer=Pricer.from_cloud(cloud, timeout_seconds=PRICE_SECONDS),
                         names=names)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = build_app(context, client, signing_secret=secret)
    return Runtime(settings, engine, store, cloud, metrics, writer, tracker, courier, context, app, sandbox_server,
                   retention=Retention(engine, settings.retention_days))
