"""`appserver-bot serve` and `worker` as an operator starts them: one command, sandbox when no cloud, one
line saying what runs, and a warning for each setting that leaves part of the bot unusable."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.sandbox.server import free_port
from tests.fake_slack import FakeSlack
from tests.harness import SIGNING_SECRET, sign
from tests.processes import BotProcess, assert_bot_lines_only, run_bot

pytestmark = pytest.mark.slow  # each test starts the real program, some of them several times


def test_serve_runs_on_the_sandbox_with_two_tokens(fake_slack: tuple[FakeSlack, str], tmp_path: Path) -> None:
    fake, url = fake_slack
    fake.channels["C0PRIVATE"] = {"is_private": True, "is_member": False}
    fake.channels["C0OLD"] = {"is_archived": True}
    port = free_port()
    bot = BotProcess("serve", "--host", "127.0.0.1", "--port", str(port),
                     env={"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": url,
                          "APPROVAL_CHANNEL": "C0PRIVATE", "NOTIFY_CHANNEL": "C0OLD"}, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        health = bot.health(port)
        body = health.json()
        assert health.status_code == 200 and body["sandbox"] is True and body["tracker"]["running"] is True
        assert "socket_mode" not in body
        assert (tmp_path / "appserver-bot.db").exists()  # the default SQLite file, created and migrated
        command = b"token=x&command=%2Fappserver&text=help&user_id=U1&channel_id=C1&trigger_id=1.2.3"
        answer = httpx.post(base + "/slack/events", content=command,
                            headers={"Content-Type": "application/x-www-form-urlencoded", **sign(command)})
        assert answer.status_code == 200 and "/appserver" in answer.text
        assert "appserver_requests" in httpx.get(base + "/metrics").text
        bot.wait_for("cannot post in", count=2)  # the channel checks run in the background
    finally:
        code = bot.stop(signal.SIGTERM)
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped.
    assert code in (0, -signal.SIGTERM), bot.output
    assert "Traceback" not in bot.output
    assert_bot_lines_only(bot.output)
    started = [line for line in bot.lines if "HTTP mode on" in line]
    assert len(started) == 1 and f"http://127.0.0.1:{port}" in started[0] and "SANDBOX" in started[0]
    assert "database sqlite:///appserver-bot.db" in started[0] and "0 approvers" in started[0]
    assert any("WARNING bot: APPROVERS is not set" in line for line in bot.lines)
    assert any("cannot post in APPROVAL_CHANNEL C0PRIVATE: not found, or a private channel the bot is not in"
               in line for line in bot.lines)
    assert any("cannot post in NOTIFY_CHANNEL C0OLD: is archived" in line for line in bot.lines)
    assert bot.lines[-1].endswith("bot.runtime: stopped")
    assert not fake.of("chat.postMessage")  # the checks only read
    for secret in (fake.token, SIGNING_SECRET):
        assert secret not in bot.output


def test_serve_without_tokens_says_what_is_missing(tmp_path: Path) -> None:
    result = run_bot("serve", env={}, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("appserver-bot: SLACK_BOT_TOKEN is not set")


def test_worker_starts_serves_its_health_and_metrics_and_stops_cleanly(fake_slack: tuple[FakeSlack, str],
                                                                      tmp_path: Path) -> None:
    fake, url = fake_slack
    port = free_port()
    bot = BotProcess("worker", "--host", "127.0.0.1", env={"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": url,
                                                           "APPROVERS": "U0BOSS", "PORT": str(port)}, cwd=tmp_path)
    try:
        bot.wait_for("worker, tracking and posting news")
        health = bot.health(port)
        assert health.status_code == 200, health.text
        assert health.json()["tracker"]["running"] is True
        # Its own heartbeat: the worker is seen, by itself and by any web process on the same database.
        wait_until(lambda: health_of(port)["worker"]["seconds_ago"] is not None)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'appserver_processes{role="worker"} 1.0' in metrics and "appserver_database_up 1.0" in metrics
        assert httpx.post(f"http://127.0.0.1:{port}/slack/events", content=b"{}").status_code == 404  # no Slack here
    finally:
        code = bot.stop(signal.SIGTERM)
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped.
    assert code in (0, -signal.SIGTERM), bot.output
    assert "1 approver" in bot.output and "APPROVERS" not in bot.output and "Traceback" not in bot.output
    assert_bot_lines_only(bot.output)


def test_a_worker_whose_port_is_taken_warns_and_works_on(fake_slack: tuple[FakeSlack, str], tmp_path: Path) -> None:
    fake, url = fake_slack
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = BotProcess("worker", "--host", "127.0.0.1", env={"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": url,
                                                               "PORT": str(port)}, cwd=tmp_path)
        try:
            bot.wait_for("worker, tracking and posting news")
        finally:
            code = bot.stop(signal.SIGTERM)
    assert code == 0, bot.output
    assert any(f"WARNING bot: Cannot listen on 127.0.0.1:{port}" in line and "without /healthz and /metrics" in line
               for line in bot.lines), bot.output
    assert "Traceback" not in bot.output


def health_of(port: int) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
    return body


def wait_until(check: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_every_command_says_what_it_does_in_its_help(tmp_path: Path) -> None:
    for command, words in (("serve", ["HTTP mode", "public URL", "(default: 0.0.0.0)", "$PORT, or 3000"]),
                           ("socket", ["Socket Mode", "503 until Slack is connected", "(default: 0.0.0.0)"]),
                           ("worker", ["tracker", "Procfile", "/healthz and /metrics"]),
                           ("migrate", ["schema", "PostgreSQL"]),
                           ("doctor", ["one line per check", "Changes nothing"]),
                           ("sandbox", ["(default: 8700)", "(default: 20.0)", "signatures"])):
        result = run_bot(command, "--help", env={}, cwd=tmp_path, timeout=60)
        assert result.returncode == 0
        for word in words:
            assert word in result.stdout, (command, word, result.stdout)
