"""What an operator sees of a running bot: /metrics as a snapshot (behind a token when one is set) that still
answers while the database is away, how long requests wait in each state, and a web process's /healthz
saying when no worker has been heard from."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update
from sqlmodel import col

from bot.lifecycle import State
from bot.metrics import SNAPSHOT_SECONDS
from bot.outage import OUTAGES
from bot.runtime import Runtime, build_runtime
from bot.sandbox import Sandbox
from bot.sandbox.faults import FaultSettings, ScriptedFault
from bot.sandbox.server import BackgroundServer, free_port
from bot.server import create_asgi_app
from bot.settings import Settings
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.heartbeats import WORKER, Heartbeats
from bot.store.models import AppRequest, utcnow
from bot.store.repository import RequestStore
from bot.store.schema import migrate
from bot.workflow import Policy, Workflow
from tests.conftest import sandbox_settings
from tests.db_outage import DatabaseRelay
from tests.fake_slack import FakeSlack
from tests.harness import SIGNING_SECRET, wait_for
from tests.processes import BotProcess
from tests.specs import office_body, prepaid_body
from tests.workflows import NoGroups

pytestmark = pytest.mark.slow  # each test runs the bot's HTTP side on a real port


@pytest.fixture(autouse=True)
def fresh_outage_log() -> None:
    OUTAGES.reset()


def web_settings(sandbox: Sandbox, sandbox_url: str, slack_url: str, database_url: str, **extra: Any) -> Settings:
    return sandbox_settings(sandbox_url, sandbox, huaweicloud_sdk_project_id=sandbox.config.project_id,
                            slack_bot_token="xoxb-fake-token", slack_signing_secret=SIGNING_SECRET,
                            slack_api_url=slack_url, database_url=database_url, **extra)


@contextmanager
def web_process(settings: Settings) -> Iterator[tuple[str, Runtime]]:
    """The HTTP side of `serve --no-tracker`: answers Slack, tracks nothing (a worker would)."""
    runtime = build_runtime(settings)
    with BackgroundServer(create_asgi_app(runtime, run_tracker=False), lifespan=True) as server:
        yield server.url, runtime


def scrape(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url + "/metrics", headers=headers, timeout=20)


def gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


def statements_reading(runtime: Runtime, marker: str) -> list[str]:
    """Every statement the bot sends its database that contains `marker`, as it sends them."""
    seen: list[str] = []

    @event.listens_for(runtime.engine, "before_cursor_execute")
    def record(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if marker in statement:
            seen.append(statement)

    return seen


def test_twenty_scrapers_at_once_cost_one_snapshot_of_database_queries(
    sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    settings = web_settings(sandbox, sandbox_url, fake_slack[1], f"sqlite:///{tmp_path}/bot.db")
    with web_process(settings) as (url, runtime):
        snapshots = statements_reading(runtime, "state_since")  # the oldest request in each state: once a snapshot
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: scrape(url), range(20)))
        assert {a.status_code for a in answers} == {200}
        assert all("appserver_requests" in a.text for a in answers)
        # One snapshot served all 20 (two at most, should the machine be slow enough to let one grow old).
        assert 1 <= len(snapshots) <= 2, len(snapshots)
    assert SNAPSHOT_SECONDS <= 10  # "a few seconds": what an operator's dashboards may lag by


def test_metrics_need_the_bearer_token_when_one_is_set(
    sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    token = "metrics-token-0123456789"
    settings = web_settings(sandbox, sandbox_url, fake_slack[1], f"sqlite:///{tmp_path}/bot.db", metrics_token=token)
    with web_process(settings) as (url, runtime):
        queries = statements_reading(runtime, "state_since")
        refused = [scrape(url), scrape(url, Authorization=f"Bearer {token}x"), scrape(url, Authorization=token),
                   scrape(url, Authorization=f"Basic {token}"), scrape(url, Authorization=f"Bearer {token[:-1]}")]
        assert [r.status_code for r in refused] == [401] * 5
        assert all(token not in r.text and "appserver_" not in r.text for r in refused)
        assert refused[0].headers["www-authenticate"].startswith("Bearer")
        assert queries == []  # a stranger without the token costs the database nothing
        allowed = scrape(url, Authorization=f"Bearer {token}")
        assert allowed.status_code == 200 and "appserver_requests" in allowed.text
        assert httpx.get(url + "/healthz").status_code == 200  # health stays open for the platform's probes


def test_metrics_say_how_long_the_oldest_request_has_waited_in_each_state(
    sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    settings = web_settings(sandbox, sandbox_url, fake_slack[1], f"sqlite:///{tmp_path}/bot.db")
    with web_process(settings) as (url, runtime):
        workflow = runtime.context.workflow
        store = runtime.store
        waiting = asyncio.run(workflow.submit(parse_spec(prepaid_body()), "U0ASKER"))
        paying = asyncio.run(workflow.submit(parse_spec(prepaid_body()), "U0ASKER"))
        for old, new in ((State.PENDING_APPROVAL, State.APPROVED), (State.APPROVED, State.SUBMITTING),
                         (State.SUBMITTING, State.SUBMITTED), (State.SUBMITTED, State.AWAITING_PAYMENT)):
            assert store.transition(paying.id, old, new, actor="test", action="test")
        asyncio.run(workflow.submit(parse_spec(office_body()), "U0ASKER"))  # approved at once: waits for a worker
        backdate(store, waiting.id, minutes=30)
        backdate(store, paying.id, minutes=90)
        text = scrape(url).text
    assert 5400 <= gauge(text, 'appserver_oldest_request_seconds{state="awaiting_payment"}') < 5400 + 600
    assert 1800 <= gauge(text, 'appserver_oldest_request_seconds{state="pending_approval"}') < 1800 + 600
    assert 0 <= gauge(text, 'appserver_oldest_request_seconds{state="approved"}') < 600
    assert gauge(text, 'appserver_oldest_request_seconds{state="submitting"}') == 0  # none in it
    assert 'appserver_oldest_request_seconds{state="succeeded"}' not in text  # an end is not a wait


def backdate(store: RequestStore, request_id: str, *, minutes: int) -> None:
    with store.engine.begin() as connection:
        connection.execute(update(AppRequest).where(col(AppRequest.id) == request_id)
                           .values(state_since=utcnow() - timedelta(minutes=minutes)))


def test_a_web_process_says_when_no_worker_has_been_heard_from_for_a_minute(
    sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path}/bot.db"
    settings = web_settings(sandbox, sandbox_url, fake_slack[1], database)
    runtime = build_runtime(settings)
    heartbeats = Heartbeats(runtime.engine)
    # The only worker there was stopped two minutes ago (its last heartbeat).
    heartbeats.beat("host-1:4242", WORKER, utcnow() - timedelta(hours=1), now=utcnow() - timedelta(minutes=2))
    with BackgroundServer(create_asgi_app(runtime, run_tracker=False), lifespan=True) as server:
        # Said as soon as the web process has read the heartbeats (at its start).
        health = wait_for(lambda: (h := httpx.get(server.url + "/healthz")).status_code == 503 and h,
                          what="/healthz to say no worker is heard from")
        body = health.json()
        assert body["status"] == "unhealthy" and body["database"] == "ok"
        assert body["reason"].startswith("no worker has been heard from for 1") and "appserver-bot worker" in \
            body["reason"]
        assert 110 <= body["worker"]["seconds_ago"] < 600
        metrics = scrape(server.url).text
        assert gauge(metrics, "appserver_worker_last_seen_seconds") >= 110
        assert gauge(metrics, 'appserver_processes{role="web"}') == 1  # itself
        # A worker starts again: its heartbeat is seen within a few seconds.
        heartbeats.beat("host-2:99", WORKER, utcnow())
        healthy = wait_for(lambda: (h := httpx.get(server.url + "/healthz")).status_code == 200 and h,
                           what="the web process to hear the new worker")
        assert "reason" not in healthy.json() and healthy.json()["worker"]["seconds_ago"] < 60


@pytest.mark.postgres
def test_metrics_and_health_answer_while_the_database_is_away(
    postgres_url: str, sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str],
    caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    with DatabaseRelay(postgres_url) as relay:
        settings = web_settings(sandbox, sandbox_url, fake_slack[1], relay.url)
        with web_process(settings) as (url, _runtime):
            assert gauge(scrape(url).text, "appserver_database_up") == 1
            relay.cut()

            def database_down() -> str | None:
                answer = scrape(url)
                assert answer.status_code == 200, answer.text  # never a 500 that looks like the bot is down
                return answer.text if gauge(answer.text, "appserver_database_up") == 0 else None

            text = wait_for(database_down, timeout=30, what="a snapshot taken while the database is away")
            assert "appserver_requests{" not in text  # nothing read from a database that did not answer
            assert "appserver_slack_calls_total" in text or "appserver_cloud_call_seconds" in text
            health = httpx.get(url + "/healthz", timeout=20)
            assert health.status_code == 503 and "database" in health.json()["reason"]
            relay.restore()
            wait_for(lambda: gauge(scrape(url).text, "appserver_database_up") == 1, timeout=30,
                     what="the database to be seen again")
    outage_lines = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert outage_lines and all(r.exc_info is None for r in caplog.records if "cannot be reached" in r.getMessage())


# A worker as the platform runs it --------------------------------------------------------------------------


def worker_env(sandbox: Sandbox, sandbox_url: str, slack_url: str, database_url: str, **extra: str) -> dict[str, str]:
    cfg = sandbox.config
    return {"SLACK_BOT_TOKEN": "xoxb-fake-token", "SLACK_API_URL": slack_url, "HUAWEICLOUD_SDK_AK": cfg.access_key,
            "HUAWEICLOUD_SDK_SK": cfg.secret_key, "HUAWEICLOUD_SDK_PROJECT_ID": cfg.project_id,
            "WORKSPACE_ENDPOINT": sandbox_url, "BSS_ENDPOINT": sandbox_url, "VPC_ENDPOINT": sandbox_url,
            "HUAWEICLOUD_SDK_IAM_ENDPOINT": sandbox_url, "DATABASE_URL": database_url,
            "POLL_INTERVAL_SECONDS": "0.2", "POLL_FIRST_DELAY_SECONDS": "0.1", "SLACK_POST_INTERVAL_SECONDS": "0",
            "SLACK_UPDATE_INTERVAL_SECONDS": "0", "CLOUD_RETRY_BASE_SECONDS": "0.05", "PORT": str(free_port()),
            **extra}


async def submit_auto_approved(store: RequestStore, requester: str) -> AppRequest:
    workflow = Workflow(store, None, NoGroups(), Policy())  # type: ignore[arg-type]  # storing needs no cloud
    return await workflow.submit(parse_spec(office_body(count=1)), requester)


def test_a_hanging_create_holds_up_no_poll_and_sigterm_stops_the_worker_anyway(
    sandbox: Sandbox, sandbox_url: str, fake_slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path}/bot.db"
    engine = make_engine(database)
    migrate(engine)
    store = RequestStore(engine)
    # The cloud takes the first create and then does not answer for a minute, far longer than a stop may take;
    # the worker would wait two for it.
    sandbox.faults.configure(FaultSettings(hang_seconds=60))
    sandbox.faults.add(ScriptedFault(operation="CreateAppServers", kind="hang"))
    rows = [asyncio.run(submit_auto_approved(store, f"U0ASKER{i}")) for i in range(2)]
    worker = BotProcess("worker", "--host", "127.0.0.1", cwd=tmp_path, env=worker_env(
        sandbox, sandbox_url, fake_slack[1], database, CLOUD_READ_TIMEOUT_SECONDS="120", SUBMIT_LEASE_SECONDS="300"))
    try:
        wait_for(lambda: len(sandbox.calls("CreateAppServers")) == 2, timeout=60, what="both creates sent")

        def one_done_one_waiting() -> bool:
            states = sorted(str(r.state) for r in (store.get(row.id) for row in rows) if r is not None)
            return states == [State.SUBMITTING.value, State.SUCCEEDED.value]

        # The request whose create was answered is followed to its end while the other create still waits.
        wait_for(one_done_one_waiting, timeout=40, what="one request done while the other's create hangs")
        [hanging] = [r for r in (store.get(row.id) for row in rows) if r is not None and r.state == State.SUBMITTING]
        code = worker.stop(signal.SIGTERM, timeout=25)  # within the 30 s a platform gives before SIGKILL
    finally:
        worker.stop(signal.SIGKILL, timeout=10)
    assert code in (0, -signal.SIGTERM), worker.output
    assert "Traceback" not in worker.output
    assert any(f"stopping while {hanging.id} waits for the cloud's answer" in line for line in worker.lines)
    # Left as after a crash: leased in `submitting`, to be looked for once the lease runs out; never sent again.
    left = store.get(hanging.id)
    assert left is not None and left.state == State.SUBMITTING and left.lease_owner and left.lease_until
    assert len(sandbox.calls("CreateAppServers")) == 2
    engine.dispose()
