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
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from benchmarks import services
from bot.cloud.client import build_cloud
from bot.courier import Courier
from bot.lifecycle import FINAL_STATES, State
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


def request_id(index: int) -> str:
    return f"AS-F{index:07d}"


def thread_key(index: int) -> tuple[str, str]:
    """The (channel, thread ts) of a request's Slack thread, as the fake Slack records its calls."""
    return f"C{index % CHANNELS:03d}", f"{index}.000100"


def new_work(sandbox_url: str, kind: str, ends_in: list[float]) -> list[dict[str, Any]]:
    """One job (or paid order) in the sandbox for each length: [{"id", "end"}]."""
    work: list[dict[str, Any]] = []
    for start in range(0, len(ends_in), 500):
        work += httpx.post(sandbox_url + "/_bench/work", timeout=600,
                           json={"kind": kind, "ends_in": ends_in[start:start + 500]}).json()
    return work


def seed(store: RequestStore, kind: str, work: list[dict[str, Any]], first_delay: float, first_index: int = 0) -> None:
    """Requests as the bot leaves them: a job just submitted (first poll after the first delay), or an
    order just paid from Slack (polled at once). They are numbered from `first_index`."""
    now = utcnow()
    rows = [{
        "id": request_id(i), "requester_id": f"U0USER{i % 200:03d}", "channel_id": thread_key(i)[0],
        "thread_ts": thread_key(i)[1], "spec_json": '{"subscription_num": 1}', "spec_hash": "0" * 64,
        "charging_mode": "postPaid" if kind == "job" else "prePaid", "subscription_num": 1, "server_group_id": "g",
        "state": (State.SUBMITTED if kind == "job" else State.AWAITING_PAYMENT).value,
        "job_id": item["id"] if kind == "job" else None, "order_id": item["id"] if kind == "order" else None,
        "server_ids_json": "[]", "created_at": now, "updated_at": now, "submitted_at": now,
        "next_poll_at": now + timedelta(seconds=first_delay) if kind == "job" else now, "version": 1, "attempts": 1,
    } for i, item in enumerate(work, start=first_index)]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 1000):
            connection.execute(insert(AppRequest), rows[start:start + 1000])


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {"n": len(values), "mean": round(statistics.fmean(ordered), 2), "p50": round(ordered[len(ordered) // 2], 2),
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2), "max": round(ordered[-1], 2)}


@dataclass
class Bench:
    """What a `worker` runs, with the bot's default polling settings, and the requests put in flight."""

    args: argparse.Namespace
    urls: dict[str, str]
    defaults: Settings
    store: RequestStore
    tracker: Tracker
    courier: Courier
    config: TrackerConfig
    close: Callable[[], Awaitable[None]]
    end_of: dict[str, float] = field(default_factory=dict)  # request id -> when the cloud finished it
    target_of: dict[str, str] = field(default_factory=dict)  # the job or order id -> request id
    thread_of: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, ends_in: list[float]) -> None:
        """Put one request in flight for each length, each with its own job or order, submitted now."""
        first = len(self.end_of)
        work = new_work(self.urls["sandbox"], self.args.kind, ends_in)
        seed(self.store, self.args.kind, work, self.defaults.poll_first_delay_seconds, first)
        for i, item in enumerate(work, start=first):
            self.end_of[request_id(i)] = item["end"]
            self.target_of[item["id"]] = request_id(i)
            self.thread_of[thread_key(i)] = request_id(i)

    def first_slack_calls(self) -> dict[str, float]:
        """When the first Slack call about each request came after the cloud finished it."""
        first_call: dict[str, float] = {}
        for call in httpx.get(self.urls["slack"] + "/_bench/calls", timeout=120).json():
            found = self.thread_of.get((call["channel"], call["thread_ts"] or call["ts"]))
            if found and call["at"] >= self.end_of[found] and found not in first_call:
                first_call[found] = call["at"]
        return first_call

    def polls_per_second(self) -> dict[int, int]:
        polls = httpx.get(self.urls["sandbox"] + "/_bench/polls", timeout=120).json()
        per_second: dict[int, int] = {}
        for operation in POLLS:
            for second, count in polls.get(operation, {}).items():
                per_second[int(second)] = per_second.get(int(second), 0) + count
        return per_second

    def polls_per_request(self) -> dict[str, int]:
        polls = httpx.get(self.urls["sandbox"] + "/_bench/polls", params={"by": "target"}, timeout=120).json()
        per_request: dict[str, int] = {}
        for operation in POLLS:
            for target, count in polls.get(operation, {}).items():
                if target in self.target_of:
                    per_request[self.target_of[target]] = per_request.get(self.target_of[target], 0) + count
        return per_request


def start_bot(args: argparse.Namespace, urls: dict[str, str]) -> Bench:
    # The bot's defaults, and the environment's POLL_* settings, as `bot.runtime` reads them.
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    database = args.database or f"sqlite:///{tempfile.mkdtemp()}/freshness.db"
    engine = make_engine(database)
    migrate(engine)
    store = RequestStore(engine)
    settings = services.sandbox_settings(urls)
    cloud = build_cloud(settings)
    pacing = ((defaults.slack_post_interval_seconds, defaults.slack_update_interval_seconds,
               defaults.slack_edit_window_seconds) if args.slack_pacing else (0.0, 0.0, 0.0))
    writer = SlackWriter(new_web_client("xoxb-fake-token", urls["slack"] + "/api/"), post_interval=pacing[0],
                         update_interval=pacing[1], edit_window=pacing[2])
    courier_engine = make_engine(database)
    courier_store = RequestStore(courier_engine)
    notifier = SlackNotifier(writer, courier_store, None, "C0NOTIFY", sandbox=False)
    courier = Courier(NewsStore(courier_engine), courier_store, notifier, "bench")
    # As `bot.runtime` passes them (the budget only where this version of the bot has one).
    wanted: dict[str, Any] = {"interval": timedelta(seconds=defaults.poll_interval_seconds),
                              "first_delay": timedelta(seconds=defaults.poll_first_delay_seconds),
                              "max_concurrent_calls": defaults.tracker_max_concurrent_calls,
                              "budget_per_second": getattr(defaults, "poll_budget_per_second", None)}
    known = {f.name for f in dataclasses.fields(TrackerConfig)}
    config = TrackerConfig(**{k: v for k, v in wanted.items() if k in known and v is not None})
    workflow = Workflow(store, CloudAdapter(cloud), CachedDirectory(NoGroups()), Policy(), worker_id="bench")
    tracker = Tracker(store, cloud, workflow, config, on_news=courier.wake)

    async def close() -> None:
        await cloud.aclose()
        await writer.drain()
        courier_engine.dispose()

    return Bench(args, urls, defaults, store, tracker, courier, config, close)


def settings_of(bench: Bench) -> dict[str, Any]:
    return {"kind": bench.args.kind, "first_end_s": bench.args.first_end, "spread_s": bench.args.spread,
            "slack_pacing": bench.args.slack_pacing,
            "tracker_config": {k: str(v) for k, v in dataclasses.asdict(bench.config).items()}}


async def run(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    """All N requests at once, then until the last is in Slack: the number in flight falls from N to 0."""
    n = args.requests
    bench = start_bot(args, urls)
    bench.add([args.first_end + args.spread * i / max(n - 1, 1) for i in range(n)])
    stop = asyncio.Event()
    started = time.time()
    tasks = [asyncio.create_task(bench.courier.run(stop)), asyncio.create_task(bench.tracker.run(stop))]
    news = NewsStore(bench.store.engine)
    while time.time() - started < args.max_seconds:
        await asyncio.sleep(1.0)
        states = bench.store.count_by_state()
        if all(State(s) in FINAL_STATES for s in states) and not news.backlog():
            break
    stop.set()
    await asyncio.gather(*tasks)
    finished_at = time.time()

    rows = {r.id: r for r in bench.store.in_states(FINAL_STATES, limit=n + 1)}
    end_of = bench.end_of
    tracker_lag = [rows[i].finished_at.timestamp() - end for i, end in end_of.items()  # type: ignore[union-attr]
                   if i in rows and rows[i].finished_at is not None]
    first_call = bench.first_slack_calls()
    slack_lag = [first_call[i] - end_of[i] for i in first_call]
    per_second = bench.polls_per_second()
    total_polls = sum(per_second.values())
    last_end = max(end_of.values())
    window = [per_second.get(s, 0) for s in range(int(started), int(last_end) + 1)]
    await bench.close()
    return {
        "requests": n, **settings_of(bench), "not_final": n - len(rows), "no_slack_call": n - len(first_call),
        "cloud_end_to_final_state_s": summary(tracker_lag), "cloud_end_to_slack_s": summary(slack_lag),
        "cloud_calls": total_polls, "cloud_calls_per_request": round(total_polls / n, 2),
        "cloud_calls_per_second_mean": round(total_polls / max(last_end - started, 1), 2),
        "cloud_calls_per_second_max": max(window, default=0),
        "run_s": round(finished_at - started, 1),
    }


async def run_steady(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    """N requests kept in flight: each one that finishes is replaced by a new one, submitted now, with a length
    drawn from the same spread. After a warm-up, the requests that reach their final state within the measured
    window are counted: their cloud calls, and the time from the cloud finishing to their final state and Slack."""
    n = args.requests
    rng = random.Random(args.seed)

    def lengths(count: int) -> list[float]:
        return [rng.uniform(args.first_end, args.first_end + args.spread) for _ in range(count)]

    bench = start_bot(args, urls)
    bench.add(lengths(n))
    stop = asyncio.Event()
    started = time.time()
    tasks = [asyncio.create_task(bench.courier.run(stop)), asyncio.create_task(bench.tracker.run(stop))]
    warm_up = args.first_end + args.spread if args.warm_up is None else args.warm_up
    window = (started + warm_up, started + warm_up + args.steady)
    in_flight_seen: list[int] = []
    while time.time() < window[1]:
        await asyncio.sleep(0.25)
        states = await asyncio.to_thread(bench.store.count_by_state)
        in_flight = sum(count for state, count in states.items() if State(state) not in FINAL_STATES)
        if time.time() >= window[0]:
            in_flight_seen.append(in_flight)
        if in_flight < n:
            await asyncio.to_thread(bench.add, lengths(n - in_flight))
    # Let the courier send what the window's last endings brought, then stop.
    news = NewsStore(bench.store.engine)
    while news.backlog() and time.time() < window[1] + 30:
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)

    rows = bench.store.in_states(FINAL_STATES, limit=len(bench.end_of) + 1)
    measured = [r.id for r in rows if r.finished_at is not None and window[0] <= r.finished_at.timestamp() < window[1]]
    finished_at = {r.id: r.finished_at.timestamp() for r in rows if r.finished_at is not None}
    first_call = bench.first_slack_calls()
    calls = bench.polls_per_request()
    per_request = [calls.get(i, 0) for i in measured]
    per_second = bench.polls_per_second()
    seconds = [per_second.get(s, 0) for s in range(int(window[0]), int(window[1]))]
    await bench.close()
    return {
        "mode": "steady", "in_flight": n, **settings_of(bench), "seed": args.seed,
        "warm_up_s": warm_up, "window_s": args.steady,
        "in_flight_in_window": {"min": min(in_flight_seen, default=0), "max": max(in_flight_seen, default=0),
                                "mean": round(statistics.fmean(in_flight_seen), 1) if in_flight_seen else None},
        "finished_in_window": len(measured), "no_slack_call": sum(1 for i in measured if i not in first_call),
        "cloud_calls_per_finished_request": summary([float(c) for c in per_request]),
        # The same in the steady state's own terms: the calls made in the window over the requests finished in it.
        "cloud_calls_in_window_per_finished_request": round(sum(seconds) / max(len(measured), 1), 2),
        "cloud_calls_per_second_mean": round(statistics.fmean(seconds), 2) if seconds else None,
        "cloud_calls_per_second_max": max(seconds, default=0),
        "cloud_end_to_final_state_s": summary([finished_at[i] - bench.end_of[i] for i in measured]),
        "cloud_end_to_slack_s": summary([first_call[i] - bench.end_of[i] for i in measured if i in first_call]),
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
    parser.add_argument("--steady", type=float, default=None, metavar="SECONDS",
                        help="keep --requests in flight and measure this many seconds after the warm-up")
    parser.add_argument("--warm-up", type=float, default=None,
                        help="seconds before the steady window (default: the longest job, --first-end + --spread)")
    parser.add_argument("--seed", type=int, default=1, help="of the steady mode's job lengths")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    with services.running() as urls:
        result = asyncio.run(run_steady(args, urls) if args.steady else run(args, urls))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
