"""Through the real app: user text stays text in every message kind, the guardrails refuse with their
sentence (nothing stored, nothing ordered), and a click counts only for what its card showed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.slack.binding import button_value
from bot.slack.ids import Action, Block
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.flows import OFFICE, fill
from tests.harness import (
    APPROVAL_CHANNEL,
    APPROVER,
    NOTIFY_CHANNEL,
    OTHER_APPROVER,
    REQUEST_CHANNEL,
    REQUESTER,
    SIGNING_SECRET,
    STRANGER,
    Bot,
    running_bot,
    wait_for,
)

EVIL_REASON = "<!channel> <@U0BOSS> <https://evil.example/sso|Approve in SSO> & more"
EVIL_REJECTION = "<!here> see <https://evil.example/why|the policy> <@U0BOSS>"
RAW_MARKUP = ("<!channel>", "<!here>", "<@U0BOSS>", "<https://evil.example")


@contextmanager
def bot_with(sandbox: Sandbox, sandbox_url: str, tmp_path: Path, **overrides: Any) -> Iterator[Bot]:
    fake = FakeSlack(group_members={"S0MANAGERS": [OTHER_APPROVER], "S0ASKERS": [STRANGER]})
    with BackgroundServer(fake.app) as server:
        values: dict[str, Any] = {
            "huaweicloud_sdk_project_id": sandbox.config.project_id, "slack_bot_token": fake.token,
            "slack_signing_secret": SIGNING_SECRET, "slack_api_url": server.url + "/api/",
            "approvers": f"{APPROVER},S0MANAGERS", "approval_channel": APPROVAL_CHANNEL,
            "notify_channel": NOTIFY_CHANNEL, "database_url": f"sqlite:///{tmp_path}/bot.db",
            "poll_interval_seconds": 0.2, "poll_first_delay_seconds": 0.1, "slack_post_interval_seconds": 0,
            "slack_update_interval_seconds": 0, "slack_edit_window_seconds": 0.2,
        }
        values.update(overrides)
        with running_bot(sandbox_settings(sandbox_url, sandbox, **values), sandbox, fake) as running:
            yield running


def everything_sent(bot: Bot) -> str:
    """Every text and block the bot sent to Slack: Web API calls and response_url answers."""
    return json.dumps([c["args"] for c in bot.slack.calls] + bot.slack.responses)


def request_of(bot: Bot, user: str = REQUESTER) -> Any:
    rows = bot.runtime.store.for_requester(user, 10)
    assert len(rows) == 1
    return rows[0]


def response_texts(bot: Bot) -> list[str]:
    return [str(r.get("text", "")) for r in bot.slack.responses]


# User text is text ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_markup_in_a_reason_and_a_rejection_shows_as_text_in_every_message(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path) as bot:
        fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1, reason=EVIL_REASON)
        row = wait_for(lambda: request_of(bot).approval_ts and request_of(bot), what="the approval card")
        wait_for(lambda: request_of(bot).thread_ts, what="the thread head")
        # App Home of an approver (the request waits there), the approver's list, the requester's status.
        assert bot.event({"type": "app_home_opened", "user": APPROVER, "tab": "home"}, "Ev1").status_code == 200
        wait_for(lambda: bot.slack.of("views.publish"), what="App Home")
        assert bot.command("list", APPROVER).status_code == 200
        assert bot.command(f"status {row.id}").status_code == 200
        wait_for(lambda: len(bot.slack.responses) >= 2, what="the ephemeral answers")
        # An approver rejects with markup of their own: card edit and thread reply (no DM: the thread is theirs).
        assert bot.click(Action.REJECT.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts).status_code == 200
        wait_for(lambda: bot.slack.latest_view().get("callback_id") == "reject_request_reason", what="reason form")
        assert bot.submit_reject_reason(EVIL_REJECTION, APPROVER).status_code == 200
        wait_for(lambda: any("rejected" in a["text"] for a in bot.slack.of("chat.postMessage")
                             if a.get("thread_ts") == row.thread_ts), what="the reply in the thread")
        wait_for(lambda: any(a.get("ts") == row.approval_ts and "Rejected by" in json.dumps(a.get("blocks"))
                             for a in bot.slack.of("chat.update")), what="the card edit")
        assert bot.command(f"status {row.id}").status_code == 200
        wait_for(lambda: len(bot.slack.responses) >= 3, what="the status after the rejection")

        sent = everything_sent(bot)
        for markup in RAW_MARKUP:
            assert markup not in sent, markup
        assert "&lt;!channel&gt; &lt;@U0BOSS&gt; &lt;https://evil.example/sso|Approve in SSO&gt; &amp; more" in sent
        assert "&lt;!here&gt; see &lt;https://evil.example/why|the policy&gt;" in sent
        kinds = {"approval card": [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL],
                 "thread head": [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == REQUEST_CHANNEL
                                 and "thread_ts" not in a],
                 "App Home": bot.slack.of("views.publish"),
                 "card edit": [a for a in bot.slack.of("chat.update") if a.get("ts") == row.approval_ts],
                 "thread reply": [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == row.thread_ts],
                 "ephemeral answers": bot.slack.responses}
        for kind, calls in kinds.items():
            assert calls, f"no {kind} was sent"
            assert "&lt;" in json.dumps(calls), f"the {kind} does not show the text"


@pytest.mark.slow
def test_command_echoes_and_ids_are_escaped_or_refused(sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path) as bot:
        answers = [bot.command("<!channel>").text, bot.command("create <!here>=1").text]
        for text in ("status <!channel>", "cancel <https://evil.example|x>"):
            assert bot.command(text).status_code == 200
        wait_for(lambda: len(bot.slack.responses) >= 2, what="the ephemeral answers")
        answers += response_texts(bot)
        joined = "\n".join(answers)
        assert "<!" not in joined and "<https" not in joined
        assert "is not a request id" in joined
        # A dedicated host id in the form is taken only in an id's shape, so it cannot leave its backticks.
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                        "disk_size": 80, "count": 1, "dedicated_host": "abc` <!channel> `"})
        assert Block.DEDICATED_HOST.value in answer.json()["errors"]
        assert bot.runtime.store.count_by_state() == {}


# Guardrails -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_requesters_not_listed_get_a_sentence_and_no_form(sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, requesters=f"{REQUESTER},S0ASKERS") as bot:
        answer = bot.command("create", user="U0OUTSIDER").text
        assert answer.startswith("You are not allowed to request servers") and "REQUESTERS" in answer
        assert bot.slack.of("views.open") == []
        # Listed by id, and through a user group: both get the form.
        bot.open_form(user=REQUESTER)
        bot.open_form(user=STRANGER)
        # A submission from someone not listed (an old form) is refused too, and nothing is stored.
        view = bot.slack.latest_view()
        answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                        "disk_size": 80, "count": 1}, user="U0OUTSIDER").json()
        assert answer["response_action"] == "update" and "REQUESTERS" in json.dumps(answer["view"])
        assert bot.runtime.store.count_by_state() == {}


def test_a_requester_group_that_cannot_be_read_refuses_with_the_reason(sandbox: Sandbox, sandbox_url: str,
                                                                         tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, requesters="S0ASKERS") as bot:
        bot.slack.fail_next("usergroups.users.list", "ratelimited_forever")
        answer = bot.command("create", user=STRANGER).text
        assert answer.startswith("I could not check that you may request servers")
        assert bot.slack.of("views.open") == []


@pytest.mark.slow
def test_too_many_servers_in_one_request_is_refused_inline(sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, max_servers_per_request=10) as bot:
        assert "MAX_SERVERS_PER_REQUEST" in bot.command("create count=60").text
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        count_input = next(b for b in view["blocks"] if b.get("block_id") == Block.COUNT.value)
        assert count_input["element"]["max_value"] == "10"
        answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                        "disk_size": 80, "count": 11}).json()
        assert answer["errors"] == {Block.COUNT.value: "At most 10 servers per request (MAX_SERVERS_PER_REQUEST); "
                                                       "you asked for 11."}
        assert bot.runtime.store.count_by_state() == {} and bot.sandbox.calls("CreateAppServers") == []


@pytest.mark.slow
def test_pay_per_use_above_the_auto_approve_limit_waits_for_an_approver(sandbox: Sandbox, sandbox_url: str,
                                                                         tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, auto_approve_max_servers=2) as bot:
        fill(bot, count=3)
        row = wait_for(lambda: request_of(bot).approval_ts and request_of(bot), what="the approval card")
        assert row.state == State.PENDING_APPROVAL and bot.sandbox.calls("CreateAppServers") == []
        bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
        wait_for(lambda: request_of(bot).state == State.SUCCEEDED, what="the order")
        assert len(bot.sandbox.calls("CreateAppServers")) == 1


@pytest.mark.slow
def test_the_daily_cap_counts_what_was_asked_in_the_last_day(sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path, max_servers_per_user_per_day=3) as bot:
        fill(bot, count=2)
        wait_for(lambda: request_of(bot).state == State.SUCCEEDED, what="the first order")
        view = bot.choose_group(bot.open_form(), OFFICE["id"])
        answer = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                        "disk_size": 80, "count": 2}).json()
        assert answer["errors"] == {Block.COUNT.value: "You asked for 2 servers in the last 24 hours; "
                                                       "MAX_SERVERS_PER_USER_PER_DAY is 3, so at most 1 more now."}
        fill(bot, count=1)  # within the cap
        wait_for(lambda: len(bot.runtime.store.for_requester(REQUESTER, 10)) == 2, what="the second request")
        refused = bot.command("create").text
        assert "MAX_SERVERS_PER_USER_PER_DAY is 3, so no more" in refused
        # The second request goes out in the background: wait for it, then nothing more is ordered.
        wait_for(lambda: len(bot.sandbox.calls("CreateAppServers")) >= 2, what="the second create")
        assert len(bot.sandbox.calls("CreateAppServers")) == 2


@pytest.mark.slow
def test_submissions_at_once_never_take_a_person_past_the_daily_cap(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    # Six forms of 2 servers sent together: each passes the early check alone, the store lets 2 in (4 of 5).
    with bot_with(sandbox, sandbox_url, tmp_path, max_servers_per_user_per_day=5) as bot:
        views = [bot.choose_group(bot.open_form(), OFFICE["id"]) for _ in range(6)]
        values = {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS", "disk_size": 80,
                  "count": 2, "reason": "New hires"}
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda view: bot.submit_form(view, values), views))
        assert all(answer.status_code == 200 for answer in answers)
        refusals = [answer.json()["errors"][Block.COUNT.value] for answer in answers if answer.content]
        assert len(refusals) == 4 and all("MAX_SERVERS_PER_USER_PER_DAY is 5" in r for r in refusals), refusals
        assert sum(row.subscription_num for row in bot.runtime.store.for_requester(REQUESTER, 10)) == 4


# An approval is bound to what was shown ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("value_of", [
    lambda row: row.id,  # an older card: the bare id
    lambda row: f"{row.id}|{'0' * 12}",  # another spec than the one stored
    lambda row: f"{button_value(row)}|1234.00 CNY",  # an amount the bot does not know
])
def test_a_click_for_something_other_than_what_is_stored_is_refused_and_audited(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path, value_of: Any
) -> None:
    with bot_with(sandbox, sandbox_url, tmp_path) as bot:
        fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
        row = wait_for(lambda: request_of(bot).approval_ts and request_of(bot), what="the approval card")
        card = next(a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL)
        values = [e["value"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["action_id"] == Action.APPROVE.value]
        assert values == [f"{row.id}|{row.spec_hash[:12]}"]
        action = Action.PAY.value if "CNY" in value_of(row) else Action.APPROVE.value
        bot.click(action, value_of(row), APPROVER, APPROVAL_CHANNEL)
        refusal = wait_for(lambda: bot.slack.of("chat.postEphemeral"), what="the refusal")[-1]["text"]
        assert "nothing was" in refusal
        audit = wait_for(lambda: [e for e in bot.runtime.store.audit_log(row.id) if not e.allowed], what="audit")
        assert audit[-1].actor == APPROVER and audit[-1].detail.startswith("not_as_shown: ")
        time.sleep(0.3)  # let the tracker run a cycle: it must find nothing to order
        assert request_of(bot).state == State.PENDING_APPROVAL and bot.sandbox.calls("CreateAppServers") == []
