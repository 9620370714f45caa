"""Whole flows through the real ASGI app: signed Slack requests in, the fake Slack Web API and the
sandbox cloud on loopback, the tracker running in the app's lifespan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.slack.binding import button_value
from bot.slack.ids import Action, Block
from bot.store.repository import server_ids
from tests.fake_slack import FakeSlack, dm_channel
from tests.flows import OFFICE, fill, final_state, only_request
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
    sign,
    wait_for,
)


def test_pay_per_use_create_to_success_in_thread_and_channel(bot: Bot) -> None:
    fill(bot)
    opened = bot.slack.of("views.open")
    assert len(opened) == 1 and "Loading" in json.dumps(opened[0]["view"])  # the loading view went first
    row = final_state(bot, State.SUCCEEDED)
    assert len(server_ids(row)) == 2 and row.job_id
    head = [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == REQUEST_CHANNEL and "thread_ts" not in a]
    assert len(head) == 1 and "SANDBOX" not in head[0]["text"]  # real credentials (here: to the sandbox)
    wait_for(lambda: any("is done" in t for t in bot.slack.texts(channel=NOTIFY_CHANNEL)), what="the notify channel")
    replies = [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == row.thread_ts]
    # One reply, the outcome, mentioning the requester: they are in the thread's channel, so no DM as well.
    assert len(replies) == 1 and "is done" in replies[0]["text"]
    assert f"<@{REQUESTER}>" in json.dumps(replies[0]["blocks"])
    assert bot.slack.texts(channel=REQUESTER) == []
    edits = [a for a in bot.slack.of("chat.update") if a.get("ts") == row.thread_ts]
    wait_for(lambda: any("Done" in a["text"] for a in bot.slack.of("chat.update") if a.get("ts") == row.thread_ts),
             what="the thread head edited to Done")
    assert edits
    assert len(bot.sandbox.calls("CreateAppServers")) == 1


def test_prepaid_approval_then_order_then_success(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=3, auto_pay=True, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    card = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL],
                    what="the approval card")
    assert "Approval needed" in card[0]["text"]
    buttons = [e["action_id"] for b in card[0]["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [Action.APPROVE.value, Action.REJECT.value]
    assert bot.sandbox.calls("CreateAppServers") == []
    row = wait_for(lambda: only_request(bot).approval_ts and only_request(bot), what="the card's ts recorded")
    assert bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts).status_code == 200
    done = final_state(bot, State.SUCCEEDED)
    assert done.order_id and len(server_ids(done)) == 1 and done.decided_by == APPROVER
    card_edits = wait_for(lambda: [a for a in bot.slack.of("chat.update") if a.get("ts") == row.approval_ts
                                   and "Approved by" in json.dumps(a.get("blocks"))], what="the card edit")
    assert not any(b["type"] == "actions" for b in card_edits[-1]["blocks"])  # no buttons after the decision


def test_an_unpaid_order_is_paid_with_the_button(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
    row = final_state(bot, State.AWAITING_PAYMENT)
    # The card (posted now if the approval came before it was out) follows the order.
    card = wait_for(lambda: [a for a in bot.slack.of("chat.update") + bot.slack.of("chat.postMessage")
                             if a.get("channel") == APPROVAL_CHANNEL and a.get("blocks")
                             and "waits for payment" in a.get("text", "")], what="the card with Pay")
    pay = next(e["value"] for b in card[-1]["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == Action.PAY.value)
    assert bot.click(Action.PAY.value, pay, STRANGER, APPROVAL_CHANNEL).status_code == 200
    wait_for(lambda: bot.slack.of("chat.postEphemeral"), what="the refusal to a stranger")
    assert bot.sandbox.calls("PayOrders") == []
    bot.click(Action.PAY.value, pay, APPROVER, APPROVAL_CHANNEL)
    done = final_state(bot, State.SUCCEEDED)
    assert len(bot.sandbox.calls("PayOrders")) == 1 and len(server_ids(done)) == 1


def test_reject_asks_for_a_reason_and_tells_the_requester(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="3", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    bot.click(Action.REJECT.value, row.id, APPROVER, APPROVAL_CHANNEL)
    wait_for(lambda: bot.slack.latest_view().get("callback_id") == "reject_request_reason", what="the reason modal")
    blank = bot.submit_reject_reason("   ", APPROVER)
    assert blank.json()["response_action"] == "errors" and Block.REJECT_REASON.value in blank.json()["errors"]
    assert bot.submit_reject_reason("No budget for GPUs this quarter", APPROVER).status_code == 200
    done = final_state(bot, State.REJECTED)
    assert done.decision_reason == "No budget for GPUs this quarter"
    reply = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == done.thread_ts
                              and "rejected" in a["text"] and "No budget" in a["text"]], what="the reply in the thread")
    assert f"<@{APPROVER}>" in reply[0]["text"] and Action.ORDER_AGAIN.value in json.dumps(reply[0]["blocks"])
    assert bot.slack.texts(channel=REQUESTER) == []  # the thread is where they asked: no DM as well
    assert bot.sandbox.calls("CreateAppServers") == []


def test_invalid_input_is_answered_inline_and_nothing_is_queued(bot: Bot) -> None:
    result = fill(bot, disk_size=85, count=0)
    body = result["response"].json()  # type: ignore[attr-defined]
    assert body["response_action"] == "errors"
    assert "multiple of 10" in body["errors"][Block.DISK_SIZE.value]
    assert "between 1 and 100" in body["errors"][Block.COUNT.value]
    assert bot.runtime.store.for_requester(REQUESTER, 10) == []
    prepaid = bot.submit_form(result["view"], {"group": OFFICE["id"], "product": OFFICE["product_id"],  # type: ignore[arg-type]
                                               "disk_type": "SAS", "disk_size": 80, "count": 1, "billing": "prePaid",
                                               "period_unit": "3", "period_num": 5})
    assert "1 to 3 years" in prepaid.json()["errors"][Block.PERIOD_NUM.value]
    empty = bot.submit_form(bot.slack.latest_view(), {})
    assert empty.json()["errors"][Block.GROUP.value] == "Choose a server group."
    assert bot.runtime.store.for_requester(REQUESTER, 10) == []


def test_with_the_catalogue_cached_the_form_opens_filled_in_one_call(bot: Bot) -> None:
    bot.open_form()  # the first form waits for the cloud behind a loading view
    opened, updated = len(bot.slack.of("views.open")), len(bot.slack.of("views.update"))
    view = bot.open_form()
    assert len(bot.slack.of("views.open")) == opened + 1 and len(bot.slack.of("views.update")) == updated
    assert any(b.get("block_id") == Block.GROUP.value for b in view["blocks"])
    assert "Loading" not in json.dumps(bot.slack.of("views.open")[-1]["view"])


def test_not_enough_quota_is_an_inline_error(bot: Bot) -> None:
    bot.sandbox.config.instance_quota = 1
    try:
        body = fill(bot, count=5)["response"].json()  # type: ignore[attr-defined]
    finally:
        bot.sandbox.config.instance_quota = 200
    assert "Not enough quota" in body["errors"][Block.COUNT.value]
    assert bot.runtime.store.for_requester(REQUESTER, 10) == []


def test_self_and_unauthorized_approval_are_refused_explained_and_audited(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    bot.click(Action.APPROVE.value, button_value(row), STRANGER, APPROVAL_CHANNEL)
    bot.click(Action.APPROVE.value, button_value(row), REQUESTER, APPROVAL_CHANNEL)
    ephemerals = wait_for(lambda: len(bot.slack.of("chat.postEphemeral")) >= 2 and bot.slack.of("chat.postEphemeral"),
                          what="two ephemeral refusals")
    texts = {e["user"]: e["text"] for e in ephemerals}
    assert "Only the configured approvers" in texts[STRANGER]
    assert "your own request" in texts[REQUESTER]
    refused = [(e.actor, e.allowed) for e in bot.runtime.store.audit_log(row.id) if e.action == "approve"]
    assert sorted(refused) == sorted([(STRANGER, False), (REQUESTER, False)])  # the clicks are handled concurrently
    # A member of an approver user group may decide; the second approver learns who did.
    bot.click(Action.APPROVE.value, button_value(row), OTHER_APPROVER, APPROVAL_CHANNEL)
    wait_for(lambda: only_request(bot).decided_by == OTHER_APPROVER, what="the group member's approval")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL)
    wait_for(lambda: any(f"<@{OTHER_APPROVER}> already approved" in e["text"] for e in bot.slack.of("chat.postEphemeral")),
             what="who already decided")


def test_forged_and_stale_signatures_are_refused(bot: Bot) -> None:
    body = b"token=x&command=%2Fappserver&text=help&user_id=U1"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    forged = bot.http.post(bot.url + "/slack/events", content=body,
                           headers={**headers, **sign(body, secret="not-the-secret")})
    assert forged.status_code == 401
    stale = bot.http.post(bot.url + "/slack/events", content=body, headers={**headers, **sign(body, timestamp=1_000_000)})
    assert stale.status_code == 401
    good = bot.http.post(bot.url + "/slack/events", content=body, headers={**headers, **sign(body)})
    assert good.status_code == 200 and "/appserver" in good.text


def test_commands_status_list_cancel_and_unknown(bot: Bot) -> None:
    assert "orders Huawei Cloud" in bot.command("help").text
    assert "I don't know `frobnicate`" in bot.command("frobnicate").text
    assert "I don't know `size=1`" in bot.command("create size=1").text
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    assert bot.command(f"cancel {row.id}").status_code == 200
    final_state(bot, State.CANCELLED)
    assert bot.sandbox.calls("CreateAppServers") == []


def test_app_home_shows_requests_and_pending_approvals(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = final_state(bot, State.PENDING_APPROVAL)
    event = {"type": "app_home_opened", "user": APPROVER, "channel": "D0HOME", "tab": "home", "event_ts": "1.0"}
    assert bot.event(event, "Ev0001").status_code == 200
    assert bot.event(event, "Ev0001", retry=1).status_code == 200  # Slack's retry of the same event
    published = wait_for(lambda: bot.slack.of("views.publish"), what="the home tab")
    text = json.dumps(published[-1]["view"])
    assert row.id in text and Action.APPROVE.value in text
    assert len(bot.slack.of("views.publish")) == 1  # the retry was not acted on again


def test_healthz_and_metrics(bot: Bot) -> None:
    fill(bot)
    final_state(bot, State.SUCCEEDED)
    health = bot.http.get(bot.url + "/healthz").json()
    assert health["status"] == "ok" and health["database"] == "ok" and health["last_cloud_success"]
    metrics = bot.http.get(bot.url + "/metrics").text
    assert 'appserver_requests{state="succeeded"} 1.0' in metrics
    assert 'appserver_cloud_call_seconds_count{operation="CreateAppServers"} 1.0' in metrics
    assert 'appserver_slack_calls_total{method="chat.postMessage"}' in metrics
    assert "appserver_poll_lag_seconds" in metrics and "appserver_oldest_in_flight_seconds" in metrics
    assert "appserver_slack_news_waiting " in metrics and "appserver_slack_news_oldest_seconds" in metrics


def test_an_expired_trigger_id_is_explained_to_the_user(bot: Bot) -> None:
    bot.slack.fail_next("views.open", "expired_trigger_id")
    assert bot.command("create").status_code == 200
    answer = wait_for(lambda: bot.slack.responses, what="the response_url message")
    assert "took too long" in answer[0]["text"] and "expired_trigger_id" in answer[0]["text"]


def test_a_channel_the_bot_cannot_post_in_moves_the_thread_to_the_dm(bot: Bot) -> None:
    bot.slack.fail_next("chat.postMessage", "not_in_channel")
    fill(bot)
    row = final_state(bot, State.SUCCEEDED)
    assert row.channel_id == dm_channel(REQUESTER)  # Slack answers a post to a user with its DM's id
    assert any("add me to that channel" in t for t in bot.slack.texts(channel=REQUESTER))


@pytest.mark.slow  # waits out Slack's Retry-After
def test_a_rate_limited_post_is_retried_after_retry_after(bot: Bot) -> None:
    bot.slack.fail_next("chat.postMessage", "ratelimited")
    fill(bot)
    row = final_state(bot, State.SUCCEEDED)

    def heads() -> list[dict[str, object]]:
        return [c for c in bot.slack.calls if c["method"] == "chat.postMessage"
                and c["args"].get("channel") == REQUEST_CHANNEL and "thread_ts" not in c["args"]]

    posts = wait_for(lambda: len(heads()) == 2 and heads(), what="the retried head message")
    assert posts[1]["at"] - posts[0]["at"] >= 0.9  # sent again after Retry-After: 1
    row = wait_for(lambda: only_request(bot).thread_ts and only_request(bot), what="the thread recorded")
    # However late the thread came, it also carries the final word.
    wait_for(lambda: any("is done" in a.get("text", "") for a in bot.slack.of("chat.postMessage")
                         if a.get("thread_ts") == row.thread_ts), what="the outcome in the late thread")


@pytest.mark.slow
def test_with_no_cloud_credentials_it_runs_on_the_sandbox_and_says_so(slack: tuple[FakeSlack, str], tmp_path: Path,
                                                                      sandbox: Sandbox) -> None:
    fake, url = slack
    from bot.settings import Settings

    settings = Settings(slack_bot_token=fake.token, slack_signing_secret=SIGNING_SECRET, slack_api_url=url,  # type: ignore[arg-type]
                        approvers=APPROVER, approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL,
                        database_url=f"sqlite:///{tmp_path}/bot.db", slack_post_interval_seconds=0,
                        slack_update_interval_seconds=0, poll_interval_seconds=0.2, _env_file=None)  # type: ignore[call-arg]
    assert settings.sandbox_mode
    with running_bot(settings, sandbox, fake) as bot:
        assert bot.runtime.context.sandbox and bot.runtime.sandbox_server is not None
        view = bot.open_form()
        assert "SANDBOX" in json.dumps(view)
        view = bot.choose_group(view, OFFICE["id"])
        response = bot.submit_form(view, {"group": OFFICE["id"], "product": OFFICE["product_id"], "disk_type": "SAS",
                                          "disk_size": 80, "count": 1, "billing": "prePaid", "period_unit": "2",
                                          "period_num": 1, "reason": "Trying the sandbox"})
        assert response.status_code == 200 and not response.text
        wait_for(lambda: len(fake.of("chat.postMessage")) >= 2, what="thread and card")
        assert all(p["text"].startswith("[SANDBOX]") for p in fake.of("chat.postMessage"))
        assert all("SANDBOX" in json.dumps(p["blocks"]) for p in fake.of("chat.postMessage") if p.get("blocks"))
        assert bot.sandbox.calls() == []  # the test's sandbox was not used: the bot started its own
