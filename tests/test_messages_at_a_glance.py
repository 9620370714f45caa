"""Messages people can act on at a glance, through the real app (signed requests, the fake Slack, the
sandbox cloud): the card in words, the thread's replies and buttons, the outcome, reminders, cancel,
order again, App Home, and `/appserver list` and `status`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy import text as sql

from bot.lifecycle import State
from bot.notify import Event
from bot.sandbox import Sandbox
from bot.sandbox.seed import SUBNETS
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.slack.ids import Block as BlockId
from bot.store.models import utcnow
from bot.store.news import NewsStore
from bot.store.repository import server_ids
from tests.fake_slack import FakeSlack
from tests.flows import OFFICE, fill, final_state, flow_settings, only_request
from tests.harness import (
    APPROVAL_CHANNEL,
    APPROVER,
    NOTIFY_CHANNEL,
    REQUEST_CHANNEL,
    REQUESTER,
    STRANGER,
    Bot,
    running_bot,
    wait_for,
)

OFFICE_SUBNET = next(s for s in SUBNETS if s["id"] == OFFICE["subnet_id"])
APPROVER_PINGS = (f"<@{APPROVER}>", "<!subteam^S0MANAGERS>")


def as_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def valid(args: dict[str, Any]) -> dict[str, Any]:
    """A message as Slack would take it: slack_sdk's Block Kit models accept every block, and Slack's limits hold."""
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    assert len(blocks) <= 50 and len(str(args.get("text", ""))) <= 40_000
    for raw in blocks:
        block = Block.parse(raw)
        assert block is not None, raw
        block.validate_json()
        for text in _texts(raw):
            assert len(text) <= 3000
        assert len(raw.get("fields") or []) <= 10
    return args


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value)


def all_valid(slack: FakeSlack) -> None:
    for method in ("chat.postMessage", "chat.update"):
        for args in slack.of(method):
            valid(args)


def card_posts(bot: Bot) -> list[dict[str, Any]]:
    return [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL and "thread_ts" not in a]


def thread_replies(bot: Bot, thread_ts: str | None) -> list[dict[str, Any]]:
    return [a for a in bot.slack.of("chat.postMessage") if a.get("thread_ts") == thread_ts
            and a.get("channel") == REQUEST_CHANNEL]


def latest(bot: Bot, ts: str | None, has: str = "") -> dict[str, Any]:
    """The latest edit of a message that contains `has`."""
    def find() -> dict[str, Any] | None:
        matching = [a for a in bot.slack.of("chat.update") if a.get("ts") == ts and has in as_text(a)]
        return matching[-1] if matching else None
    found: dict[str, Any] = wait_for(find, what=f"a message {ts} with {has!r}")
    return found


def buttons(message: dict[str, Any]) -> list[str]:
    found = []
    for block in message.get("blocks") or []:
        found += [e["action_id"] for e in block.get("elements", []) if e.get("type") == "button"]
        if (block.get("accessory") or {}).get("type") == "button":
            found.append(block["accessory"]["action_id"])
    return found


def pending_with_card(bot: Bot, **fields: object) -> Any:
    fill(bot, billing="prePaid", period_unit="2", period_num=6, count=3, **fields)
    return wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card's ts")


@pytest.mark.slow
def test_the_card_speaks_in_words_pings_the_approvers_and_links_the_thread(bot: Bot) -> None:
    row = pending_with_card(bot, reason="Three new designers start on Monday")
    card = valid(card_posts(bot)[0])
    blocks = as_text(card["blocks"])
    # The group, product and network by name; the ids only in the small print.
    assert card["blocks"][0]["type"] == "header" and OFFICE["name"] in card["blocks"][0]["text"]["text"]
    assert "4 vCPUs · 8 GiB" in blocks and f"subnet {OFFICE_SUBNET['name']}" in blocks
    assert "Yearly/monthly: 6 months" in blocks and "3 ×" in blocks  # noqa: RUF001
    assert "Spec hash" not in blocks
    # The reason is the main text, not grey context; who asked, and the approvers pinged, in the text too.
    sections = [b for b in card["blocks"] if b["type"] == "section" and "text" in b]
    assert "Three new designers start on Monday" in sections[0]["text"]["text"]
    assert all(p in sections[0]["text"]["text"] and p in card["text"] for p in APPROVER_PINGS)
    assert f"<@{REQUESTER}>" in card["text"] and OFFICE["name"] in card["text"]
    assert buttons(card) == [Action.APPROVE.value, Action.REJECT.value]
    approve = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert approve["confirm"]["title"]["text"] == "Approve this order?"
    # Why a person decides it: the rule that applied when it was submitted.
    assert "An approver decides this request: yearly/monthly orders are always approved by a person." in blocks
    # Both ways: the card links the requester's thread, and the thread's head links the card.
    thread_link = f"https://sandbox.slack.com/archives/{REQUEST_CHANNEL}/p{row.thread_ts.replace('.', '')}"
    card_link = f"https://sandbox.slack.com/archives/{APPROVAL_CHANNEL}/p{row.approval_ts.replace('.', '')}"
    assert thread_link in blocks
    head = latest(bot, row.thread_ts, card_link)
    assert buttons(head) == [Action.CANCEL.value]
    assert bot.slack.of("chat.getPermalink")
    all_valid(bot.slack)


@pytest.mark.slow
def test_an_approval_gets_one_reply_naming_the_approver_and_the_card_follows_to_done(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, auto_pay=True, count=2)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card")
    for _ in range(2):  # a double click decides once, and is told once
        bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    done = final_state(bot, State.SUCCEEDED)
    names = [s.name for s in bot.sandbox.state.servers.values() if s.id in server_ids(done)]
    assert len(names) == 2
    wait_for(lambda: bot.runtime.courier.news.backlog() == 0, what="the news told")
    replies = wait_for(lambda: len(thread_replies(bot, row.thread_ts)) >= 2 and thread_replies(bot, row.thread_ts),
                       what="the decision and the outcome")
    decided = [r for r in replies if "approved" in r["text"]]
    assert len(decided) == 1 and f"<@{APPROVER}>" in decided[0]["text"]
    final = valid(replies[-1])
    assert all(n in as_text(final["blocks"]) for n in names)  # servers by name, not id
    assert "https://console.huaweicloud.com/console/?region=" in as_text(final["blocks"])
    assert Action.ORDER_AGAIN.value in buttons(final)
    card = latest(bot, row.approval_ts, "is done")
    assert buttons(card) == [] and all(n in as_text(card["blocks"]) for n in names)
    head = latest(bot, row.thread_ts, names[0])
    assert Action.ORDER_AGAIN.value in buttons(head)
    # The outcome in NOTIFY_CHANNEL: who asked, who approved, which group, the servers, the thread.
    outcome = valid(wait_for(lambda: [a for a in bot.slack.of("chat.postMessage")
                                      if a.get("channel") == NOTIFY_CHANNEL], what="the outcome")[0])
    text = as_text(outcome["blocks"])
    assert f"<@{REQUESTER}>" in text and f"<@{APPROVER}>" in text and OFFICE["name"] in text
    assert all(n in text for n in names) and "2 of 2 created" in text
    assert f"archives/{REQUEST_CHANNEL}/p" in text
    assert bot.slack.texts(channel=REQUESTER) == []  # in the thread's channel already: no DM
    all_valid(bot.slack)


@pytest.mark.slow
def test_prepaid_progress_says_its_stage_and_counts_its_time(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, auto_pay=True, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card")
    bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    final_state(bot, State.SUCCEEDED)
    heads = [as_text(a["blocks"]) for a in bot.slack.of("chat.update") if a.get("ts") == row.thread_ts]
    moving = [h for h in heads if "^{ago}|" in h]
    assert moving and any("Order placed" in h or "creating the servers" in h for h in moving)
    assert not any("0/1 ready · 0m 00s" in h for h in heads)


@pytest.mark.slow
def test_only_the_requester_cancels_with_the_button_and_only_they_hear_of_it(bot: Bot) -> None:
    row = pending_with_card(bot)
    head = latest(bot, row.thread_ts, Action.CANCEL.value)
    cancel = next(e for b in head["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert cancel["confirm"]["confirm"]["text"] == "Cancel it"
    bot.click(Action.CANCEL.value, row.id, STRANGER, REQUEST_CHANNEL, row.thread_ts)
    refusal = wait_for(lambda: [a for a in bot.slack.of("chat.postEphemeral") if a.get("user") == STRANGER],
                       what="the stranger's refusal")
    assert "Only the person who asked" in refusal[0]["text"] and only_request(bot).state == State.PENDING_APPROVAL
    bot.click(Action.CANCEL.value, row.id, REQUESTER, REQUEST_CHANNEL, row.thread_ts)
    final_state(bot, State.CANCELLED)
    wait_for(lambda: [a for a in bot.slack.of("chat.postEphemeral") if a.get("user") == REQUESTER],
             what="the answer to the requester")
    card = latest(bot, row.approval_ts, "Cancelled")
    assert buttons(card) == []
    wait_for(lambda: bot.runtime.courier.news.backlog() == 0, what="the news told")
    assert thread_replies(bot, row.thread_ts) == []  # their own click: no post about it
    assert bot.slack.texts(channel=REQUESTER) == [] and bot.slack.texts(channel=NOTIFY_CHANNEL) == []
    assert Action.ORDER_AGAIN.value in buttons(latest(bot, row.thread_ts, Action.ORDER_AGAIN.value))


@pytest.mark.slow
def test_order_again_opens_the_form_filled_as_before(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="3", period_num=2, auto_renew=True, count=3, disk_size=120)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the card")
    bot.click(Action.REJECT.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    wait_for(lambda: bot.slack.latest_view().get("callback_id") == "reject_request_reason", what="the reason form")
    bot.submit_reject_reason("Ask again next quarter", APPROVER)
    final_state(bot, State.REJECTED)
    before = len(bot.slack.of("views.update"))
    assert bot.click(Action.ORDER_AGAIN.value, row.id, REQUESTER, REQUEST_CHANNEL, row.thread_ts).status_code == 200
    wait_for(lambda: len(bot.slack.of("views.update")) > before, what="the form, filled")
    view = bot.slack.latest_view()
    by_block = {b.get("block_id"): b for b in view["blocks"]}

    def initial(block: BlockId) -> Any:
        element = by_block[block.value]["element"]
        return element.get("initial_value") or (element.get("initial_option") or {}).get("value") or \
            [o["value"] for o in element.get("initial_options", [])]

    assert initial(BlockId.GROUP) == OFFICE["id"] and initial(BlockId.COUNT) == "3"
    assert initial(BlockId.DISK_SIZE) == "120" and initial(BlockId.BILLING) == "prePaid"
    assert initial(BlockId.PERIOD_UNIT) == "3" and initial(BlockId.PERIOD_NUM) == "2"
    assert "auto_renew" in initial(BlockId.PREPAID_OPTIONS)
    View(**{k: v for k, v in view.items() if k in ("type", "blocks", "callback_id", "title", "submit", "close",
                                                     "private_metadata")}).validate_json()


@pytest.mark.slow
def test_app_home_offers_a_new_request_and_shows_pending_as_the_card_does(bot: Bot) -> None:
    pending_with_card(bot, reason="Designers")
    before = len(bot.slack.of("views.publish"))
    bot.event({"type": "app_home_opened", "user": APPROVER, "tab": "home", "channel": "D0HOME"}, f"Ev{time.time_ns()}")
    wait_for(lambda: len(bot.slack.of("views.publish")) > before, what="App Home")
    home = bot.slack.of("views.publish")[-1]["view"]
    home = json.loads(home) if isinstance(home, str) else home
    text = as_text(home)
    assert OFFICE["name"] in text and "4 vCPUs · 8 GiB" in text and "Designers" in text
    assert "An approver decides this request: yearly/monthly orders are always approved by a person." in text
    approve = next(e for b in home["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["action_id"] == Action.APPROVE.value)
    assert approve["confirm"]["title"]["text"] == "Approve this order?"
    View(type="home", blocks=home["blocks"]).validate_json()
    new = next(e for b in home["blocks"] if b["type"] == "actions" for e in b["elements"]
               if e["action_id"] == Action.NEW_REQUEST.value)
    opened = len(bot.slack.of("views.open"))
    payload = {"type": "block_actions", "user": {"id": REQUESTER}, "trigger_id": f"{time.time()}.9.home",
               "team": {"id": "T0SANDBOX"}, "api_app_id": "A0APP", "token": "x",
               "view": {"type": "home", "id": "VHOME"}, "container": {"type": "view", "view_id": "VHOME"},
               "actions": [{"action_id": new["action_id"], "block_id": "b", "type": "button", "value": new["value"],
                            "action_ts": str(time.time())}]}
    assert bot.interact(payload).status_code == 200
    wait_for(lambda: len(bot.slack.of("views.open")) > opened, what="the form opened from App Home")
    wait_for(lambda: bot.slack.latest_view().get("callback_id") == "create_request"
             and any(b.get("block_id") == BlockId.GROUP.value for b in bot.slack.latest_view()["blocks"]),
             what="the create form")


@pytest.mark.slow
def test_list_and_status_show_group_count_state_and_servers(bot: Bot) -> None:
    fill(bot, count=2)
    done = final_state(bot, State.SUCCEEDED)
    names = [s.name for s in bot.sandbox.state.servers.values() if s.id in server_ids(done)]
    for command in ("list", f"status {done.id}"):
        bot.slack.responses.clear()
        assert bot.command(command).status_code == 200
        answer = wait_for(lambda: bot.slack.responses and bot.slack.responses[-1], what=command)["text"]
        assert OFFICE["name"] in answer and "2 app servers" in answer and "Done" in answer
        assert all(n in answer for n in names) and "<!date^" in answer


def reminding_bot(slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path,
                  **overrides: Any) -> Any:
    return running_bot(flow_settings(slack, sandbox, sandbox_url, tmp_path, **overrides), sandbox, slack[0])


@pytest.mark.slow
def test_approvers_are_reminded_three_times_and_the_requester_before_expiry(
        slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    # Reminders every 0.6 s; the request expires after 7.2 s, so the requester is warned 1.8 s before.
    with reminding_bot(slack, sandbox, sandbox_url, tmp_path, approval_remind_after_minutes=0.01,
                       approval_ttl_hours=0.002) as bot:
        row = pending_with_card(bot)

        def reminders() -> list[dict[str, Any]]:  # one message per round in the approvals channel
            return [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == APPROVAL_CHANNEL
                    and ":bell:" in a["text"]]

        wait_for(lambda: len(reminders()) >= 3, what="three reminders")
        warned = wait_for(lambda: [a for a in thread_replies(bot, row.thread_ts) if "expires" in a["text"]],
                          what="the requester warned")
        assert len(warned) == 1 and f"<@{REQUESTER}>" in warned[0]["text"]
        assert Action.CANCEL.value in buttons(warned[0])
        final_state(bot, State.EXPIRED)
        wait_for(lambda: bot.runtime.courier.news.backlog() == 0, what="the news told")
        told = reminders()
        assert len(told) == 3 and all(all(p in t["text"] for p in APPROVER_PINGS) for t in told)
        assert all("1 request waits for a decision" in t["text"] and row.id in t["text"] for t in told)
        assert all(t.get("thread_ts") is None for t in told)
        assert [e.detail for e in bot.runtime.store.audit_log(row.id) if e.action == Event.REMIND.value] == [
            "reminder 1 of 3", "reminder 2 of 3", "reminder 3 of 3"]
        expired = [a for a in thread_replies(bot, row.thread_ts) if "expired" in a["text"]]
        assert len(expired) == 1 and Action.ORDER_AGAIN.value in buttons(expired[0])
        audit = [e.action for e in bot.runtime.store.audit_log(row.id)]
        assert audit.count(Event.REMIND.value) == 3 and audit.count(Event.EXPIRING.value) == 1
        all_valid(bot.slack)


@pytest.mark.slow
def test_without_an_approval_channel_the_approvers_are_reminded_in_the_requests_channel(
        slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    with reminding_bot(slack, sandbox, sandbox_url, tmp_path, approval_remind_after_minutes=0.01,
                       approval_channel=None) as bot:
        fill(bot, billing="prePaid", period_unit="2", period_num=6, count=1)
        row = final_state(bot, State.PENDING_APPROVAL)
        thread_link = f"https://sandbox.slack.com/archives/{REQUEST_CHANNEL}/p"
        reminded = wait_for(lambda: [a for a in bot.slack.of("chat.postMessage") if a.get("channel") == REQUEST_CHANNEL
                                     and ":bell:" in a["text"]], what="a reminder in the request's channel")
        assert all(p in reminded[0]["text"] for p in APPROVER_PINGS) and "in the app's Home tab" in reminded[0]["text"]
        assert not only_request(bot).approval_ts and row.id in reminded[0]["text"]
        assert thread_link in as_text(reminded[0]["blocks"])  # each listed request links to its thread


def test_reminders_are_queued_once_however_many_replicas_look(engine: Any) -> None:
    from bot.store.models import utcnow
    from bot.store.repository import NewRequest, RequestStore

    stores = [RequestStore(engine), RequestStore(engine)]  # two replicas on one database
    now = utcnow()
    new = NewRequest(requester_id=REQUESTER, spec_json="{}", spec_hash="h", charging_mode="prePaid",
                     subscription_num=1, server_group_id="g", expires_at=now + timedelta(hours=1),
                     remind_at=now - timedelta(seconds=1))
    row = stores[0].create(new, State.PENDING_APPROVAL, REQUESTER)
    every, warn = timedelta(minutes=10), timedelta(minutes=5)
    assert sum(s.queue_reminders(every=every, most=3, warn_before=warn, now=now) for s in stores) == 1
    # Later: the second reminder, and the expiry warning, each once.
    later = now + timedelta(minutes=56)
    assert sum(s.queue_reminders(every=every, most=3, warn_before=warn, now=later) for s in stores) == 2
    news = [n.event for n in NewsStore(engine).pending(row.id)]
    assert news == [Event.CREATED, Event.REMIND, Event.REMIND, Event.EXPIRING]
    fresh = stores[0].get(row.id)
    assert fresh is not None and fresh.reminders_sent == 2 and fresh.expiry_warned
    # Decided requests are not reminded.
    stores[0].transition(row.id, State.PENDING_APPROVAL, State.CANCELLED, actor=REQUESTER, action="cancel")
    assert stores[1].queue_reminders(every=every, most=3, warn_before=warn, now=later + every) == 0



def _rounds_pass(bot: Bot) -> None:
    """As if APPROVAL_REMIND_AFTER_MINUTES had passed for every waiting request: the next round is due now."""
    with bot.runtime.engine.begin() as connection:
        connection.execute(sql("UPDATE requests SET remind_at = :now WHERE remind_at IS NOT NULL"),
                           {"now": utcnow() - timedelta(seconds=1)})


@pytest.mark.slow
def test_ten_waiting_requests_are_one_reminder_a_round_not_ten(
        slack: tuple[FakeSlack, str], sandbox: Sandbox, sandbox_url: str, tmp_path: Path) -> None:
    """Ten requests from one person: ten cards, and each round one message listing all ten (up to 30 pings
    before, one per request per round)."""
    with reminding_bot(slack, sandbox, sandbox_url, tmp_path, max_pending_per_user=10) as bot:
        for n in range(10):
            fill(bot, billing="prePaid", period_unit="2", period_num=6, count=1, reason=f"Team {n}")
        rows = wait_for(lambda: (found := bot.runtime.store.for_requester(REQUESTER, 20)) and len(found) == 10
                        and all(r.approval_ts for r in found) and found, what="ten cards")
        assert len(card_posts(bot)) == 10

        def reminders() -> list[dict[str, Any]]:
            return [a for a in bot.slack.of("chat.postMessage") if ":bell:" in a["text"]]

        for round_number in (1, 2, 3):
            _rounds_pass(bot)
            wait_for(lambda n=round_number: len(reminders()) == n, what=f"round {round_number}")
            wait_for(lambda: bot.runtime.courier.news.backlog() == 0, what="the round told")
        told = reminders()
        assert len(told) == 3 and all(t["channel"] == APPROVAL_CHANNEL and t.get("thread_ts") is None for t in told)
        for message in told:
            valid(message)
            blocks = as_text(message["blocks"])
            assert "10 requests wait for a decision" in message["text"] and all(p in message["text"]
                                                                                 for p in APPROVER_PINGS)
            assert all(r.id in blocks for r in rows)  # every request, with a link to its card
            assert blocks.count(f"https://sandbox.slack.com/archives/{APPROVAL_CHANNEL}/p") == 10
        assert all(r.reminders_sent == 3 and r.remind_at is None for r in bot.runtime.store.for_requester(REQUESTER, 20))
        assert bot.runtime.store.queue_reminders(every=timedelta(minutes=60), most=3, warn_before=timedelta(0)) == 0


def test_a_round_is_queued_once_when_replicas_look_at_the_same_moment(engine: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from bot.store.repository import NewRequest, RequestStore

    stores = [RequestStore(engine) for _ in range(4)]  # four replicas on one database
    now = utcnow()
    ids = [stores[0].create(NewRequest(requester_id=f"U0ASKER{n}", spec_json="{}", spec_hash="h",
                                       charging_mode="prePaid", subscription_num=1, server_group_id="g",
                                       channel_id="C0REQUESTS", expires_at=now + timedelta(hours=5),
                                       remind_at=now - timedelta(seconds=n)), State.PENDING_APPROVAL, "U0ASKER").id
           for n in range(10)]
    every = timedelta(minutes=10)
    with ThreadPoolExecutor(8) as pool:
        queued = list(pool.map(lambda n: stores[n % 4].queue_reminders(
            every=every, most=3, warn_before=timedelta(0), now=now), range(16)))
    assert sum(queued) == 1  # one round, one message
    reminded = [r for r in (stores[0].get(i) for i in ids) if r is not None]
    assert all(r.reminders_sent == 1 and r.remind_at == now + every for r in reminded)
    news = NewsStore(engine)
    assert sum(1 for i in ids for n in news.pending(i) if n.event == Event.REMIND) == 1
    # Without an approval channel: one message per channel the requests were asked in.
    other = stores[0].create(NewRequest(requester_id="U0ELSE", spec_json="{}", spec_hash="h", charging_mode="prePaid",
                                        subscription_num=1, server_group_id="g", channel_id="C0OTHER",
                                        expires_at=now + timedelta(hours=5), remind_at=now),
                             State.PENDING_APPROVAL, "U0ELSE")
    later = now + every
    assert stores[1].queue_reminders(every=every, most=3, warn_before=timedelta(0), now=later, per_channel=True) == 2
    assert [n.event for n in news.pending(other.id)] == [Event.CREATED, Event.REMIND]
