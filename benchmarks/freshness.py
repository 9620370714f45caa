"""Freshness: the time from the cloud finishing a job (or an order) to the Slack message about it.

N requests are put in flight at once, each with its own job (or paid order) in the sandbox, ending at
times spread evenly over `--spread` seconds after `--first-end` seconds. One process runs what a `worker`
runs, with the bot's default polling settings: the tracker's own loop (`Tracker.run`) and the courier.
For each request it measures, from the moment the cloud finished its work (the sandbox knows it):
- until its final state is in the database (the tracker's part), and
- until the first Slack call about it (the head edit or the reply in its thread; the fake Slack
  records call times), and the cloud calls the tracker made, in all and per second.

    python -m benchmarks.freshness --requests 100 --kind job --first-end 20 --spread 60

Slack's pacing is off by default (`--slack-pacing` turns the bot's defaults on): with job times scaled
down to seconds, Slack's ~48 edits a minute, not the polling, would set the time of a burst of endings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from benchmarks import services
from bot.cloud.client import build_cloud
from bot.courier import Courier
from bot.lifecycle import FINAL_STATES, State
from bot.sandbox import SandboxConfig
from bot.settings import Settings
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import SlackWriter, new_web_client
from bot.store.db import make_engine
from bot.store.models import AppRequest, utcnow
from bot.store.news import NewsStore
from bot.store.repository import RequestStore
from bot.store.schema import migrate
from bot.tracker import Tracker, TrackerConfig
from bot.workflow import CachedDirectory, CloudAdapter, Policy, Workflow

CHANNELS = 50
POLLS = ("ShowJob", "ShowJobDetail", "ShowCustomerOrderDetails", "ListOrderResources")


class NoGroups:
    async def group_members(self, group_id: str) -> set[str]:
        return set()


def seed(store: RequestStore, kind: str, work: list[dict[str, Any]], first_delay: float) -> None:
    """Requests as the bot leaves them: a job just submitted (first poll after the first delay), or an
    order just paid from Slack (polled at once)."""
    now = utcnow()
    rows = [{
        "id": f"AS-F{i:07d}", "requester_id": f"U0USER{i % 200:03d}", "channel_id": f"C{i % CHANNELS:03d}",
        "thread_ts": f"{i}.000100", "spec_json": '{"subscription_num": 1}', "spec_hash": "0" * 64,
        "charging_mode": "postPaid" if kind == "job" else "prePaid", "subscription_num": 1, "server_group_id": "g",
        "state": (State.SUBMITTED if kind == "job" else State.AWAITING_PAYMENT).value,
        "job_id": item["id"] if kind == "job" else None, "order_id": item["id"] if kind == "order" else None,
        "server_ids_json": "[]", "created_at": now, "updated_at": now, "submitted_at": now,
        "next_poll_at": now + timedelta(seconds=first_delay) if kind == "job" else now, "version": 1, "attempts": 1,
    } for i, item in enumerate(work)]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 1000):
            connection.execute(insert(AppRequest), rows[start:start + 1000])


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {"n": len(values), "mean": round(statistics.fmean(ordered), 2), "p50": round(ordered[len(ordered) // 2], 2),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2), "max": round(ordered[-1], 2)}


async def run(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    n = args.requests
    ends_in = [args.first_end + args.spread * i / max(n - 1, 1) for i in range(n)]
    work = []
    for start in range(0, n, 500):
        work += httpx.post(urls["sandbox"] + "/_bench/work", timeout=600,
                           json={"kind": args.kind, "ends_in": ends_in[start:start + 500]}).json()
    database = args.database or f"sqlite:///{tempfile.mkdtemp()}/freshness.db"
    engine = make_engine(database)
    migrate(engine)
    store = RequestStore(engine)
    seed(store, args.kind, work, defaults.poll_first_delay_seconds)
    end_of = {f"AS-F{i:07d}": item["end"] for i, item in enumerate(work)}
    thread_of = {(f"C{i % CHANNELS:03d}", f"{i}.000100"): f"AS-F{i:07d}" for i in range(n)}

    cfg = SandboxConfig()
    settings = Settings(huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,  # type: ignore[arg-type]
                        huaweicloud_sdk_project_id=cfg.project_id, workspace_endpoint=urls["sandbox"],
                        bss_endpoint=urls["sandbox"], vpc_endpoint=urls["sandbox"],
                        huaweicloud_sdk_iam_endpoint=urls["sandbox"], _env_file=None)  # type: ignore[call-arg]
    cloud = build_cloud(settings)
    pacing = ((defaults.slack_post_interval_seconds, defaults.slack_update_interval_seconds,
               defaults.slack_edit_window_seconds) if args.slack_pacing else (0.0, 0.0, 0.0))
    writer = SlackWriter(new_web_client("xoxb-fake-token", urls["slack"] + "/api/"), post_interval=pacing[0],
                         update_interval=pacing[1], edit_window=pacing[2])
    courier_engine = make_engine(database)
    courier_store = RequestStore(courier_engine)
    notifier = SlackNotifier(writer, courier_store, None, "C0NOTIFY", sandbox=False)
    courier = Courier(NewsStore(courier_engine), courier_store, notifier, "bench")
    # The bot's defaults, as `bot.runtime` passes them (the budget only where this version of the bot has one).
    wanted: dict[str, Any] = {"interval": timedelta(seconds=defaults.poll_interval_seconds),
                              "first_delay": timedelta(seconds=defaults.poll_first_delay_seconds),
                              "max_concurrent_calls": defaults.tracker_max_concurrent_calls,
                              "budget_per_second": getattr(defaults, "poll_budget_per_second", None)}
    known = {f.name for f in dataclasses.fields(TrackerConfig)}
    config = TrackerConfig(**{k: v for k, v in wanted.items() if k in known and v is not None})
    workflow = Workflow(store, CloudAdapter(cloud), CachedDirectory(NoGroups()), Policy(), worker_id="bench")
    tracker = Tracker(store, cloud, workflow, config, on_news=courier.wake)
    stop = asyncio.Event()
    started = time.time()
    tasks = [asyncio.create_task(courier.run(stop)), asyncio.create_task(tracker.run(stop))]
    news = NewsStore(engine)
    while time.time() - started < args.max_seconds:
        await asyncio.sleep(1.0)
        states = store.count_by_state()
        if all(State(s) in FINAL_STATES for s in states) and not news.backlog():
            break
    stop.set()
    await asyncio.gather(*tasks)
    finished_at = time.time()

    rows = {r.id: r for r in store.in_states(FINAL_STATES, limit=n + 1)}
    tracker_lag = [rows[i].finished_at.timestamp() - end for i, end in end_of.items()  # type: ignore[union-attr]
                   if i in rows and rows[i].finished_at is not None]
    first_call: dict[str, float] = {}
    for call in httpx.get(urls["slack"] + "/_bench/calls", timeout=120).json():
        request_id = thread_of.get((call["channel"], call["thread_ts"] or call["ts"]))
        if request_id and call["at"] >= end_of[request_id] and request_id not in first_call:
            first_call[request_id] = call["at"]
    slack_lag = [first_call[i] - end_of[i] for i in first_call]
    polls = httpx.get(urls["sandbox"] + "/_bench/polls", timeout=120).json()
    per_second: dict[int, int] = {}
    for operation in POLLS:
        for second, count in polls.get(operation, {}).items():
            per_second[int(second)] = per_second.get(int(second), 0) + count
    total_polls = sum(per_second.values())
    last_end = max(end_of.values())
    window = [per_second.get(s, 0) for s in range(int(started), int(last_end) + 1)]
    await cloud.aclose()
    await writer.drain()
    courier_engine.dispose()
    return {
        "requests": n, "kind": args.kind, "first_end_s": args.first_end, "spread_s": args.spread,
        "slack_pacing": args.slack_pacing, "tracker_config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
        "not_final": n - len(rows), "no_slack_call": n - len(first_call),
        "cloud_end_to_final_state_s": summary(tracker_lag), "cloud_end_to_slack_s": summary(slack_lag),
        "cloud_calls": total_polls, "cloud_calls_per_request": round(total_polls / n, 2),
        "cloud_calls_per_second_mean": round(total_polls / max(last_end - started, 1), 2),
        "cloud_calls_per_second_max": max(window, default=0),
        "run_s": round(finished_at - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--kind", choices=("job", "order"), default="job")
    parser.add_argument("--first-end", type=float, default=20.0, help="seconds until the first job ends")
    parser.add_argument("--spread", type=float, default=60.0, help="the endings are spread over this many seconds")
    parser.add_argument("--slack-pacing", action="store_true", help="the bot's default Slack pacing (default: off)")
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with services.running() as urls:
        result = asyncio.run(run(args, urls))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
