"""Ack latency and throughput: the bot in HTTP mode against a bare Bolt app that only acks.

Both run as `uvicorn` processes on loopback (the bot as one `serve`, or with `--shape procfile` as
the Procfile's web and worker); the fake Slack Web API and the sandbox run in a process of their own;
this process is the load generator. Signed `/appserver create` commands, Approve clicks and
create-form submissions at 1, 10 and 50 concurrent senders, each measured several times.

    python -m benchmarks.ack_latency [--runs 3] [--requests 300] [--shape serve|procfile] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import httpx
from sqlalchemy import text

from benchmarks import services
from bot.cloud.client import build_cloud
from bot.lifecycle import State
from bot.sandbox import SandboxConfig, seed
from bot.sandbox.server import free_port
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.repository import NewRequest, RequestStore
from bot.store.schema import migrate
from tests.harness import SIGNING_SECRET, create_submission, sign

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 10, 50)
SCENARIOS = ("command", "approve", "view_submission")
# "bare" is Bolt as it ships (its runner polls for the ack every 10 ms): the targets' yardstick. "bare-at-ack"
# answers the moment its listener acks, as the bot does: the floor, against which the bot's own cost shows.
APPS = ("bare", "bare-at-ack", "bot")
APPROVERS = [f"U0APPROVER{i:04d}" for i in range(2000)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]




def wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.post(url + "/slack/events", content=b"", timeout=2)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start") from None
            time.sleep(0.2)


def start_app(kind: str, urls: dict[str, str], database: str, shape: str = "serve"
              ) -> tuple[list[subprocess.Popen[str]], str]:
    port = free_port()
    cfg = SandboxConfig()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-fake-token",
           "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": urls["slack"] + "/api/",
           "HUAWEICLOUD_SDK_AK": cfg.access_key, "HUAWEICLOUD_SDK_SK": cfg.secret_key,
           "HUAWEICLOUD_SDK_PROJECT_ID": cfg.project_id, "WORKSPACE_ENDPOINT": urls["sandbox"],
           "BSS_ENDPOINT": urls["sandbox"], "VPC_ENDPOINT": urls["sandbox"],
           "HUAWEICLOUD_SDK_IAM_ENDPOINT": urls["sandbox"], "DATABASE_URL": database,
           "APPROVERS": ",".join(APPROVERS), "APPROVAL_CHANNEL": "C0APPROVALS", "LOG_LEVEL": "WARNING"}
    commands = [[sys.executable, "-m", "benchmarks.bare_bolt", str(port), *(["--at-ack"] if kind == "bare-at-ack" else [])]]
    if kind == "bot":
        web = [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)]
        # "procfile": the web process only answers and stores; a worker process tracks and tells Slack.
        commands = [web] if shape == "serve" else [[*web, "--no-tracker"], [sys.executable, "-m", "bot", "worker"]]
    procs = [subprocess.Popen(args, cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for args in commands]
    url = f"http://127.0.0.1:{port}"
    wait_up(url, procs[0])
    return procs, url


@contextmanager
def fresh_database(postgres: str | None) -> Iterator[str]:
    """A new, migrated database for one run: an SQLite file, or a schema of its own in PostgreSQL."""
    if postgres is None:
        database = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        migrate(make_engine(database))
        yield database
        return
    schema = "bench_" + secrets.token_hex(4)
    admin = make_engine(postgres)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    database = f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}"
    engine = make_engine(database)
    migrate(engine)
    engine.dispose()
    try:
        yield database
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# Request bodies ---------------------------------------------------------------------------------

def command_body(n: int) -> tuple[bytes, str]:
    trigger = f"{time.time_ns()}.{n}.bench"
    form = {"token": "x", "team_id": "T1", "channel_id": "C0REQ", "user_id": "U0ASKER", "command": "/appserver",
            "text": "create", "response_url": "http://127.0.0.1:9/none", "trigger_id": trigger}
    return urlencode(form).encode(), trigger


def click_body(n: int, value: str) -> tuple[bytes, str]:
    payload = {"type": "block_actions", "user": {"id": APPROVERS[n % len(APPROVERS)]}, "team": {"id": "T1"},
               "trigger_id": f"{time.time_ns()}.{n}", "channel": {"id": "C0APPROVALS"},
               "message": {"ts": "1.0"}, "container": {"type": "message", "channel_id": "C0APPROVALS"},
               "actions": [{"action_id": Action.APPROVE.value, "value": value, "type": "button",
                            "block_id": "b", "action_ts": str(time.time_ns())}]}
    return ("payload=" + quote(json.dumps(payload))).encode(), ""


def submission_body(n: int) -> tuple[bytes, str]:
    # A person of their own per form: one person's waiting requests are capped (MAX_PENDING_PER_USER), and the
    # benchmark measures storing a request, not refusing one.
    return create_submission(n, user=f"U0ASKER{n}"), ""


async def drive(url: str, make: Callable[[int], tuple[bytes, str]], concurrency: int, total: int
                ) -> tuple[list[float], float, dict[str, float]]:
    """Closed-loop load: `concurrency` senders, each sending its next request when the last is answered.
    Bodies are built and signed beforehand, and aiohttp is the client, so the generator's own CPU time
    (which shares the cores with the app) stays small."""
    prepared = []
    for n in range(total):
        body, trigger = make(n)
        prepared.append((body, trigger, {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}))
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    queue = iter(prepared)

    async def sender(session: aiohttp.ClientSession) -> None:
        for body, trigger, headers in queue:
            if trigger:
                sent_at[trigger] = time.time()
            started = time.perf_counter()
            async with session.post(url + "/slack/events", data=body, headers=headers) as response:
                await response.read()
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {(await response.text())[:200]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, total / elapsed, sent_at


def views_open_lags(slack_url: str, sent_at: dict[str, float]) -> list[float]:
    calls = httpx.get(slack_url + "/calls", params={"method": "views.open"}, timeout=30).json()
    return [c["at"] - sent_at[c["trigger_id"]] for c in calls if c["trigger_id"] in sent_at]


def check_quota_times(urls: dict[str, str], total: int) -> list[float]:
    """One CheckQuota after another from the bot's own cloud client to the sandbox: the part of a submission's
    answer that its target allows beyond the bare app's."""
    settings = services.sandbox_settings(urls)
    product = seed.server_groups()[0]["product_id"]  # as the submissions order

    async def measure() -> list[float]:
        cloud = build_cloud(settings)
        times = []
        try:
            for _ in range(total):
                started = time.perf_counter()
                await cloud.workspace.check_quota(product_id=product, subscription_num=1, disk_size=80, is_period=True)
                times.append(time.perf_counter() - started)
        finally:
            await cloud.aclose()
        return times

    return asyncio.run(measure())


def pending_request(database: str) -> str:
    """A request waiting for approval; returns the value its card's Approve button carries."""
    store = RequestStore(make_engine(database))
    spec = parse_spec({"server_group_id": "g", "subscription_num": 1, "product_id": "p",
                       "root_volume": {"type": "SAS", "size": 80}, "subnet_id": "s", "vpc_id": "v",
                       "create_server_extend_param": {"charging_mode": "prePaid", "period_type": 2, "period_num": 1}})
    row = store.create(NewRequest("U0ASKER", spec.canonical_json(), spec.spec_hash(), "prePaid", 1, "g"),
                       State.PENDING_APPROVAL, "U0ASKER")
    return button_value(row)


def cpu_seconds(pids: list[int]) -> float | None:
    """CPU time (user + system) the processes have used so far; None where /proc does not tell (not Linux)."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def measure(kind: str, run: int, urls: dict[str, str], database: str, args: argparse.Namespace
            ) -> list[dict[str, Any]]:
    """Every scenario at every load against one freshly started app."""
    procs, url = start_app(kind, urls, database, args.shape)
    rows: list[dict[str, Any]] = []
    try:
        approve_value = pending_request(database)
        scenarios: dict[str, Callable[[int], tuple[bytes, str]]] = {
            "command": command_body,
            "approve": lambda n: click_body(n, approve_value),
            "view_submission": submission_body,
        }
        for name, make in scenarios.items():
            if name not in args.scenario:
                continue
            for concurrency in args.senders:
                cpu_before = cpu_seconds([p.pid for p in procs])
                latencies, rps, sent = asyncio.run(drive(url, make, concurrency, args.requests))
                cpu_after = cpu_seconds([p.pid for p in procs])
                row: dict[str, Any] = {
                    "app": kind, "run": run, "scenario": name, "concurrency": concurrency, "shape": args.shape,
                    "database": "postgresql" if args.postgres else "sqlite",
                    "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
                    "p99_ms": 1000 * percentile(latencies, 99), "rps": rps,
                    # the app's processes (web and worker), per request: what its answers cost the machine
                    "cpu_ms_per_request": None if cpu_before is None or cpu_after is None
                    else 1000 * (cpu_after - cpu_before) / args.requests,
                }
                if name == "command" and kind == "bot":
                    time.sleep(1.0)
                    lags = views_open_lags(urls["slack"], sent)
                    row["views_open_p99_ms"] = 1000 * percentile(lags, 99) if lags else None
                    row["views_open_count"] = len(lags)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--shape", choices=["serve", "procfile"], default="serve",
                        help="the bot as one `serve` process, or as the Procfile's web (--no-tracker) and worker")
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to use instead of SQLite files")
    parser.add_argument("--out", default="benchmarks/results/ack.json")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="measure only this scenario (repeatable; default: all)")
    parser.add_argument("--senders", type=int, action="append",
                        help="only this many senders (repeatable; default: 1, 10, 50)")
    args = parser.parse_args()
    args.scenario = args.scenario or list(SCENARIOS)
    args.senders = args.senders or list(CONCURRENCY)
    results: list[dict[str, Any]] = []
    with services.running() as urls:
        quota = check_quota_times(urls, args.requests)
        results.append({"app": "CheckQuota", "scenario": "check_quota", "p50_ms": 1000 * percentile(quota, 50),
                        "p99_ms": 1000 * percentile(quota, 99)})
        for kind in APPS:
            for run in range(args.runs):
                with fresh_database(args.postgres) as database:
                    results += measure(kind, run, urls, database, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    summarize(results)


def _cpu(rows: list[dict[str, Any]]) -> str:
    values = [r["cpu_ms_per_request"] for r in rows if r.get("cpu_ms_per_request") is not None]
    return f"{statistics.median(values):.2f}" if values else "?"


def summarize(results: list[dict[str, Any]]) -> None:
    """One row per scenario and load: medians over the runs (the bot's p99 with its range)."""
    print("\n| scenario | senders | bare p99 ms | bare-at-ack p99 ms | bot p50 ms | bot p99 ms (min-max) | bot req/s "
          "| p99 bot/bare | p99 bot/bare-at-ack | CPU ms a request: bare, bot |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for concurrency in CONCURRENCY:
            runs = {kind: [r for r in results if r["app"] == kind and r["scenario"] == scenario
                           and r["concurrency"] == concurrency] for kind in APPS}
            if not all(runs.values()):
                continue
            p99 = {kind: statistics.median(r["p99_ms"] for r in rows) for kind, rows in runs.items()}
            bot = runs["bot"]
            print(f"| {scenario} | {concurrency} | {p99['bare']:.1f} | {p99['bare-at-ack']:.1f} | "
                  f"{statistics.median(r['p50_ms'] for r in bot):.1f} | {p99['bot']:.1f} "
                  f"({min(r['p99_ms'] for r in bot):.1f}-{max(r['p99_ms'] for r in bot):.1f}) | "
                  f"{statistics.median(r['rps'] for r in bot):.0f} | {p99['bot'] / p99['bare']:.2f} | "
                  f"{p99['bot'] / p99['bare-at-ack']:.2f} | {_cpu(runs['bare'])}, {_cpu(bot)} |")
    for row in results:
        if row["scenario"] == "check_quota":
            print(f"\nOne CheckQuota from the bot's cloud client to the sandbox, one after another: "
                  f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms")
    lags = [r["views_open_p99_ms"] for r in results if r.get("views_open_p99_ms") is not None]
    if lags:
        print(f"\nviews.open after the command, p99 per run and load: {', '.join(f'{x:.0f}' for x in lags)} ms")


if __name__ == "__main__":
    main()
