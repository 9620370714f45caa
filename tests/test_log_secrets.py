"""What the logs never hold, at DEBUG too: Socket Mode's WebSocket ticket, and a secret inside a traceback
in either log format."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.logs import install_redaction
from bot.runtime import build_runtime
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.slack.socket_mode import SocketModeLink
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.socket_stand_in import SocketStandIn

ROOT = Path(__file__).resolve().parent.parent
TICKET = "e0c1b2a3-9f8e-4d7c-b6a5-ticket0secret"
HELP = {"envelope_id": "env-command", "type": "slash_commands", "accepts_response_payload": True,
        "payload": {"token": "x", "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/appserver",
                    "text": "help", "response_url": "https://hooks.slack.com/x", "trigger_id": "1.2.3"}}


async def _until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_socket_mode_at_debug_never_logs_the_websocket_ticket(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_redaction()  # as the program does at start
    caplog.set_level(logging.DEBUG)
    with SocketStandIn([HELP]) as stand_in:
        # Slack's answer to apps.connections.open: wss://wss-primary.slack.com/link/?ticket=…&app_id=…
        fake = FakeSlack(socket_url=f"{stand_in.url}?ticket={TICKET}&app_id=A0APP")
        with BackgroundServer(fake.app) as slack_server:
            settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token=fake.token, slack_app_token=fake.app_token,
                                        slack_api_url=slack_server.url + "/api/", database_url=f"sqlite:///{tmp_path}/b.db")
            runtime = build_runtime(settings, need_signing_secret=False)
            await runtime.start(run_tracker=False)
            link = SocketModeLink(runtime.app, fake.app_token)
            link.start()
            try:
                await _until(lambda: stand_in.acks)
            finally:
                await link.close()
                await runtime.stop()
    assert fake.of("apps.connections.open") and stand_in.connections == 1
    formatter = logging.Formatter("%(name)s: %(message)s")
    lines = [formatter.format(record) for record in caplog.records]
    assert any("ticket=[redacted]" in line for line in lines)  # the URL was logged, without its ticket
    assert [line for line in lines if TICKET in line] == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_is_redacted_in_either_log_format(fmt: str) -> None:
    """The program's own logging set-up, in a process of its own: an exception whose text holds a secret, a
    credential header and a Socket Mode URL is logged with a traceback."""
    script = (
        "import logging\n"
        "from bot.logs import configure_logging\n"
        f"configure_logging('INFO', ['SK-very-secret-value'], {fmt!r})\n"
        "try:\n"
        "    raise RuntimeError('connect failed: wss://x/link/?ticket=" + TICKET + "&app_id=A1 "
        "Authorization: Bearer xoxb-abc SK-very-secret-value')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('bot.test').exception('the link failed')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    output = result.stderr
    assert "RuntimeError: connect failed" in output and "the link failed" in output
    for secret in (TICKET, "SK-very-secret-value", "xoxb-abc"):
        assert secret not in output, output
    if fmt == "json":
        assert "[redacted]" in json.loads(output.strip())["exception"]
    else:
        assert "Traceback (most recent call last):" in output and "ticket=[redacted]" in output
