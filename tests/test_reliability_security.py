"""Reliability suite, security and bad input: signatures, replays, fuzzed payloads, no secret anywhere."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.lifecycle import State
from bot.logs import install_redaction
from bot.slack.binding import button_value
from bot.slack.ids import Action, Block, Callback
from tests.flows import fill, final_state
from tests.harness import APPROVAL_CHANNEL, APPROVER, SIGNING_SECRET, Bot, form_values, sign, wait_for

FORM = "application/x-www-form-urlencoded"


def raw(bot: Bot, body: bytes, headers: dict[str, str]) -> int:
    return bot.http.post(bot.url + "/slack/events", content=body, headers={"Content-Type": FORM, **headers}).status_code


def test_forged_stale_malformed_and_replayed_signatures_get_401(bot: Bot) -> None:
    body = urlencode({"command": "/appserver", "text": "help", "user_id": "U1", "trigger_id": "1"}).encode()
    assert raw(bot, body, sign(body, secret="wrong-secret")) == 401
    assert raw(bot, body, sign(body, timestamp=int(time.time()) - 301)) == 401
    assert raw(bot, body, {"X-Slack-Request-Timestamp": "not-a-number", "X-Slack-Signature": "v0=00"}) == 401
    assert raw(bot, body, {}) == 401
    fresh = sign(body)
    assert raw(bot, body, fresh) == 200
    assert raw(bot, body, fresh) == 401  # the same signed request again is a replay


slash_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(text=slash_text)
def test_fuzzed_command_text_is_always_answered(bot: Bot, text: str) -> None:
    response = bot.command(f"create {text}")
    assert response.status_code == 200
    response = bot.command(text)
    assert response.status_code == 200


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                           max_leaves=15)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(values=st.dictionaries(st.sampled_from([b.value for b in Block] + ["x"]), json_values, max_size=8),
       metadata=st.one_of(st.none(), st.text(max_size=50), json_values.map(json.dumps)))
def test_fuzzed_view_submissions_never_fail(bot: Bot, values: dict[str, object], metadata: object) -> None:
    payload = {"type": "view_submission", "user": {"id": "U0FUZZ"}, "team": {"id": "T1"}, "trigger_id": str(time.time_ns()),
               "view": {"id": "V1", "callback_id": Callback.CREATE.value, "private_metadata": metadata,
                        "state": {"values": values}, "hash": "h"}}
    response = bot.interact(payload)
    assert response.status_code == 200
    if response.content:
        assert response.json()["response_action"] == "errors"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(action=st.sampled_from([a.value for a in Action]), value=json_values, extra=json_values,
       huge=st.booleans())
def test_fuzzed_clicks_never_fail(bot: Bot, action: str, value: object, extra: object, huge: bool) -> None:
    payload = {"type": "block_actions", "user": {"id": "U0FUZZ"}, "team": {"id": "T1"}, "trigger_id": "1.2",
               "actions": [{"action_id": action, "value": "A" * 100_000 if huge else value, "block_id": "b",
                            "action_ts": str(time.time_ns())}],
               "container": extra, "channel": extra if isinstance(extra, dict) else None}
    assert bot.interact(payload).status_code == 200


def test_garbage_bodies_are_refused_not_crashed(bot: Bot) -> None:
    for body in (b"payload=%7Bnot-json", b"payload=", b"\xff\xfe\x00", b"a" * 200_000, b"payload=" + quote("[]").encode()):
        status = raw(bot, body, sign(body))
        assert status in (200, 400, 401, 404), (body[:20], status)
        assert status != 500


def test_no_secret_in_any_log_line_or_slack_message(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    caplog.set_level(logging.DEBUG)
    fill(bot, billing="prePaid", period_unit="2", period_num=1, auto_pay=True, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
    final_state(bot, State.SUCCEEDED)
    cfg = bot.sandbox.config
    secrets = [bot.slack.token, SIGNING_SECRET, cfg.access_key, cfg.secret_key]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    slack_payloads = json.dumps([c["args"] for c in bot.slack.calls])
    for secret in secrets:
        assert secret not in logged
        assert secret not in slack_payloads
    assert form_values  # the harness builds state values the way Slack sends them
    wait_for(lambda: bot.slack.of("chat.postMessage"), what="messages")
