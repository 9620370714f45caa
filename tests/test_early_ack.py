"""Slack gets its answer the moment a listener acks; the listener's work goes on, and its failures are logged."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.lifecycle import State
from bot.slack import early_ack
from bot.slack.binding import button_value
from bot.slack.early_ack import answered_at_ack, in_background
from bot.slack.ids import Action
from tests.flows import fill, final_state, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, OTHER_APPROVER, Bot, wait_for

CLICK = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"}, "trigger_id": "1.2",
         "actions": [{"action_id": "go", "type": "button", "value": "v", "block_id": "b", "action_ts": "1"}]}
EVENT = {"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
         "event": {"type": "app_home_opened", "user": "U1"}}


async def _authorize(**_: object) -> AuthorizeResult:
    return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-unused")


def _app() -> AsyncApp:
    # As the bot builds its app (answers at ack), with nothing that would call Slack.
    return AsyncApp(signing_secret="unused", process_before_response=True, request_verification_enabled=False,
                    authorize=_authorize)


async def _dispatch(app: AsyncApp, click: bool = True) -> int:
    if click:
        request = AsyncBoltRequest(body="payload=" + quote(json.dumps(CLICK)),
                                   headers={"content-type": ["application/x-www-form-urlencoded"]})
    else:
        request = AsyncBoltRequest(body=json.dumps(EVENT), headers={"content-type": ["application/json"]})
    return (await app.async_dispatch(request)).status


def test_the_answer_leaves_at_ack_and_the_work_goes_on() -> None:
    async def scenario() -> None:
        app, release, done = _app(), asyncio.Event(), asyncio.Event()

        @app.action("go")
        @answered_at_ack
        async def go(ack: AsyncAck) -> None:
            await ack()
            await release.wait()  # work after the answer, as a Slack call would be
            done.set()

        assert await _dispatch(app) == 200
        assert not done.is_set()
        release.set()
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(scenario())


def test_an_event_is_answered_without_waiting_for_its_work() -> None:
    async def scenario() -> None:
        app, release, done = _app(), asyncio.Event(), asyncio.Event()

        @app.event("app_home_opened")
        @in_background
        async def opened() -> None:
            await release.wait()
            done.set()

        assert await _dispatch(app, click=False) == 200
        assert not done.is_set()
        release.set()
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(scenario())


def test_a_failure_after_the_answer_is_logged_once_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        app = _app()

        @app.action("go")
        @answered_at_ack
        async def go(ack: AsyncAck) -> None:
            await ack()
            await asyncio.sleep(0)
            raise RuntimeError("the work broke")

        assert await _dispatch(app) == 200
        await early_ack.drain(5)
        await asyncio.sleep(0)  # the task's done-callback runs on the next turn

    asyncio.run(scenario())
    failures = [r for r in caplog.records if "the work broke" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert failures[0].levelno == logging.ERROR and "failed after answering Slack" in failures[0].getMessage()


def test_a_failure_before_the_answer_goes_to_bolts_error_handler(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        app = _app()
        handled: list[Exception] = []

        @app.error
        async def on_error(error: Exception) -> None:
            handled.append(error)

        @app.action("go")
        @answered_at_ack
        async def go(ack: AsyncAck) -> None:
            raise RuntimeError("broke before acking")

        assert await _dispatch(app) == 500
        assert [str(e) for e in handled] == ["broke before acking"]

    asyncio.run(scenario())
    assert not [r for r in caplog.records if "failed after answering Slack" in r.getMessage()]


def test_a_listener_that_never_acks_is_given_up_on_after_slacks_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(early_ack, "ACK_TIMEOUT_SECONDS", 0.05)

    async def scenario() -> None:
        app, release = _app(), asyncio.Event()

        @app.action("go")
        @answered_at_ack
        async def go(ack: AsyncAck) -> None:
            await release.wait()

        assert await _dispatch(app) == 404  # as Bolt answers a listener that did not ack
        release.set()
        await early_ack.drain(5)

    asyncio.run(scenario())


def test_a_click_is_answered_while_the_clickers_reply_is_still_on_its_way(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    bot.click(Action.APPROVE.value, button_value(row), OTHER_APPROVER, APPROVAL_CHANNEL)
    wait_for(lambda: only_request(bot).decided_by == OTHER_APPROVER, what="the approval")
    gate = threading.Event()  # Slack does not answer the refusal's chat.postEphemeral until the click is answered
    bot.slack.gates["chat.postEphemeral"] = gate
    try:
        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(bot.click, Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
            assert late.result(timeout=10).status_code == 200  # had the answer waited, it would wait for the gate
        wait_for(lambda: bot.slack.of("chat.postEphemeral"), what="the refusal on its way to Slack")
    finally:
        gate.set()
    assert "already approved" in bot.slack.of("chat.postEphemeral")[-1]["text"]


def test_every_listener_of_the_bot_answers_at_ack_or_works_in_the_background() -> None:
    # With process_before_response, a listener without either would hold Slack's answer until its work ends.
    listeners = 0
    for path in (Path(__file__).resolve().parent.parent / "bot" / "slack").glob("*.py"):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"\s*@app\.(action|command|view|view_closed|options|shortcut|event|message)\(", line):
                listeners += 1
                assert lines[number + 1].strip() in ("@answered_at_ack", "@in_background"), f"{path.name}:{number + 1}"
    assert listeners >= 20
