"""Slack writes stay below the method tiers; edits of one message are merged; the final one always lands."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from bot.metrics import Metrics
from bot.sandbox.server import BackgroundServer
from bot.slack.writer import SlackWriter, new_web_client
from tests.fake_slack import FakeSlack


@pytest.fixture
def fake() -> Iterator[tuple[FakeSlack, str]]:
    slack = FakeSlack()
    with BackgroundServer(slack.app) as server:
        yield slack, server.url + "/api/"


async def test_edits_of_one_message_are_coalesced_and_the_last_one_wins(fake: tuple[FakeSlack, str]) -> None:
    slack, url = fake
    writer = SlackWriter(new_web_client(slack.token, url), post_interval=0, update_interval=0, edit_window=0.3)
    await writer.update("C1", "1.0", "progress 0", [])  # sent: the edit window now holds the next ones back
    await asyncio.gather(*(writer.update("C1", "1.0", f"progress {step}", []) for step in range(1, 30)),
                         writer.update("C1", "1.0", "Done", []))
    edits = slack.of("chat.update")
    assert [e["text"] for e in edits] == ["progress 0", "Done"]  # 30 changes in the window became one edit


@pytest.mark.slow
async def test_posts_to_one_channel_are_paced(fake: tuple[FakeSlack, str]) -> None:
    slack, url = fake
    writer = SlackWriter(new_web_client(slack.token, url), post_interval=0.2, update_interval=0, edit_window=0)
    started = time.monotonic()
    results = await asyncio.gather(*(writer.post("C1", f"m{i}") for i in range(5)), writer.post("C2", "other"))
    assert all(r.ok for r in results)
    times = sorted(c["at"] for c in slack.calls if c["args"].get("channel") == "C1")
    assert times[-1] - times[0] >= 0.75  # five posts, 0.2 s apart
    assert time.monotonic() - started < 5


async def test_errors_are_counted_by_method(fake: tuple[FakeSlack, str]) -> None:
    slack, url = fake
    metrics = Metrics()
    writer = SlackWriter(new_web_client(slack.token, url), metrics, post_interval=0, update_interval=0, edit_window=0)
    slack.fail_next("chat.postMessage", "channel_not_found")
    posted = await writer.post("C404", "hello")
    assert not posted.ok and posted.error == "channel_not_found"
    assert metrics.slack_errors.labels("chat.postMessage", "channel_not_found")._value.get() == 1
    slack.fail_next("chat.postEphemeral", "user_not_in_channel")
    assert await writer.ephemeral("C1", "U1", "only you")  # falls back to the user's DM
    assert slack.of("chat.postMessage")[-1]["channel"] == "U1"
