"""Tracker scale: many requests in flight in the sandbox, followed by one tracker to their end.

Runs what a `worker` process runs: the tracker and the Slack news courier, side by side. Measures per
poll cycle the wall time, CPU time and the tracker's database statements, then cloud calls per request
per interval, peak RSS, Slack writes per minute by method, the lag until every final state is in the
database, and how much Slack news is still waiting (in the database) at the end.

    python -m benchmarks.tracker_scale --requests 10000 --interval 30 --job-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, insert

from benchmarks import services
from bot.cloud.client import build_cloud
from bot.courier import Courier
from bot.lifecycle import FINAL_STATES, State
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import SlackWriter, new_web_client
from bot.store.db import make_engine
from bot.store.models import AppRequest, utcnow
from bot.store.news import NewsStore
from bot.store.repository import RequestStore
from bot.store.schema import migrate
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CachedDirectory, CloudAdapter, Policy, Workflow

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = 50


class NoGroups:
    async def group_members(self, group_id: str) -> set[str]:
        return set()




def seed_requests(store: RequestStore, job_ids: list[str]) -> None:
    now = utcnow()
    spec = '{"subscription_num": 1}'
    rows = [{
        "id": f"AS-B{i:07d}", "requester_id": f"U0USER{i % 200:03d}", "channel_id": f"C{i % CHANNELS:03d}",
        "thread_ts": f"{i}.000100", "spec_json": spec, "spec_hash": "0" * 64, "charging_mode": "postPaid",
        "subscription_num": 1, "server_group_id": "g", "state": State.SUBMITTED.value, "job_id": job_id,
        "server_ids_json": "[]", "created_at": now, "updated_at": now, "submitted_at": now, "next_poll_at": now,
        "version": 1, "attempts": 1,
    } for i, job_id in enumerate(job_ids)]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 1000):
            connection.execute(insert(AppRequest), rows[start:start + 1000])



async def run(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    job_ids = httpx.post(urls["sandbox"] + "/_sandbox/jobs/bulk", timeout=600,
                         json={"count": args.requests, "seconds": args.job_seconds}).json()["job_ids"]
    jobs_end = time.time() + args.job_seconds
    database = args.database or f"sqlite:///{tempfile.mkdtemp()}/scale.db"
    engine = make_engine(database)
    migrate(engine)
    store = RequestStore(engine)
    seed_requests(store, job_ids)
    statements = Counter[str]()
    event.listen(engine, "before_cursor_execute", lambda *a, **k: statements.update(["n"]))

    settings = services.sandbox_settings(urls)
    cloud = build_cloud(settings)
    writer = SlackWriter(new_web_client("xoxb-fake-token", urls["slack"] + "/api/"))
    # The courier has an engine of its own, so the statements counted are the tracker's alone.
    courier_engine = make_engine(database)
    courier_store = RequestStore(courier_engine)
    notifier = SlackNotifier(writer, courier_store, None, "C0NOTIFY", sandbox=False)
    courier = Courier(NewsStore(courier_engine), courier_store, notifier, "bench")
    # A budget as large as the load: each pass takes every due request at once, which is what this measures
    # (the database's cost per pass); the bot's own budget spreads polls instead (benchmarks/freshness.py).
    config = TrackerConfig(interval=timedelta(seconds=args.interval), max_concurrent_calls=args.concurrency,
                           batch=args.batch or args.requests, budget_per_second=float(args.requests))
    workflow = Workflow(store, CloudAdapter(cloud), CachedDirectory(NoGroups()), Policy(), worker_id="bench")
    tracker = Tracker(store, cloud, workflow, config, on_news=courier.wake)
    stop_courier = asyncio.Event()
    courier_task = asyncio.create_task(courier.run(stop_courier))

    cycles = []
    started = time.time()
    all_final_at = None
    while time.time() - started < args.max_seconds:
        wall0, cpu0, stmt0 = time.perf_counter(), time.process_time(), statements["n"]
        # As Tracker.run does: while a cycle takes a full batch, the next one follows at once.
        polled = batch = await tracker.cycle()
        runs = 1
        while batch == config.batch:
            batch = await tracker.cycle()
            polled += batch
            runs += 1
        cycles.append({"polled": polled, "tracker_cycles": runs, "wall_s": time.perf_counter() - wall0,
                       "cpu_s": time.process_time() - cpu0, "statements": statements["n"] - stmt0,
                       "at": time.time() - started})
        print(json.dumps(cycles[-1]), flush=True)
        if all_final_at is None and all(State(s) in FINAL_STATES for s in store.count_by_state()):
            all_final_at = time.time()
            break
        await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - wall0)))
    news = NewsStore(engine)
    pending_news = news.backlog()
    await asyncio.sleep(args.drain_seconds)
    stop_courier.set()
    await courier_task
    calls = httpx.get(urls["slack"] + "/calls", timeout=60).json()
    per_minute: dict[str, int] = {}
    for method in ("chat.postMessage", "chat.update"):
        minutes = Counter(int((c["at"] - started) // 60) for c in calls if c["method"] == method)
        per_minute[method] = max(minutes.values()) if minutes else 0
    log = httpx.get(urls["sandbox"] + "/_sandbox/log", timeout=120).json()["calls"]
    polls = [c for c in log if c["operation"] in ("ShowJob", "ShowJobDetail")]
    polling_cycles = sum(1 for c in cycles if c["polled"])
    notify_posts = sum(1 for c in calls if c["method"] == "chat.postMessage")
    result = {
        "requests": args.requests, "interval_s": args.interval, "job_seconds": args.job_seconds,
        "concurrency": args.concurrency, "batch": config.batch, "database": engine.dialect.name, "cycles": cycles,
        "cloud_calls_per_request_per_interval": len(polls) / (args.requests * max(polling_cycles, 1)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "slack_writes_per_minute_max": per_minute,
        "lag_after_jobs_end_until_all_final_s": (all_final_at - jobs_end) if all_final_at else None,
        "slack_posts_delivered": notify_posts, "slack_news_waiting_in_db_at_end": pending_news,
        "slack_news_waiting_in_db_after_drain": news.backlog(),
    }
    await cloud.aclose()
    await writer.drain()
    courier_engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--job-seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=0,
                        help="requests per tracker cycle (the bot's default is 200); default: all in one cycle")
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--drain-seconds", type=float, default=60.0)
    parser.add_argument("--out", default="benchmarks/results/tracker_scale.json")
    args = parser.parse_args()
    with services.running() as urls:
        result = asyncio.run(run(args, urls))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "cycles"}, indent=1))


if __name__ == "__main__":
    main()
