"""The fake Slack Web API and the sandbox cloud in a process of their own, so a benchmark's load
generator and the bot under test do not share their CPU time with them.

    python -m benchmarks.services   # prints one JSON line: {"slack": URL, "sandbox": URL}, then serves
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from tests.fake_slack import FakeSlack


def start() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start this module in a process of its own; returns the process and the two base URLs."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.services"], cwd=root, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    urls: dict[str, str] = json.loads(proc.stdout.readline())
    return proc, urls


def main() -> None:
    slack = FakeSlack()
    sandbox = Sandbox(SandboxConfig(job_seconds=2.0, order_seconds=1.0, instance_quota=1_000_000))
    with BackgroundServer(slack.app) as slack_server, BackgroundServer(sandbox.app) as sandbox_server:
        print(json.dumps({"slack": slack_server.url, "sandbox": sandbox_server.url}), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
