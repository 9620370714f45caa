"""Upgrades and going back: every migration has a working downgrade (`migrate --to`), an older version on a
newer schema says so in one sentence, requests pending at an upgrade still get their reminders, and buttons on
cards posted before an upgrade keep working."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from bot.lifecycle import State
from bot.notify import Event
from bot.slack.messages import payable_amount
from bot.spec import parse_spec
from bot.store.db import make_engine
from bot.store.models import AppRequest, utcnow
from bot.store.news import NewsStore
from bot.store.repository import NewRequest, RequestStore
from bot.store.schema import head_revision, migrate, revisions, schema_status
from tests.flows import fill, only_request
from tests.harness import APPROVAL_CHANNEL, APPROVER, REQUEST_CHANNEL, REQUESTER, Bot, wait_for
from tests.processes import run_bot
from tests.specs import prepaid_body

OLD_CARDS = Path(__file__).parent / "fixtures" / "cards_before_upgrade.json"


def pending(store: RequestStore) -> AppRequest:
    spec = parse_spec(prepaid_body())
    return store.create(NewRequest(REQUESTER, spec.canonical_json(), spec.spec_hash(), spec.charging_mode,
                                   spec.subscription_num, spec.server_group_id, channel_id=REQUEST_CHANNEL,
                                   reason="kept across the schema's moves", expires_at=utcnow() + timedelta(days=1),
                                   remind_at=utcnow() + timedelta(hours=1)),
                        State.PENDING_APPROVAL, REQUESTER)


def no_drift(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), SQLModel.metadata))


def test_every_migration_goes_down_and_up_again_keeping_the_requests(engine: Engine) -> None:
    """Upgrade → downgrade one step at a time to an empty schema, then back: each downgrade works, and the
    requests stored at the head survive every step down to the first schema."""
    store = RequestStore(engine)
    row = pending(store)
    known = revisions()
    assert known[-1] == head_revision() and len(known) >= 6
    for revision in reversed(known[:-1]):
        assert migrate(engine, to=revision).current == revision
        with engine.connect() as connection:
            kept = connection.execute(text("SELECT reason FROM requests WHERE id = :id"), {"id": row.id}).scalar()
        assert kept == "kept across the schema's moves"
    assert migrate(engine, to="base").current is None
    assert migrate(engine).up_to_date and no_drift(engine) == []
    assert migrate(engine, to=known[0]).current == known[0]
    assert migrate(engine, to="head").up_to_date and no_drift(engine) == []


@pytest.mark.slow
def test_migrate_to_goes_back_and_forth_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url}
    head, previous = revisions()[-1], revisions()[-2]
    up = run_bot("migrate", env=env, cwd=tmp_path)
    assert up.returncode == 0 and f"from empty to {head}" in up.stdout
    down = run_bot("migrate", "--to", previous, env=env, cwd=tmp_path)
    assert down.returncode == 0 and f"from {head} to {previous}" in down.stdout
    empty = run_bot("migrate", "--to", "base", env=env, cwd=tmp_path)
    assert empty.returncode == 0 and f"from {previous} to empty" in empty.stdout
    again = run_bot("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and f"from empty to {head}" in again.stdout
    engine = make_engine(database_url)
    try:
        assert schema_status(engine).up_to_date and no_drift(engine) == []
    finally:
        engine.dispose()
    unknown = run_bot("migrate", "--to", "9999", env=env, cwd=tmp_path)
    assert unknown.returncode == 3 and unknown.stderr.count("\n") == 1
    assert "9999 is not a schema revision this version knows" in unknown.stderr


@pytest.mark.slow
def test_an_older_version_on_a_newer_schema_says_so_in_one_sentence(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as connection:  # what a newer version's migrate leaves behind
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    env = {"DATABASE_URL": database_url, "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "PORT": "0"}
    sentence = (f"appserver-bot: The database in DATABASE_URL is at schema 0999, newer than this version of the bot "
                f"knows (it needs {head_revision()}): run the newer version, or go back with its "
                f"`appserver-bot migrate --to {head_revision()}` first.\n")
    for command in (("worker",), ("serve",), ("migrate",), ("admin", "list")):
        result = run_bot(*command, env=env, cwd=tmp_path)
        assert (result.returncode, result.stderr, result.stdout) == (3, sentence, ""), command


def test_requests_pending_at_an_upgrade_still_get_their_reminders(engine: Engine) -> None:
    """Reminders came with schema 0006: a request waiting for approval across that upgrade has no remind_at,
    and is reminded all the same, once it has waited as long as any other."""
    store = RequestStore(engine)
    row = pending(store)
    assert migrate(engine, to="0005").current == "0005"  # as the version before reminders stored it ...
    with engine.begin() as connection:  # ... two hours ago
        connection.execute(text("UPDATE requests SET created_at = :at WHERE id = :id"),
                           {"at": utcnow() - timedelta(hours=2), "id": row.id})
    assert migrate(engine).up_to_date  # the upgrade
    stored = store.get(row.id)
    assert stored is not None and stored.remind_at is None and stored.reminders_sent == 0
    queued = store.queue_reminders(every=timedelta(hours=1), most=3, warn_before=timedelta(minutes=10))
    assert queued == 1
    after = store.get(row.id)
    assert after is not None and after.reminders_sent == 1 and after.remind_at is not None
    assert [n.event for n in NewsStore(engine).pending(row.id)][-1] == Event.REMIND.value
    assert store.queue_reminders(every=timedelta(hours=1), most=3, warn_before=timedelta(minutes=10)) == 0


def old_card(kind: str, row: AppRequest) -> dict[str, Any]:
    document = json.loads(OLD_CARDS.read_text())
    raw = json.dumps(document[kind]).replace("{request_id}", row.id).replace("{spec_hash12}", row.spec_hash[:12]) \
        .replace("{order_id}", row.order_id or "").replace("{amount}", payable_amount(row) or "")
    message: dict[str, Any] = json.loads(raw)
    return message


def click_on(bot: Bot, message: dict[str, Any], action_id: str, user: str, ts: str) -> None:
    """A click on a button of `message` as Slack sends it: the button's ids and value, and the message itself."""
    block, button = next((b, e) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == action_id)
    channel = message["channel"]
    payload = {
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0SANDBOX"},
        "api_app_id": "A0APP", "token": "x", "trigger_id": "1.2.abc", "team": {"id": "T0SANDBOX", "domain": "sandbox"},
        "channel": {"id": channel, "name": "c"}, "container": {"type": "message", "channel_id": channel,
                                                               "message_ts": ts},
        "message": {"type": "message", "ts": ts, "text": message["text"], "blocks": message["blocks"]},
        "actions": [{"action_id": button["action_id"], "block_id": block["block_id"], "type": "button",
                     "value": button["value"], "text": button["text"], "action_ts": "1.1"}],
    }
    assert bot.interact(payload).status_code == 200


def test_buttons_on_cards_posted_before_an_upgrade_keep_working(bot: Bot) -> None:
    fill(bot, billing="prePaid", period_num=3, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r, what="the request's card")
    click_on(bot, old_card("approval_card", row), "reject_request", APPROVER, row.approval_ts)
    wait_for(lambda: any(v.get("callback_id") == "reject_request_reason" for v in bot.slack.views.values()),
             what="the rejection form opened from the old card")
    click_on(bot, old_card("approval_card", row), "approve_request", APPROVER, row.approval_ts)
    wait_for(lambda: only_request(bot).state != State.PENDING_APPROVAL, what="the old card's Approve")
    approved = only_request(bot)
    assert approved.decided_by == APPROVER and approved.state != State.CANCELLED

    # Ordered, the order waits for payment: the old payment card's Pay pays it, once.
    waiting = wait_for(lambda: (r := only_request(bot)).state == State.AWAITING_PAYMENT and payable_amount(r) and r,
                       what="the order waiting for payment")
    assert approved.id == waiting.id
    click_on(bot, old_card("payment_card", waiting), "pay_order", APPROVER, waiting.approval_ts)
    wait_for(lambda: only_request(bot).state in (State.PROVISIONING, State.SUCCEEDED), what="the old card's Pay")
    assert len(bot.sandbox.calls("PayOrders")) == 1

    # The requester's thread head from before the upgrade: its Cancel button still withdraws a request.
    fill(bot, billing="prePaid", period_num=3, count=1)
    second = wait_for(lambda: next((r for r in bot.runtime.store.for_requester(REQUESTER)
                                    if r.state == State.PENDING_APPROVAL and r.thread_ts), None),
                      what="a second request")
    click_on(bot, old_card("thread_head", second), "cancel_request", REQUESTER, second.thread_ts)
    wait_for(lambda: bot.runtime.store.get(second.id).state == State.CANCELLED,  # type: ignore[union-attr]
             what="the old head's Cancel")
    assert old_card("approval_card", row)["channel"] == APPROVAL_CHANNEL
