"""How many Slack posts and edits a request costs, per kind of request, through the real app.

The bot runs with its tracker and courier against the fake Slack Web API and the sandbox cloud (all on
loopback); each kind of request is driven from the form to its end by signed requests, like a person
would, and the chat.postMessage and chat.update calls it caused are counted by where they went.

    python -m benchmarks.slack_posts [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.lifecycle import State
from bot.sandbox import Sandbox, SandboxConfig
from bot.sandbox.server import BackgroundServer
from bot.slack import messages
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.store.models import AppRequest
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack
from tests.flows import fill, final_state, only_request
from tests.harness import (
    APPROVAL_CHANNEL,
    APPROVER,
    NOTIFY_CHANNEL,
    OTHER_APPROVER,
    REQUEST_CHANNEL,
    REQUESTER,
    SIGNING_SECRET,
    Bot,
    running_bot,
    wait_for,
)


@contextmanager
def a_bot() -> Iterator[Bot]:
    sandbox = Sandbox(SandboxConfig(job_seconds=0.5, order_seconds=0.3))
    fake = FakeSlack(group_members={"S0MANAGERS": [OTHER_APPROVER]})
    with BackgroundServer(sandbox.app) as cloud, BackgroundServer(fake.app) as slack, \
            tempfile.TemporaryDirectory() as tmp:
        settings = sandbox_settings(
            cloud.url, sandbox, huaweicloud_sdk_project_id=sandbox.config.project_id, slack_bot_token=fake.token,
            slack_signing_secret=SIGNING_SECRET, slack_api_url=slack.url + "/api/", approvers=f"{APPROVER},S0MANAGERS",
            approval_channel=APPROVAL_CHANNEL, notify_channel=NOTIFY_CHANNEL, database_url=f"sqlite:///{tmp}/bot.db",
            poll_interval_seconds=0.2, poll_first_delay_seconds=0.1, slack_post_interval_seconds=0,
            slack_update_interval_seconds=0, slack_edit_window_seconds=0.2)
        with running_bot(settings, sandbox, fake) as bot:
            yield bot


def approved(bot: Bot) -> AppRequest:
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the approval card")
    assert bot.click(Action.APPROVE.value, button_value(row), APPROVER, APPROVAL_CHANNEL, row.approval_ts).status_code == 200
    return row


def pay_per_use(bot: Bot) -> None:
    fill(bot)
    final_state(bot, State.SUCCEEDED)


def auto_pay(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, auto_pay=True, count=1)
    approved(bot)
    final_state(bot, State.SUCCEEDED)


def paid_by_approver(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    approved(bot)
    row = final_state(bot, State.AWAITING_PAYMENT)
    row = wait_for(lambda: (r := only_request(bot)).order_id and messages.payable_amount(r) and r, what="the amount")
    value = button_value(row, amount=messages.payable_amount(row))
    assert bot.click(Action.PAY.value, value, APPROVER, APPROVAL_CHANNEL, row.approval_ts).status_code == 200
    final_state(bot, State.SUCCEEDED)


def rejected(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_unit="2", period_num=1, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the approval card")
    bot.click(Action.REJECT.value, row.id, APPROVER, APPROVAL_CHANNEL, row.approval_ts)
    wait_for(lambda: bot.slack.latest_view().get("callback_id") == "reject_request_reason", what="the reason form")
    bot.submit_reject_reason("No budget this quarter", APPROVER)
    final_state(bot, State.REJECTED)


KINDS: dict[str, Callable[[Bot], None]] = {
    "pay-per-use, auto-approved": pay_per_use,
    "yearly/monthly, auto-pay": auto_pay,
    "yearly/monthly, paid by an approver": paid_by_approver,
    "rejected": rejected,
}


def where(bot: Bot, args: dict[str, Any], row: AppRequest) -> str:
    channel = args.get("channel")
    if channel == NOTIFY_CHANNEL:
        return "notify"
    if channel == REQUESTER and row.channel_id != REQUESTER:
        return "dm"
    if channel == APPROVAL_CHANNEL:
        return "card"
    if channel == REQUEST_CHANNEL or channel == row.channel_id:
        return "thread"
    return str(channel)


def settled(bot: Bot) -> bool:
    return bot.runtime.courier.news.backlog() == 0


def count(kind: str, drive: Callable[[Bot], None]) -> dict[str, Any]:
    with a_bot() as bot:
        drive(bot)
        wait_for(lambda: settled(bot), what="the news delivered")
        time.sleep(1.5)  # edits held in the writer's window go out
        wait_for(lambda: settled(bot), what="the news delivered")
        row = only_request(bot)
        posts = Counter(where(bot, a, row) for a in bot.slack.of("chat.postMessage"))
        edits = Counter(where(bot, a, row) for a in bot.slack.of("chat.update"))
        return {"kind": kind, "posts": sum(posts.values()), "edits": sum(edits.values()),
                "posts_by_place": dict(posts), "edits_by_place": dict(edits),
                "ephemerals": len(bot.slack.of("chat.postEphemeral"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    results = [count(kind, drive) for kind, drive in KINDS.items()]
    print("| request | posts | edits | posts by place | edits by place |")
    print("|---|---|---|---|---|")
    for r in results:
        places = ", ".join(f"{k} {v}" for k, v in sorted(r["posts_by_place"].items()))
        edited = ", ".join(f"{k} {v}" for k, v in sorted(r["edits_by_place"].items()))
        print(f"| {r['kind']} | {r['posts']} | {r['edits']} | {places} | {edited} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
