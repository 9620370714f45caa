"""Start-up: time until `appserver-bot serve` answers /healthz on an empty database, and its RSS then.

    python -m benchmarks.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import services
from bot.sandbox import SandboxConfig
from bot.sandbox.server import free_port
from tests.harness import SIGNING_SECRET

ROOT = Path(__file__).resolve().parent.parent




def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_start(urls: dict[str, str], with_cloud: bool) -> tuple[float, float]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-fake-token",
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": urls["slack"] + "/api/", "LOG_LEVEL": "WARNING"}
    if with_cloud:
        cfg = SandboxConfig()
        env.update(HUAWEICLOUD_SDK_AK=cfg.access_key, HUAWEICLOUD_SDK_SK=cfg.secret_key,
                   HUAWEICLOUD_SDK_PROJECT_ID=cfg.project_id, WORKSPACE_ENDPOINT=urls["sandbox"],
                   BSS_ENDPOINT=urls["sandbox"], VPC_ENDPOINT=urls["sandbox"],
                   HUAWEICLOUD_SDK_IAM_ENDPOINT=urls["sandbox"])
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=tempfile.mkdtemp(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.02)
        ready = time.perf_counter() - started
        time.sleep(0.5)
        return ready, rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with services.running() as urls:
        for label, with_cloud in (("cloud credentials", True), ("sandbox mode (built-in cloud)", False)):
            runs = [one_start(urls, with_cloud) for _ in range(args.runs)]
            ready = [r[0] for r in runs]
            rss = [r[1] for r in runs]
            print(f"{label}: ready in {statistics.median(ready):.2f} s (min {min(ready):.2f}, max {max(ready):.2f}); "
                  f"RSS {statistics.median(rss):.0f} MB (min {min(rss):.0f}, max {max(rss):.0f})", flush=True)


if __name__ == "__main__":
    main()
