"""The running bot for whole-flow tests (fixtures `slack` and `bot`), and the steps most flows take."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.seed import server_groups
from bot.sandbox.server import BackgroundServer
from bot.settings import Settings
from tests.fake_slack import FakeSlack
from tests.harness import (
    APPROVAL_CHANNEL,
    APPROVER,
    NOTIFY_CHANNEL,
    OTHER_APPROVER,
    REQUESTER,
    SIGNING_SECRET,
    Bot,
    running_bot,
    wait_for,
)

OFFICE = server_groups()[0]


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack(group_members={"S0MANAGERS": [OTHER_APPROVER]})
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


def flow_settings(slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path,
                  **overrides: Any) -> Settings:
    """The whole-flow bot's settings: the sandbox cloud, the fake Slack, two approvers (one through a
    user group), quick polls and no Slack pacing; `overrides` change or add any of them."""
    from tests.conftest import sandbox_settings  # here: the conftest imports these fixtures

    fake, url = slack
    values: dict[str, Any] = {
        "huaweicloud_sdk_project_id": sandbox.config.project_id, "slack_bot_token": fake.token,
        "slack_signing_secret": SIGNING_SECRET, "slack_api_url": url, "approvers": f"{APPROVER},S0MANAGERS",
        "approval_channel": APPROVAL_CHANNEL, "notify_channel": NOTIFY_CHANNEL,
        "database_url": f"sqlite:///{tmp_path}/bot.db", "poll_interval_seconds": 0.2, "poll_first_delay_seconds": 0.1,
        "slack_post_interval_seconds": 0, "slack_update_interval_seconds": 0, "slack_edit_window_seconds": 0.2,
    }
    return sandbox_settings(sandbox_url, sandbox, **{**values, **overrides})


@pytest.fixture
def bot(slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> Iterator[Bot]:
    with running_bot(flow_settings(slack, sandbox, sandbox_url, tmp_path), sandbox, slack[0]) as running:
        yield running


def fill(bot: Bot, **fields: object) -> dict[str, object]:
    view = bot.open_form()
    view = bot.choose_group(view, OFFICE["id"])
    values: dict[str, object] = {"group": OFFICE["id"], "product": OFFICE["product_id"], "az": "cn-north-4a",
                                 "disk_type": "SAS", "disk_size": 80, "count": 2, "reason": "New hires in Q4"}
    values.update(fields)
    response = bot.submit_form(view, values)
    assert response.status_code == 200
    return {"response": response, "view": view}


def only_request(bot: Bot):  # type: ignore[no-untyped-def]
    rows = bot.runtime.store.for_requester(REQUESTER, 10)
    assert len(rows) == 1
    return rows[0]


def final_state(bot: Bot, *states: State):  # type: ignore[no-untyped-def]
    def done():  # type: ignore[no-untyped-def]
        row = only_request(bot)
        return row if row.state in states else None

    return wait_for(done, what=f"a request in {states}")
