"""Bounded memory everywhere, the guardrail policy's rules and sentences, log lines that cannot be forged,
and a blank signing secret refused at start."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bot.logs import JsonFormatter, escape_controls, install_redaction
from bot.policy import Guardrails, approval_rule, count_refusal, daily_refusal, requester_refusal
from bot.sandbox.server import BackgroundServer, free_port
from bot.settings import load_settings
from bot.slack.app import EventDeduplicator
from bot.slack.catalogue import RENDERED_FORMS, CatalogueCache
from bot.slack.forms import Catalogue, FormValues, ModalContext
from bot.slack.writer import SlackWriter, _Gate, new_web_client
from bot.store.replays import ReplayMemory
from bot.workflow import CachedDirectory
from tests.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent

# Bounded memory ---------------------------------------------------------------------------------------

# Every collection an object keeps for the life of the process, and what bounds it. A new one fails the
# inventory test below until it is listed here with its bound (and, where it can grow, a test of it).
BOUNDED = {
    "bot/slack/app.py:_seen": "EventDeduplicator capacity (10,000 event ids), oldest dropped",
    "bot/slack/catalogue.py:_rendered": "RENDERED_FORMS renderings, oldest dropped; cleared per catalogue",
    "bot/workflow.py:_cache": "CachedDirectory max_groups (256 user groups), oldest dropped",
    "bot/slack/writer.py:_edits": "messages with an edit pending or an edit window open; the rest forgotten",
    "bot/slack/writer.py:_next": "channels written to within post_interval; idle ones pruned past 1,000",
    "bot/slack/writer.py:_locks": "as _next (and DatabasePace's: keys with nobody waiting pruned past 1,000)",
    "bot/slack/writer.py:_folding": "posts waiting for a channel's slot, at most the courier's concurrency; "
                                    "a channel leaves once its queue is empty",
    "bot/slack/writer.py:_leaders": "one task per channel with posts waiting, removed when the queue is empty",
    "bot/courier.py:_busy": "at most CourierConfig.concurrency deliveries, each removed when done",
    "bot/store/db.py:_write_locks": "one lock per SQLite database file the process opens",
    "bot/slack/early_ack.py:_running": "listeners' work after answering, each removed when done; past MAX_RUNNING "
                                       "an answer waits for its own work",
    "bot/logs.py:_secrets": "the configured secrets, and one IAM token per renewal (a day's token lives 24 h)",
    "bot/outage.py:_last": "one entry per place in the code that reports a database outage (a fixed set of words)",
    "bot/outage.py:_unsaid": "as _last",
    "bot/slack/outage_answers.py:_telling": "one task per person being told the database is away, removed when sent",
    "bot/tracker.py:_creates": "at most TrackerConfig.max_creates creates in flight, each removed when answered",
}
_COLLECTION = re.compile(r"^\s*(?:self\.)?(_\w+): *(?:dict|OrderedDict|set|deque)\[", re.MULTILINE)


def test_every_long_lived_collection_has_a_known_bound() -> None:
    found = set()
    for path in sorted((ROOT / "bot").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("bot/sandbox/"):  # a stand-in cloud for tests and trials, not the bot
            continue
        for match in _COLLECTION.finditer(path.read_text()):
            found.add(f"{relative}:{match.group(1)}")
    assert found == set(BOUNDED)


def test_event_ids_seen_are_capped() -> None:
    seen = EventDeduplicator(capacity=100)
    assert all(seen.first_time(f"Ev{i}") for i in range(1000))
    assert len(seen._seen) == 100 and not seen.first_time("Ev999") and seen.first_time("Ev0")


def test_rendered_forms_are_capped() -> None:
    cache = CatalogueCache(cloud=None)  # type: ignore[arg-type]  # rendering does not call the cloud
    catalogue = Catalogue()
    for count in range(RENDERED_FORMS + 50):
        cache.create_form(catalogue, FormValues(count=str(count)), ModalContext(), sandbox=False)
    assert len(cache._rendered) == RENDERED_FORMS


async def test_user_groups_cached_are_capped() -> None:
    class Directory:
        async def group_members(self, group_id: str) -> set[str]:
            return {f"U{group_id}"}

    cached = CachedDirectory(Directory(), max_groups=3)
    for index in range(10):
        assert await cached.group_members(f"S{index}") == {f"US{index}"}
    assert list(cached._cache) == ["S7", "S8", "S9"]


@pytest.fixture
def slack_url() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack()
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


async def test_the_writer_forgets_each_message_once_its_edit_is_done(slack_url: tuple[FakeSlack, str]) -> None:
    fake, url = slack_url
    writer = SlackWriter(new_web_client(fake.token, url), post_interval=0, update_interval=0, edit_window=0)
    for index in range(300):
        await writer.update("C1", f"{index}.0", f"edit {index}", [])
    assert writer.messages_tracked <= 1  # only the last one, forgotten on the next edit
    assert len(fake.of("chat.update")) == 300


async def test_the_post_pacing_forgets_idle_channels(slack_url: tuple[FakeSlack, str]) -> None:
    gate = _Gate(0.0)
    for index in range(_Gate.PRUNE_AT * 2):
        await gate.wait(f"U{index}")  # a DM is a channel of its own: one per person
    assert len(gate) <= _Gate.PRUNE_AT + 1


def test_the_replay_memory_forgets_what_slack_would_no_longer_accept(engine: Engine) -> None:
    memory = ReplayMemory(engine)
    now = int(time.time())
    assert memory.first_time("a" * 64, expires_at=now + 100)
    assert not memory.first_time("a" * 64, expires_at=now + 100)
    assert memory.first_time("b" * 64, expires_at=now + 200)
    assert memory.purge(now=now + 150) == 1
    with engine.connect() as connection:
        left = connection.execute(text("SELECT signature FROM seen_signatures")).scalars().all()
    assert left == ["b" * 64]


# The guardrail policy -----------------------------------------------------------------------------------


def test_each_rule_names_its_setting_and_number() -> None:
    rails = Guardrails(requesters=frozenset({"U0A", "S0G"}), max_servers_per_request=20, auto_approve_max_servers=5,
                       max_servers_per_user_per_day=30)
    assert requester_refusal(rails, listed=True) is None
    refused = requester_refusal(rails, listed=False)
    assert refused is not None and refused.rule == "REQUESTERS" and refused.sentence.startswith(
        "You are not allowed to request servers")
    assert requester_refusal(Guardrails(), listed=False) is None  # unset: everyone may ask
    assert count_refusal(rails, 20) is None
    assert count_refusal(rails, 21).sentence == (  # type: ignore[union-attr]
        "At most 20 servers per request (MAX_SERVERS_PER_REQUEST); you asked for 21.")
    assert daily_refusal(rails, already=25, servers=5) is None
    assert "so at most 5 more now" in daily_refusal(rails, already=25, servers=6).sentence  # type: ignore[union-attr]
    assert "no more until" in daily_refusal(rails, already=31, servers=1).sentence  # type: ignore[union-attr]
    assert daily_refusal(Guardrails(), already=10_000, servers=100) is None  # unset: no daily cap


def test_which_requests_wait_for_a_person() -> None:
    rails = Guardrails(auto_approve_max_servers=5)
    assert approval_rule(rails, prepaid=False, servers=5) is None
    assert approval_rule(rails, prepaid=False, servers=6) == "more than AUTO_APPROVE_MAX_SERVERS (5) servers"
    assert approval_rule(rails, prepaid=True, servers=1) == "yearly/monthly orders are always approved by a person"
    assert approval_rule(rails, prepaid=False, servers=1, postpaid_requires_approval=True) == \
        "POSTPAID_REQUIRES_APPROVAL is on"
    assert approval_rule(Guardrails(auto_approve_max_servers=0), prepaid=False, servers=1) is not None


def test_guardrail_settings_are_read_from_the_environment() -> None:
    settings = load_settings(_env_file=None, requesters="U0A, S0G", max_servers_per_request="10",
                             auto_approve_max_servers="2", max_servers_per_user_per_day="40")
    rails = Guardrails.from_settings(settings)
    assert rails == Guardrails(frozenset({"U0A", "S0G"}), 10, 2, 40)
    assert Guardrails.from_settings(load_settings(_env_file=None)) == Guardrails()


# Logs ------------------------------------------------------------------------------------------------


def test_control_characters_in_a_logged_value_are_escaped() -> None:
    assert escape_controls("ok\n2026-11-27 INFO bot: forged\r\x1b[31m\u2028") == \
        "ok\\n2026-11-27 INFO bot: forged\\r\\x1b[31m\\u2028"


def test_json_log_lines_are_one_object_each() -> None:
    install_redaction()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("bot.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("value %s", "x\nINFO forged")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "value x\\nINFO forged" and first["level"] == "INFO" and first["logger"] == "bot.test_json"
    assert "ValueError: boom" in second["exception"]


# Configuration -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("blank", ["", "   "])
def test_serve_with_a_blank_signing_secret_says_so_in_one_sentence(tmp_path: Path, blank: str) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-1",
           "SLACK_SIGNING_SECRET": blank, "PORT": str(free_port())}  # a free port: the port is tried first
    result = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("appserver-bot: SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify "
                                     "requests from Slack.")
