"""The front door's costs: how fast junk is turned away, and what the shared replay memory adds per request.

    python -m benchmarks.front_door [--postgres URL] [--inserts 2000]

- A 20 MB body announced by `Content-Length`, and a 20 MB chunked body, sent on a raw socket to the real
  app (`create_asgi_app` on uvicorn, loopback): the time until the 413 arrives.
- The replay memory's insert (`ReplayMemory.first_time`), one per accepted request, on a SQLite file and
  on PostgreSQL: the median and p99 of single inserts, back to back.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from bot.runtime import build_runtime
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.server import create_asgi_app
from bot.settings import Settings
from bot.store.db import make_engine
from bot.store.replays import ReplayMemory
from bot.store.schema import migrate
from tests.fake_slack import FakeSlack
from tests.harness import SIGNING_SECRET

TWENTY_MB = 20 * 1024 * 1024


@contextmanager
def running_app(directory: Path) -> Iterator[tuple[str, int]]:
    sandbox, fake = Sandbox(SandboxConfig()), FakeSlack()
    with BackgroundServer(sandbox.app) as cloud, BackgroundServer(fake.app) as slack:
        cfg = sandbox.config
        settings = Settings(
            _env_file=None, slack_bot_token=fake.token, slack_signing_secret=SIGNING_SECRET,  # type: ignore[call-arg]
            slack_api_url=slack.url + "/api/", huaweicloud_sdk_ak=cfg.access_key, huaweicloud_sdk_sk=cfg.secret_key,
            huaweicloud_sdk_project_id=cfg.project_id, workspace_endpoint=cloud.url, bss_endpoint=cloud.url,
            vpc_endpoint=cloud.url, huaweicloud_sdk_iam_endpoint=cloud.url,
            database_url=f"sqlite:///{directory}/bot.db", log_level="WARNING")
        with BackgroundServer(create_asgi_app(build_runtime(settings), run_tracker=False), lifespan=True) as app:
            yield app.host, app.port


def refusal_seconds(host: str, port: int, chunked: bool) -> float:
    """From the first byte sent to the status line of the answer; the client keeps sending until then."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {TWENTY_MB}"
    head = (f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"{framing}\r\nX-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0={'0' * 64}\r\n\r\n")
    piece = b"A" * (1024 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    started = time.perf_counter()
    with socket.create_connection((host, port)) as connection:
        connection.sendall(head.encode())
        connection.setblocking(False)
        answer, sent = b"", 0
        while b"\r\n" not in answer:
            try:
                answer += connection.recv(4096)
            except BlockingIOError:
                if sent < 20:
                    try:
                        connection.send(chunk)
                        sent += 1
                    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                        pass
                time.sleep(0.0005)
    elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:40]
    return elapsed


def insert_costs(url: str, inserts: int) -> tuple[float, float]:
    engine = make_engine(url)
    migrate(engine)
    memory = ReplayMemory(engine)
    memory.first_time(secrets.token_hex(32), int(time.time()) + 301)  # the first call also purges
    costs = []
    for _ in range(inserts):
        started = time.perf_counter()
        memory.first_time(secrets.token_hex(32), int(time.time()) + 301)
        costs.append(time.perf_counter() - started)
    engine.dispose()
    costs.sort()
    return statistics.median(costs) * 1000, costs[int(len(costs) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--inserts", type=int, default=2000)
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        with running_app(Path(directory)) as (host, port):
            for chunked in (False, True):
                times = sorted(refusal_seconds(host, port, chunked) for _ in range(args.tries))
                print(f"20 MB {'chunked' if chunked else 'with Content-Length'}: 413 after median "
                      f"{statistics.median(times) * 1000:.1f} ms, worst {times[-1] * 1000:.1f} ms ({args.tries} tries)")
        median, p99 = insert_costs(f"sqlite:///{directory}/replays.db", args.inserts)
        print(f"replay insert, SQLite file: median {median:.2f} ms, p99 {p99:.2f} ms ({args.inserts} inserts)")
    schema = "bench_" + secrets.token_hex(4)
    admin = make_engine(args.postgres)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        median, p99 = insert_costs(f"{args.postgres}?options=-csearch_path%3D{schema}", args.inserts)
        print(f"replay insert, PostgreSQL: median {median:.2f} ms, p99 {p99:.2f} ms ({args.inserts} inserts)")
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
