"""While the database is away, people who use the bot read a sentence saying so (a slash command in its
answer, a click in an ephemeral reply, a form on its first field), never an HTTP error that Slack shows as
the app's own failure; and the log says so once a minute per kind of failure, not a traceback per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from bot.logs import install_redaction
from bot.outage import OUTAGES, SENTENCE
from bot.sandbox import Sandbox
from bot.slack.ids import Action
from bot.store.db import make_engine
from bot.store.schema import migrate
from tests.conftest import sandbox_settings
from tests.db_outage import DatabaseRelay
from tests.fake_slack import FakeSlack
from tests.flows import OFFICE
from tests.harness import (
    APPROVAL_CHANNEL,
    APPROVER,
    NOTIFY_CHANNEL,
    REQUESTER,
    SIGNING_SECRET,
    Bot,
    running_bot,
    wait_for,
)

pytestmark = pytest.mark.slow  # the whole bot runs


@pytest.fixture(autouse=True)
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    install_redaction()
    OUTAGES.reset()
    caplog.set_level(logging.INFO)
    return caplog


@pytest.fixture
def relay_bot(postgres_url: str, sandbox: Sandbox, sandbox_url: str,
              slack: tuple[FakeSlack, str]) -> Iterator[tuple[Bot, DatabaseRelay]]:
    """The whole bot on PostgreSQL, reached through a relay the test can cut."""
    engine = make_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    fake, url = slack
    with DatabaseRelay(postgres_url) as relay:
        settings = sandbox_settings(
            sandbox_url, sandbox, huaweicloud_sdk_project_id=sandbox.config.project_id, slack_bot_token=fake.token,
            slack_signing_secret=SIGNING_SECRET, slack_api_url=url, approvers=APPROVER,
            approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL, database_url=relay.url,
            poll_interval_seconds=0.2, poll_first_delay_seconds=0.1, slack_post_interval_seconds=0,
            slack_update_interval_seconds=0)
        with running_bot(settings, sandbox, fake) as bot:
            yield bot, relay


def click_payload(bot: Bot, action_id: str, value: str, *, response_url: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions", "user": {"id": APPROVER, "username": "approver", "team_id": "T0SANDBOX"},
        "api_app_id": "A0APP", "token": "x", "trigger_id": f"{time.time()}.3.ghi",
        "team": {"id": "T0SANDBOX", "domain": "sandbox"}, "channel": {"id": APPROVAL_CHANNEL, "name": "approvals"},
        "container": {"type": "message", "channel_id": APPROVAL_CHANNEL, "message_ts": "1.0"},
        "message": {"type": "message", "ts": "1.0", "text": "card"},
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value,
                     "text": {"type": "plain_text", "text": "Approve"}, "action_ts": str(time.time())}],
    }
    if response_url:
        payload["response_url"] = bot.response_url
    return payload


def submission_payload(bot: Bot) -> dict[str, Any]:
    view = {"id": "V0FORM", "type": "modal", "callback_id": "create_request", "hash": "h", "private_metadata": "",
            "title": {"type": "plain_text", "text": "New app servers"},
            "blocks": [{"type": "section", "block_id": "intro", "text": {"type": "mrkdwn", "text": "Hi"}},
                       {"type": "input", "block_id": "count", "label": {"type": "plain_text", "text": "How many"},
                        "element": {"type": "number_input", "action_id": "value", "is_decimal_allowed": False}}],
            "state": {"values": {"count": {"value": {"type": "number_input", "value": "2"}}}}}
    return {"type": "view_submission", "user": {"id": REQUESTER, "username": "requester", "team_id": "T0SANDBOX"},
            "team": {"id": "T0SANDBOX", "domain": "sandbox"}, "api_app_id": "A0APP", "token": "x",
            "trigger_id": f"{time.time()}.2.def", "view": view}


def outage_lines(log: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in log.records if "cannot be reached" in r.getMessage()]


def tracebacks(log: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in log.records if r.exc_info]


@pytest.mark.postgres
def test_while_the_database_is_away_people_read_a_sentence_and_the_log_says_it_once(
    relay_bot: tuple[Bot, DatabaseRelay], log: pytest.LogCaptureFixture
) -> None:
    bot, relay = relay_bot
    assert bot.command("help").status_code == 200
    relay.cut()

    for _ in range(5):  # an impatient person tries again and again
        answer = bot.command("status AS-7K3F9QX2")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"response_type": "ephemeral", "text": SENTENCE}

    click = bot.interact(click_payload(bot, Action.APPROVE.value, "AS-7K3F9QX2|abcdef012345", response_url=True))
    assert click.status_code == 200
    wait_for(lambda: any(r.get("text") == SENTENCE for r in bot.slack.responses), what="the sentence for the click")
    told = next(r for r in bot.slack.responses if r.get("text") == SENTENCE)
    assert told["response_type"] == "ephemeral" and told["replace_original"] is False  # the card stays as it was

    # A click where Slack gives no response_url (App Home has none): an ephemeral message where it was clicked.
    assert bot.interact(click_payload(bot, Action.APPROVE.value, "AS-7K3F9QX2|abcdef012345",
                                      response_url=False)).status_code == 200
    wait_for(lambda: SENTENCE in bot.slack.texts("chat.postEphemeral"), what="an ephemeral sentence")

    submitted = bot.interact(submission_payload(bot))
    assert submitted.status_code == 200
    assert submitted.json() == {"response_action": "errors", "errors": {"count": SENTENCE}}  # the form stays open

    event = {"type": "app_home_opened", "user": REQUESTER, "channel": "D0HOME", "tab": "home",
             "event_ts": str(time.time())}
    assert bot.event(event, "Ev0OUTAGE1").status_code == 503  # not a person's request: Slack delivers it again

    assert bot.slack.of("views.publish") == [] and bot.slack.of("views.open") == []  # nothing was acted on
    # The worker's parts meet the outage too (the tracker, the courier, the heartbeat): each says it once.
    for where in ("running the tracker's cycle", "claiming Slack news", "writing the heartbeat"):
        wait_for(lambda where=where: any(where in r.getMessage() for r in outage_lines(log)), timeout=30,  # type: ignore[misc]
                 what=f"the outage seen while {where}")
    lines = outage_lines(log)
    assert lines and all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
    wheres = [r.getMessage().split(" while ")[1].split(";")[0] for r in lines]
    assert len(wheres) == len(set(wheres))  # each kind once (within the minute), however many requests failed
    assert tracebacks(log) == []

    relay.restore()
    wait_for(lambda: "orders Huawei Cloud" in bot.command("help").text, timeout=30, what="the bot answering again")


def test_a_database_failure_after_the_answer_is_told_to_the_person(bot: Bot, log: pytest.LogCaptureFixture) -> None:
    """The request was taken (its signature remembered), then the database failed under the listener: the person
    is told in the same sentence, through the command's response_url."""
    view = bot.choose_group(bot.open_form(), OFFICE["id"])
    with bot.runtime.engine.begin() as connection:  # as a database that lost its tables would answer
        connection.execute(text("ALTER TABLE requests RENAME TO requests_away"))
    answer = bot.command("status AS-7K3F9QX2")
    assert answer.status_code == 200
    wait_for(lambda: any(r.get("text") == SENTENCE for r in bot.slack.responses), what="the sentence after the ack")

    # A form submission fails before it is answered: the sentence is on the form, which stays open.
    fields = {"group": OFFICE["id"], "product": OFFICE["product_id"], "az": "cn-north-4a", "disk_type": "SAS",
              "disk_size": 80, "count": 2, "reason": "New hires in Q4"}
    submitted = bot.submit_form(view, fields)
    assert submitted.status_code == 200, submitted.text
    body = submitted.json()
    assert body["response_action"] == "errors" and list(body["errors"].values()) == [SENTENCE]
    lines = outage_lines(log)
    assert lines and all(r.exc_info is None for r in lines)
    assert tracebacks(log) == [], tracebacks(log)
    with bot.runtime.engine.begin() as connection:
        connection.execute(text("ALTER TABLE requests_away RENAME TO requests"))
