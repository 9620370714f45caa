"""Real payloads recorded from Slack by public projects reach the app's listeners and get a 200."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from bot.slack.ids import Action, Block, Callback
from tests.harness import Bot

FIXTURES = Path(__file__).parent / "fixtures" / "slack-payloads"
SKIP = ("SHAPE.", "_provenance", "signature.", "socket_mode.", "block_suggestion.ack_")
FILES = sorted(p for p in FIXTURES.iterdir()
               if p.suffix in (".json", ".txt") and not p.name.startswith(SKIP) and p.name != "README.txt")


def _request(path: Path) -> tuple[bytes, str]:
    if path.suffix == ".txt":
        return path.read_text().strip().encode(), "application/x-www-form-urlencoded"
    data = json.loads(path.read_text())
    if path.name.startswith("slash_command."):
        return urlencode(data).encode(), "application/x-www-form-urlencoded"
    if "event" in data or data.get("type") == "event_callback":
        return json.dumps(data).encode(), "application/json"
    if path.name.startswith("app_home_opened."):  # the docs example is the bare event
        envelope = {"type": "event_callback", "event_id": "EvDocs", "team_id": "T1", "api_app_id": "A1", "event": data}
        return json.dumps(envelope).encode(), "application/json"
    return ("payload=" + quote(json.dumps(data))).encode(), "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_real_payload_is_acknowledged(bot: Bot, path: Path) -> None:
    body, content_type = _request(path)
    response = bot.post(body, content_type)
    assert response.status_code == 200, response.text
    if path.name.startswith("block_suggestion."):
        assert "options" in response.json()


VIEW_SUBMISSIONS = [p for p in FILES if p.name.startswith("view_submission.")]


@pytest.mark.parametrize("path", VIEW_SUBMISSIONS, ids=[p.name for p in VIEW_SUBMISSIONS])
def test_real_view_submissions_aimed_at_the_create_form_get_inline_errors(bot: Bot, path: Path) -> None:
    data = json.loads(path.read_text())
    data["view"]["callback_id"] = Callback.CREATE.value  # someone else's state values, our form
    response = bot.post(("payload=" + quote(json.dumps(data))).encode(), "application/x-www-form-urlencoded")
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors"
    assert body["errors"][Block.GROUP.value] == "Choose a server group."
    assert set(body["errors"]) <= {b.value for b in Block}
    assert all("None" not in sentence for sentence in body["errors"].values())
    assert bot.runtime.store.count_by_state() == {}


BUTTONS = [p for p in FILES if p.name.startswith("block_actions.")]


@pytest.mark.parametrize("path", BUTTONS, ids=[p.name for p in BUTTONS])
def test_real_clicks_aimed_at_approve_are_answered_not_crashed(bot: Bot, path: Path) -> None:
    data = json.loads(path.read_text())
    data["actions"][0]["action_id"] = Action.APPROVE.value
    data["actions"][0]["value"] = "AS-UNKNOWN1"
    response = bot.post(("payload=" + quote(json.dumps(data))).encode(), "application/x-www-form-urlencoded")
    assert response.status_code == 200
