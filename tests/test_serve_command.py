"""`appserver-bot serve` and `worker` as an operator starts them: one command, sandbox when no cloud."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bot.sandbox.server import free_port
from tests.fake_slack import FakeSlack
from tests.harness import SIGNING_SECRET, sign

ROOT = Path(__file__).resolve().parent.parent






def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    full = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=cwd, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_serve_runs_on_the_sandbox_with_two_tokens(fake_slack: tuple[FakeSlack, str], tmp_path: Path) -> None:
    fake, url = fake_slack
    port = free_port()
    proc = start(["serve", "--host", "127.0.0.1", "--port", str(port)],
                 {"SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": url}, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        body = health.json()
        assert health.status_code == 200 and body["sandbox"] is True and body["tracker"]["running"] is True
        assert (tmp_path / "appserver-bot.db").exists()  # the default SQLite file, created and migrated
        command = b"token=x&command=%2Fappserver&text=help&user_id=U1&channel_id=C1&trigger_id=1.2.3"
        answer = httpx.post(base + "/slack/events", content=command,
                            headers={"Content-Type": "application/x-www-form-urlencoded", **sign(command)})
        assert answer.status_code == 200 and "/appserver" in answer.text
        assert "appserver_requests" in httpx.get(base + "/metrics").text
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    # Uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output and "Traceback" not in output
    assert "SANDBOX" in output
    for secret in (fake.token, SIGNING_SECRET):
        assert secret not in output


def test_serve_without_tokens_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 2 and result.stderr.startswith("appserver-bot: SLACK_BOT_TOKEN is not set")


def test_worker_starts_and_stops_cleanly(fake_slack: tuple[FakeSlack, str], tmp_path: Path) -> None:
    fake, url = fake_slack
    proc = start(["worker"], {"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": url}, tmp_path)
    time.sleep(3)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "tracker" in output
