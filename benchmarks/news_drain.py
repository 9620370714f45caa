"""Draining the Slack news of many requests that finish together, at Slack's published pace.

N requests, their threads in `--channels` channels and `--cards` of them with an approval card, reach their
final state in one moment, as one tracker cycle writes them: one FINISHED news each. `--workers` couriers, each
with its own database engine as separate `worker` processes have, deliver it with the bot's default settings
(Slack's pace shared through the database: one post per channel per `SLACK_POST_INTERVAL_SECONDS`, 240 posts a
minute in all, one chat.update per `SLACK_UPDATE_INTERVAL_SECONDS`) to the fake Slack Web API, which runs in a
process of its own and records every call.

Measured from the moment the news was written, per request:
- told: its outcome posted where its requester is notified (a reply in its thread, or its line in a digest of
  outcomes in the thread's channel);
- notified: its outcome in NOTIFY_CHANNEL;
and when the queue was empty (every head and card redrawn too), and the Slack calls per method in the busiest
minute, and per channel in the busiest 10 seconds.

    python -m benchmarks.news_drain --requests 1000 --channels 1 --cards 300 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import insert, select

from benchmarks import services
from bot.courier import Courier, CourierConfig
from bot.lifecycle import State
from bot.notify import Event
from bot.settings import Settings
from bot.slack.notifier import SlackNotifier
from bot.slack.writer import DatabasePace, SlackWriter, new_web_client
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.models import AppRequest, SlackNews, utcnow
from bot.store.news import NewsStore, news_row
from bot.store.pace import SharedPace
from bot.store.repository import RequestStore
from bot.store.schema import migrate
from tests.specs import office_body

APPROVALS, NOTIFY = "C0APPROVALS", "C0NOTIFY"


def seed(database: str, requests: int, channels: int, cards: int) -> dict[int, str]:
    """N requests that have just succeeded, each with its FINISHED news; returns news id -> request id."""
    engine = make_engine(database)
    migrate(engine)
    spec = parse_spec(office_body())
    now = utcnow()
    rows = [{
        "id": f"AS-D{i:07d}", "requester_id": f"U0USER{i % 200:03d}", "channel_id": f"C{i % channels:03d}",
        "thread_ts": f"{1_700_000_000 + i}.000100", "spec_json": spec.canonical_json(), "spec_hash": spec.spec_hash(),
        "charging_mode": "prePaid" if i < cards else "postPaid", "subscription_num": 1, "server_group_id": "g",
        "state": State.SUCCEEDED.value, "job_id": f"job-{i}", "server_ids_json": json.dumps([f"srv-{i}"]),
        "decided_by": "U0APPROVER" if i < cards else None, "approval_channel_id": APPROVALS if i < cards else None,
        "approval_ts": f"{1_700_100_000 + i}.000200" if i < cards else None,
        "created_at": now - timedelta(minutes=30), "updated_at": now, "submitted_at": now - timedelta(minutes=20),
        "finished_at": now, "version": 5, "attempts": 1,
    } for i in range(requests)]
    with engine.begin() as connection:  # as one tracker cycle writes them: the states and their news at once
        for start in range(0, len(rows), 500):
            connection.execute(insert(AppRequest), rows[start:start + 500])
        connection.execute(insert(SlackNews), [news_row(r["id"], Event.FINISHED, now=now) for r in rows])
        news = {int(i): str(r) for i, r in connection.execute(select(SlackNews.id, SlackNews.request_id))}
    engine.dispose()
    return news


def a_worker(database: str, slack_url: str, defaults: Settings, name: str) -> tuple[Courier, SlackWriter]:
    engine = make_engine(database)
    store = RequestStore(engine)
    writer = SlackWriter(new_web_client("xoxb-fake-token", slack_url + "/api/"),
                         post_interval=defaults.slack_post_interval_seconds,
                         update_interval=defaults.slack_update_interval_seconds,
                         edit_window=defaults.slack_edit_window_seconds, pace=DatabasePace(SharedPace(engine)))
    notifier = SlackNotifier(writer, store, APPROVALS, NOTIFY, sandbox=False)
    return Courier(NewsStore(engine), store, notifier, name, CourierConfig()), writer


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {"n": len(values), "mean": round(statistics.fmean(ordered), 1), "p50": round(ordered[len(ordered) // 2], 1),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1), "max": round(ordered[-1], 1)}


def busiest(times: list[float], seconds: float) -> int:
    """The most calls in any window of `seconds`."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


async def drain(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    database = args.database or f"sqlite:///{tempfile.mkdtemp()}/drain.db"
    news_of = seed(database, args.requests, args.channels, args.cards)
    workers = [a_worker(database, urls["slack"], defaults, f"worker-{n}") for n in range(args.workers)]
    for _, writer in workers:
        writer.client.session = aiohttp.ClientSession()
    backlog = NewsStore(make_engine(database))
    started = time.time()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(courier.run(stop)) for courier, _ in workers]
    drained_at = None
    while time.time() - started < args.max_seconds:
        await asyncio.sleep(1.0)
        if await asyncio.to_thread(backlog.backlog) == 0:
            drained_at = time.time()
            break
    stop.set()
    await asyncio.gather(*tasks)
    for _, writer in workers:
        await writer.client.session.close()  # type: ignore[union-attr]

    calls = httpx.get(urls["slack"] + "/_bench/calls", timeout=120).json()
    told: dict[str, float] = {}
    notified: dict[str, float] = {}
    for call in calls:
        for key in call["keys"]:
            news_id, _, what = key.partition(":")
            request = news_of.get(int(news_id))
            target = told if what == "final" else notified if what == "outcome" else None
            if request is not None and target is not None:
                target.setdefault(request, call["at"] - started)
    by_method: dict[str, list[float]] = {}
    posts_by_channel: dict[str, list[float]] = {}
    for call in calls:
        by_method.setdefault(call["method"], []).append(call["at"])
        if call["method"] == "chat.postMessage":
            posts_by_channel.setdefault(call["channel"], []).append(call["at"])
    edits = by_method.get("chat.update", [])
    return {
        "requests": args.requests, "channels": args.channels, "cards": args.cards, "workers": args.workers,
        "database": "postgresql" if database.startswith("postgres") else "sqlite",
        "pacing": {"post_interval_s": defaults.slack_post_interval_seconds,
                   "update_interval_s": defaults.slack_update_interval_seconds,
                   "workspace_post_interval_s": workers[0][1].workspace_post_interval},
        "told_s": summary(list(told.values())), "not_told": args.requests - len(told),
        "notified_s": summary(list(notified.values())), "not_notified": args.requests - len(notified),
        "queue_empty_s": round(drained_at - started, 1) if drained_at else None,
        "last_edit_s": round(max(edits) - started, 1) if edits else None,
        "calls": {method: len(times) for method, times in sorted(by_method.items())},
        "busiest_minute": {method: busiest(times, 60) for method, times in sorted(by_method.items())},
        "posts_per_channel_busiest_10s": max((busiest(t, 10) for t in posts_by_channel.values()), default=0),
        "posts": len(by_method.get("chat.postMessage", [])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=1, help="the threads are spread over this many channels")
    parser.add_argument("--cards", type=int, default=300, help="how many of the requests have an approval card")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--max-seconds", type=float, default=2400.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with services.running() as urls:
        result = asyncio.run(drain(args, urls))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
