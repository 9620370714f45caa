"""Real payloads recorded from Slack by public projects reach the app's listeners and get a 200."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.slack.ids import Action, Block, Callback
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.harness import APPROVAL_CHANNEL, APPROVER, NOTIFY_CHANNEL, SIGNING_SECRET, Bot, running_bot

FIXTURES = Path(__file__).parent / "fixtures" / "slack-payloads"
SKIP = ("SHAPE.", "_provenance", "signature.", "socket_mode.", "block_suggestion.ack_")
FILES = sorted(p for p in FIXTURES.iterdir()
               if p.suffix in (".json", ".txt") and not p.name.startswith(SKIP) and p.name != "README.txt")


@pytest.fixture(scope="module")
def bot(sandbox_session: tuple[Sandbox, BackgroundServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    """One bot for every payload of this module: each payload is answered on its own and none of them
    creates a request, so they need no fresh bot each (starting one per payload was a third of the fast loop)."""
    sandbox, sandbox_server = sandbox_session
    sandbox.reset()
    fake = FakeSlack(group_members={"S0MANAGERS": [APPROVER]})
    with BackgroundServer(fake.app) as slack_server:
        settings = sandbox_settings(
            sandbox_server.url, sandbox, huaweicloud_sdk_project_id=sandbox.config.project_id,
            slack_bot_token=fake.token, slack_signing_secret=SIGNING_SECRET, slack_api_url=slack_server.url + "/api/",
            approvers=f"{APPROVER},S0MANAGERS", approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL,
            database_url=f"sqlite:///{tmp_path_factory.mktemp('payloads')}/bot.db",
            slack_post_interval_seconds=0, slack_update_interval_seconds=0,
        )
        with running_bot(settings, sandbox, fake) as running:
            yield running


# Two recorded payloads may be byte-for-byte the same: signed in the same second they would be one
# signature seen twice, which the bot refuses as a replay. Each post gets a timestamp of its own, inside
# the five minutes Slack signatures are good for (counted from when the module's bot starts).
_timestamps: dict[int, Iterator[int]] = {}  # id of the module's bot -> its timestamps


def _post(bot: Bot, body: bytes, content_type: str) -> httpx.Response:
    stamps = _timestamps.setdefault(id(bot), itertools.count(int(time.time()) - 200))
    return bot.post(body, content_type, timestamp=next(stamps))


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
    response = _post(bot, body, content_type)
    assert response.status_code == 200, response.text
    if path.name.startswith("block_suggestion."):
        assert "options" in response.json()


VIEW_SUBMISSIONS = [p for p in FILES if p.name.startswith("view_submission.")]


@pytest.mark.parametrize("path", VIEW_SUBMISSIONS, ids=[p.name for p in VIEW_SUBMISSIONS])
def test_real_view_submissions_aimed_at_the_create_form_get_inline_errors(bot: Bot, path: Path) -> None:
    data = json.loads(path.read_text())
    data["view"]["callback_id"] = Callback.CREATE.value  # someone else's state values, our form
    response = _post(bot, ("payload=" + quote(json.dumps(data))).encode(), "application/x-www-form-urlencoded")
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
    response = _post(bot, ("payload=" + quote(json.dumps(data))).encode(), "application/x-www-form-urlencoded")
    assert response.status_code == 200
