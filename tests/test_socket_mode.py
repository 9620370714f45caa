"""Socket Mode: the same Bolt app behind a real WebSocket (no public URL, no signatures), and how the
`socket` and `worker` processes behave when Slack refuses a token, cannot be reached, or they are stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.runtime import build_runtime
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer, free_port
from bot.slack.socket_mode import SocketModeLink
from bot.startup import Backoff
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.processes import BotProcess, assert_bot_lines_only, run_bot
from tests.socket_stand_in import SocketStandIn

ENVELOPES = Path(__file__).parent / "fixtures" / "slack-payloads" / "socket_mode.envelopes.bolt-python.json"
HELP = {"envelope_id": "env-command", "type": "slash_commands", "accepts_response_payload": True,
        "payload": {"token": "x", "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/appserver",
                    "text": "help", "response_url": "https://hooks.slack.com/x", "trigger_id": "1.2.3"}}


def wait_until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def test_envelopes_over_a_websocket_are_acknowledged_with_the_listener_answer(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    envelopes = [HELP, *json.loads(ENVELOPES.read_text())]  # real envelopes (shortcut, events, interactive)
    with SocketStandIn(envelopes) as stand_in:
        fake = FakeSlack(socket_url=stand_in.url)
        with BackgroundServer(fake.app) as slack_server:
            settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token=fake.token, slack_app_token=fake.app_token,
                                        slack_api_url=slack_server.url + "/api/", database_url=f"sqlite:///{tmp_path}/b.db")
            runtime = build_runtime(settings, need_signing_secret=False)
            await runtime.start(run_tracker=False)
            link = SocketModeLink(runtime.app, fake.app_token)
            assert not await link.connected()
            link.start()
            try:
                await asyncio.wait_for(_until(lambda: len(stand_in.acks) == len(envelopes)), timeout=20)
                assert await link.connected()
            finally:
                await link.close()
                await runtime.stop()
    by_id = {a["envelope_id"]: a for a in stand_in.acks}
    assert set(by_id) == {e["envelope_id"] for e in envelopes}
    assert "orders Huawei Cloud" in by_id["env-command"]["payload"]["text"]
    assert fake.of("apps.connections.open")


async def test_a_dropped_connection_is_made_again_with_a_new_url(sandbox: Sandbox, sandbox_url: str) -> None:
    with SocketStandIn([HELP], drop_first=1) as stand_in:
        fake = FakeSlack(socket_url=stand_in.url)
        with BackgroundServer(fake.app) as slack_server:
            settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token=fake.token, slack_app_token=fake.app_token,
                                        slack_api_url=slack_server.url + "/api/")
            runtime = build_runtime(settings, need_signing_secret=False)
            await runtime.start(run_tracker=False)
            link = SocketModeLink(runtime.app, fake.app_token, backoff=Backoff(first=0.05, cap=0.2))
            link.start()
            try:
                await asyncio.wait_for(_until(lambda: stand_in.acks), timeout=30)
                assert await link.connected()
            finally:
                await link.close()
                await runtime.stop()
    assert stand_in.connections == 2 and len(fake.of("apps.connections.open")) == 2
    assert stand_in.acks[0]["envelope_id"] == "env-command"


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_a_link_that_cannot_reach_slack_retries_and_closes_at_once(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token="xoxb-x", slack_app_token="xapp-x",
                                slack_api_url=f"http://127.0.0.1:{free_port()}/api/", database_url="sqlite://")
    runtime = build_runtime(settings, need_signing_secret=False)
    refusals: list[str] = []
    link = SocketModeLink(runtime.app, "xapp-x", on_refused=refusals.append, backoff=Backoff(first=0.05, cap=0.2))
    link.start()
    await asyncio.wait_for(_until(lambda: sum("trying again" in r.getMessage() for r in caplog.records) >= 2), 20)
    assert not await link.connected()
    await asyncio.wait_for(link.close(), timeout=10)  # in the middle of a pause between tries
    assert refusals == []
    retries = [r for r in caplog.records if "trying again" in r.getMessage()]
    assert all(r.name == "bot.slack.socket_mode" and r.exc_info is None for r in retries)
    await runtime.stop()


def socket_env(fake: FakeSlack, api_url: str, tmp_path: Path, port: int) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": fake.token, "SLACK_APP_TOKEN": fake.app_token, "SLACK_API_URL": api_url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db", "PORT": str(port)}


@pytest.mark.slow
def test_socket_process_answers_healthz_once_connected_and_stops_on_sigterm(tmp_path: Path) -> None:
    with SocketStandIn([HELP]) as stand_in:
        fake = FakeSlack(socket_url=stand_in.url)
        with BackgroundServer(fake.app) as slack_server:
            port = free_port()
            bot = BotProcess("socket", "--host", "127.0.0.1",
                             env=socket_env(fake, slack_server.url + "/api/", tmp_path, port), cwd=tmp_path)
            try:
                bot.wait_for("Socket Mode: connected to Slack")
                health = bot.health(port)
                assert health.status_code == 200 and health.json()["socket_mode"] == "connected"
                wait_until(lambda: stand_in.acks)
                assert "orders Huawei Cloud" in stand_in.acks[0]["payload"]["text"]
            finally:
                code = bot.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), bot.output
    assert "Traceback" not in bot.output and fake.token not in bot.output and fake.app_token not in bot.output
    assert "Socket Mode on http://127.0.0.1" in bot.output and "SANDBOX" in bot.output
    assert "APPROVERS is not set" in bot.output
    assert bot.lines[-1].endswith("bot.runtime: stopped")


@pytest.mark.slow
def test_socket_process_stops_with_one_sentence_when_slack_refuses_the_app_token(tmp_path: Path) -> None:
    fake = FakeSlack(socket_url="ws://127.0.0.1:9/never")
    with BackgroundServer(fake.app) as slack_server:
        env = socket_env(fake, slack_server.url + "/api/", tmp_path, free_port())
        result = run_bot("socket", "--host", "127.0.0.1", env={**env, "SLACK_APP_TOKEN": "xapp-1-revoked"},
                         cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "xapp-1-revoked" not in result.stderr
    sentence = result.stderr.strip().splitlines()[-1]
    assert sentence.startswith("appserver-bot: Slack refused SLACK_APP_TOKEN (invalid_auth)")
    assert "connections:write" in sentence
    assert len(fake.of("apps.connections.open")) == 1  # a refusal is final: no retries


@pytest.mark.slow
def test_socket_process_that_cannot_reach_slack_retries_is_unhealthy_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = socket_env(FakeSlack(), f"http://127.0.0.1:{free_port()}/api/", tmp_path, port)
    bot = BotProcess("socket", "--host", "127.0.0.1", env=env, cwd=tmp_path)
    try:
        health = bot.health(port)
        assert health.status_code == 503 and health.json()["socket_mode"] == "connecting"
        bot.wait_for("Socket Mode: cannot reach Slack", count=2)
    finally:
        code = bot.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), bot.output
    assert "Traceback" not in bot.output
    retries = [line for line in bot.lines if "Socket Mode: cannot reach Slack" in line]
    assert all("WARNING bot.slack.socket_mode" in line and "trying again in" in line for line in retries)
    assert_bot_lines_only(bot.output)


@pytest.mark.slow
def test_sigint_stops_a_socket_process_while_it_reconnects(tmp_path: Path) -> None:
    port = free_port()
    bot = BotProcess("socket", "--host", "127.0.0.1", env=socket_env(FakeSlack(), f"http://127.0.0.1:{free_port()}/api/",
                                                                       tmp_path, port), cwd=tmp_path)
    try:
        bot.wait_for("Socket Mode: cannot reach Slack")
    finally:
        code = bot.stop(signal.SIGINT)
    assert code in (130, -signal.SIGINT), bot.output
    assert "Traceback" not in bot.output


@pytest.mark.slow
def test_worker_stops_with_one_sentence_when_slack_refuses_the_bot_token(fake_slack: tuple[FakeSlack, str],
                                                                          tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-revoked", "SLACK_API_URL": fake_slack[1], "DATABASE_URL": f"sqlite:///{tmp_path}/b.db"}
    for command in ("worker", "serve"):
        result = run_bot(command, "--host", "127.0.0.1", "--port", str(free_port()),
                         env={**env, "SLACK_SIGNING_SECRET": "s3cr3t"}, cwd=tmp_path) if command == "serve" \
            else run_bot(command, env={**env, "PORT": str(free_port())}, cwd=tmp_path)
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr and "xoxb-revoked" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(
            "appserver-bot: Slack refused SLACK_BOT_TOKEN (invalid_auth)")


@pytest.mark.slow
def test_worker_that_cannot_reach_slack_retries_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {"SLACK_BOT_TOKEN": "xoxb-x", "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
           "DATABASE_URL": f"sqlite:///{tmp_path}/b.db", "PORT": str(free_port())}
    bot = BotProcess("worker", env=env, cwd=tmp_path)
    try:
        bot.wait_for("cannot reach Slack", count=2)
    finally:
        code = bot.stop(signal.SIGTERM)
    assert code in (0, -signal.SIGTERM), bot.output
    assert "Traceback" not in bot.output
    assert bot.lines[-1].endswith("bot.runtime: stopped")
    assert_bot_lines_only(bot.output)


def test_healthz_is_unhealthy_until_socket_mode_connects(sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token="xoxb-x", slack_app_token="xapp-x",
                                slack_api_url=f"http://127.0.0.1:{free_port()}/api/", database_url="sqlite://")
    runtime = build_runtime(settings, need_signing_secret=False)
    from bot.server import create_asgi_app

    link = SocketModeLink(runtime.app, "xapp-x", backoff=Backoff(first=0.05, cap=0.2))
    with BackgroundServer(create_asgi_app(runtime, run_tracker=False, socket=link), lifespan=True) as server:
        health = httpx.get(server.url + "/healthz")
    assert health.status_code == 503 and health.json()["socket_mode"] == "connecting"
    assert health.json()["database"] == "ok"
