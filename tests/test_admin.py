"""`appserver-bot admin` as an operator runs it: the real program against a real database (SQLite and
PostgreSQL), and, where people are told, a running bot whose courier tells them."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, update
from sqlmodel import col

from bot.admin.acting import AdminRefused, OperatorActions
from bot.lifecycle import State
from bot.notify import Event
from bot.sandbox import Sandbox
from bot.sandbox.state import WORKSPACE_SERVICE
from bot.spec import parse_spec
from bot.store.models import AppRequest, AuditEvent, SlackNews, utcnow
from bot.store.news import NewsStore, news_row
from bot.store.repository import NewRequest, RequestStore
from tests.flows import fill, only_request
from tests.harness import APPROVAL_CHANNEL, REQUEST_CHANNEL, REQUESTER, Bot, wait_for
from tests.processes import run_bot
from tests.specs import office_body, prepaid_body

LEASE = timedelta(seconds=1)  # SUBMIT_LEASE_SECONDS in the command's environment


def admin(*args: str, db: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_bot("admin", *args, env={"DATABASE_URL": db, "SUBMIT_LEASE_SECONDS": "1", **env}, cwd=cwd)


def cloud_env(sandbox: Sandbox, url: str) -> dict[str, str]:
    """The cloud the bot uses, for `fail`'s look at what an unanswered create made."""
    cfg = sandbox.config
    return {"HUAWEICLOUD_SDK_AK": cfg.access_key, "HUAWEICLOUD_SDK_SK": cfg.secret_key,
            "HUAWEICLOUD_SDK_PROJECT_ID": cfg.project_id, "HUAWEICLOUD_SDK_DOMAIN_ID": cfg.domain_id,
            "WORKSPACE_ENDPOINT": url, "BSS_ENDPOINT": url, "VPC_ENDPOINT": url,
            "HUAWEICLOUD_SDK_IAM_ENDPOINT": url, "CLOUD_RETRY_BASE_SECONDS": "0.01"}


def stored(store: RequestStore, state: State = State.PENDING_APPROVAL, *, prepaid: bool = True) -> AppRequest:
    spec = parse_spec(prepaid_body() if prepaid else office_body())
    new = NewRequest(REQUESTER, spec.canonical_json(), spec.spec_hash(), spec.charging_mode, spec.subscription_num,
                     spec.server_group_id, channel_id=REQUEST_CHANNEL, reason="New hires")
    return store.create(new, state, REQUESTER)


def backdate(engine: Engine, request_id: str, by: timedelta, **columns: Any) -> None:
    """As if the request's history happened `by` earlier (its audit rows too, which date its state)."""
    with engine.begin() as connection:
        connection.execute(update(AuditEvent).where(col(AuditEvent.request_id) == request_id)
                           .values(at=utcnow() - by))
        values = {"created_at": utcnow() - by, **columns}
        connection.execute(update(AppRequest).where(col(AppRequest.id) == request_id).values(**values))


def unanswered_create(store: RequestStore, started: datetime, **changes: Any) -> AppRequest:
    """An approved request whose create got no answer: needs_attention, its lease over, sent at `started`."""
    row = stored(store, State.APPROVED)
    assert store.claim_for_submit("worker-1", LEASE)
    result = store.transition(row.id, State.SUBMITTING, State.NEEDS_ATTENTION, actor="worker:worker-1",
                              action="outcome_unknown", detail="read timeout", news=Event.ATTENTION,
                              changes={"lease_owner": None, "lease_until": None, "submit_started_at": started,
                                       "outcome_sentence": "The cloud did not confirm the order.", **changes})
    assert result is not None and result.won
    return result.request


def audit_actions(store: RequestStore, request_id: str) -> list[tuple[str, str, bool]]:
    return [(e.actor, e.action, e.allowed) for e in store.audit_log(request_id)]


# Reading ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_list_shows_what_is_stuck_with_ages_and_audit_and_leaves_the_rest(engine: Engine, database_url: str,
                                                                          tmp_path: Path) -> None:
    store = RequestStore(engine)
    fresh = stored(store)  # waiting for approval a moment: fine
    unknown = unanswered_create(store, utcnow() - timedelta(minutes=10))
    approved = stored(store, State.APPROVED, prepaid=False)
    backdate(engine, approved.id, timedelta(hours=2))  # approved two hours ago and never sent: no worker?
    lost = stored(store, State.SUBMITTING)
    with engine.begin() as connection:  # a create whose worker died with it
        connection.execute(update(AppRequest).where(col(AppRequest.id) == lost.id)
                           .values(lease_owner="worker-9", lease_until=utcnow() - timedelta(minutes=1)))
    told = stored(store)
    with engine.begin() as connection:  # Slack news that failed three times
        connection.execute(update(SlackNews).where(col(SlackNews.request_id) == told.id).values(attempts=3))

    result = admin("list", "--json", db=database_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {r["id"]: r for r in json.loads(result.stdout)["requests"]}
    assert set(listed) == {approved.id, unknown.id, lost.id, told.id}
    assert fresh.id not in listed
    assert listed[approved.id]["seconds_in_state"] >= 7000
    assert "not sent to the cloud: is a worker running?" in listed[approved.id]["reasons"][0]
    assert "outcome is unknown" in listed[unknown.id]["reasons"][0]
    assert "worker-9 stopped" in listed[lost.id]["reasons"][0]
    assert "not delivered" in listed[told.id]["reasons"][-1] and "3 time(s)" in listed[told.id]["reasons"][-1]
    assert [a["action"] for a in listed[unknown.id]["audit"]] == ["created", "claim_submit", "outcome_unknown"]
    assert next(iter(listed)) == approved.id  # the longest waiting first

    text = admin("list", "--audit", "2", db=database_url, cwd=tmp_path)
    assert text.returncode == 0 and text.stderr == ""
    block = text.stdout.split(f"\n{approved.id}  approved  for 2h 0")[1].split("\n\n")[0]
    assert "is a worker running?" in block and block.count(" U0REQUESTER  created") == 1
    assert text.stdout.startswith("4 request(s) need a person")


@pytest.mark.slow
def test_list_says_so_when_nothing_needs_a_person(engine: Engine, database_url: str, tmp_path: Path) -> None:
    stored(RequestStore(engine))
    result = admin("list", db=database_url, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("Nothing needs a person")


@pytest.mark.slow
def test_show_gives_state_ids_amounts_and_the_whole_audit_log(engine: Engine, database_url: str,
                                                              tmp_path: Path) -> None:
    store = RequestStore(engine)
    row = stored(store, State.APPROVED)
    store.claim_for_submit("worker-1", timedelta(seconds=90))
    store.transition(row.id, State.SUBMITTING, State.SUBMITTED, actor="worker:worker-1", action="submitted",
                     changes={"order_id": "CS2612051200ABCDE", "submitted_at": utcnow(), "lease_owner": None})
    store.transition(row.id, State.SUBMITTED, State.AWAITING_PAYMENT, actor="worker:worker-1",
                     action="payment_due", changes={"progress_json": json.dumps(
                         {"total": 1, "order_amount": 1234.5, "order_currency": "CNY"})})
    text = admin("show", row.id, db=database_url, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "awaiting_payment (Waiting for payment) since" in text.stdout
    assert "CS2612051200ABCDE" in text.stdout and "CNY 1,234.50" in text.stdout
    assert "claim_submit  [approved → submitting]" in text.stdout
    as_json = json.loads(admin("show", row.id, "--json", db=database_url, cwd=tmp_path).stdout)
    assert as_json["order_id"] == "CS2612051200ABCDE" and Decimal(as_json["order_amount"]) == Decimal("1234.5")
    assert [e["action"] for e in as_json["audit"]] == ["created", "claim_submit", "submitted", "payment_due"]
    missing = admin("show", "AS-0000000000000", db=database_url, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr == "appserver-bot: There is no request AS-0000000000000.\n"


# Cancel and fail ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cancel_is_audited_as_the_operator_and_queues_the_news(engine: Engine, database_url: str,
                                                              tmp_path: Path) -> None:
    store = RequestStore(engine)
    row = stored(store)
    before = [n.id for n in NewsStore(engine).pending(row.id)]
    result = admin("cancel", row.id, "--reason", "Duplicate of AS-1; asked twice", "--as", "alice",
                   db=database_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{row.id} is cancelled (it was pending_approval)")
    after = store.get(row.id)
    assert after is not None and after.state == State.CANCELLED
    assert after.outcome_sentence == "Cancelled by an operator: Duplicate of AS-1; asked twice"
    last = store.audit_log(row.id)[-1]
    assert (last.actor, last.action, last.old_state, last.new_state) == (
        "operator:alice", "admin_cancel", "pending_approval", "cancelled")
    news = [n for n in NewsStore(engine).pending(row.id) if n.id not in before]
    assert [n.event for n in news] == [Event.FINISHED.value]
    again = admin("cancel", row.id, "--reason", "again", db=database_url, cwd=tmp_path)
    assert again.returncode == 1 and "has already ended (cancelled)" in again.stderr
    assert audit_actions(store, row.id)[-1][1:] == ("admin_cancel", False)  # the refusal is audited too


@pytest.mark.slow
def test_cancel_and_fail_never_touch_a_create_in_flight(engine: Engine, database_url: str, tmp_path: Path) -> None:
    store = RequestStore(engine)
    row = stored(store, State.APPROVED)
    assert store.claim_for_submit("worker-1", timedelta(seconds=90))
    for command in ("cancel", "fail"):
        result = admin(command, row.id, "--reason", "stuck", db=database_url, cwd=tmp_path)
        assert result.returncode == 1
        assert "being sent to the cloud right now (by worker-1" in result.stderr
        assert "no idempotency key" in result.stderr and result.stderr.count("\n") == 1
    after = store.get(row.id)
    assert after is not None and after.state == State.SUBMITTING and after.lease_owner == "worker-1"


@pytest.mark.slow
def test_fail_stops_following_an_order_that_stays_linked(engine: Engine, database_url: str, tmp_path: Path) -> None:
    store = RequestStore(engine)
    row = stored(store, State.APPROVED, prepaid=False)
    store.claim_for_submit("worker-1", timedelta(seconds=90))
    store.transition(row.id, State.SUBMITTING, State.SUBMITTED, actor="worker:worker-1", action="submitted",
                     changes={"job_id": "900000000000000001", "submitted_at": utcnow(), "lease_owner": None,
                              "lease_until": None, "next_poll_at": utcnow()})
    cancel = admin("cancel", row.id, "--reason", "stuck", db=database_url, cwd=tmp_path)
    assert cancel.returncode == 1 and "was already ordered (job 900000000000000001)" in cancel.stderr
    result = admin("fail", row.id, "--reason", "The job hung for two days; support ticket 123",
                   db=database_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no longer follows job 900000000000000001, which stays linked" in result.stdout
    after = store.get(row.id)
    assert after is not None and after.state == State.FAILED and after.job_id == "900000000000000001"
    assert after.outcome_sentence == "An operator closed it: The job hung for two days; support ticket 123"
    assert after.next_poll_at is None and after.finished_at is not None
    assert store.claim_due_for_tracking("tracker", timedelta(seconds=30)) == []  # nobody polls it any more
    assert NewsStore(engine).pending(row.id)[-1].event == Event.FINISHED.value


@pytest.mark.slow
def test_fail_of_an_unanswered_create_waits_for_its_window_and_a_look_that_finds_nothing(
    engine: Engine, database_url: str, sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    store = RequestStore(engine)
    env = cloud_env(sandbox, sandbox_url)
    recent = unanswered_create(store, utcnow() - timedelta(seconds=30))
    early = admin("fail", recent.id, "--reason", "gave up", db=database_url, cwd=tmp_path, **env)
    assert early.returncode == 1 and "could still act on" in early.stderr
    assert not sandbox.calls("ListCustomerOrders")

    old = unanswered_create(store, utcnow() - timedelta(minutes=10),
                            lookup_at=utcnow() - timedelta(minutes=10), lookup_found=False)
    result = admin("fail", old.id, "--reason", "Nothing was made; the requester asked again", db=database_url,
                   cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert sandbox.calls("ListCustomerOrders")  # it looked, after the window, before closing it
    after = store.get(old.id)
    assert after is not None and after.state == State.FAILED
    actions = [a for _, a, _ in audit_actions(store, old.id)]
    assert actions[-2:] == ["lookup", "admin_fail"]


@pytest.mark.slow
def test_fail_of_an_unanswered_create_links_what_the_look_finds_instead(
    engine: Engine, database_url: str, sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    store = RequestStore(engine)
    started = utcnow() - timedelta(minutes=5)
    row = unanswered_create(store, started)
    # The create did reach the cloud: its order, as the answer that never came would have said.
    sandbox.state.place_foreign_order(service_type_code=WORKSPACE_SERVICE, spec=json.loads(row.spec_json),
                                      at=started.timestamp() + 1, amount=100.0)
    result = admin("fail", row.id, "--reason", "gave up", db=database_url, cwd=tmp_path,
                   **cloud_env(sandbox, sandbox_url))
    assert result.returncode == 1 and "found what" in result.stderr and "nothing was marked failed" in result.stderr
    after = store.get(row.id)
    assert after is not None and after.state == State.SUBMITTED and after.order_id


@pytest.mark.slow
def test_fail_of_an_unanswered_create_with_candidates_waits_for_an_approver(engine: Engine, database_url: str,
                                                                          tmp_path: Path) -> None:
    store = RequestStore(engine)
    candidates = {"items": [{"kind": "order", "id": "CS1", "detail": "order CS1", "fits": True}], "ruled_out": []}
    row = unanswered_create(store, utcnow() - timedelta(minutes=10), candidates_json=json.dumps(candidates),
                            lookup_at=utcnow(), lookup_found=False)
    result = admin("fail", row.id, "--reason", "gave up", db=database_url, cwd=tmp_path)
    assert result.returncode == 1 and "This one is ours" in result.stderr
    assert store.get(row.id).state == State.NEEDS_ATTENTION  # type: ignore[union-attr]


def test_a_change_made_meanwhile_wins_over_the_operator(engine: Engine) -> None:
    """The operator's change is a compare-and-set on the row the checks read: a worker's move in between wins."""
    store = RequestStore(engine)
    row = stored(store)
    seen = store.get(row.id)
    assert seen is not None
    store.transition(row.id, State.PENDING_APPROVAL, State.APPROVED, actor="U0BOSS", action="approve")
    actions = OperatorActions(engine, actor="operator:alice", submit_lease=LEASE)
    with pytest.raises(AdminRefused, match=r"changed while this ran \(it is approved now"):
        actions._write(seen, action="admin_cancel", detail="x", new=State.CANCELLED)
    assert store.get(row.id).state == State.APPROVED  # type: ignore[union-attr]


# Slack: told by the courier -----------------------------------------------------------------------------


@pytest.mark.slow
def test_an_operators_cancel_is_told_in_the_thread_and_on_the_card_by_the_courier(bot: Bot, tmp_path: Path) -> None:
    fill(bot, billing="prePaid", period_num=3, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r.thread_ts and r, what="the card and thread")
    db = f"sqlite:///{tmp_path}/bot.db"
    result = admin("cancel", row.id, "--reason", "Budget frozen until January", db=db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    def card_says_so() -> bool:
        return any(a.get("channel") == APPROVAL_CHANNEL and a.get("ts") == row.approval_ts
                   and "Budget frozen until January" in json.dumps(a.get("blocks")) for a in bot.slack.of("chat.update"))

    wait_for(card_says_so, what="the card edited with the operator's reason")
    wait_for(lambda: any(a.get("thread_ts") == row.thread_ts and "Cancelled by an operator: Budget frozen" in
                         json.dumps(a) for a in bot.slack.of("chat.postMessage")), what="a reply in the thread")
    head = [a for a in bot.slack.of("chat.update") if a.get("ts") == row.thread_ts]
    assert "Cancelled by an operator" in json.dumps(head[-1]["blocks"])
    card = [a for a in bot.slack.of("chat.update") if a.get("ts") == row.approval_ts][-1]
    assert "approve_request" not in json.dumps(card["blocks"])  # no buttons left to decide with


@pytest.mark.slow
def test_repost_posts_the_thread_and_card_anew_and_requeue_sends_waiting_news_now(bot: Bot, tmp_path: Path) -> None:
    fill(bot, billing="prePaid", period_num=3, count=1)
    row = wait_for(lambda: (r := only_request(bot)).approval_ts and r.thread_ts and r, what="the card and thread")
    db = f"sqlite:///{tmp_path}/bot.db"
    posts = len(bot.slack.of("chat.postMessage"))
    result = admin("repost", row.id, "--as", "bob", db=db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fresh = wait_for(lambda: (r := only_request(bot)).approval_ts not in (None, row.approval_ts)
                     and r.thread_ts not in (None, row.thread_ts) and r, what="new thread and card")
    new_posts = bot.slack.of("chat.postMessage")[posts:]
    assert {a["channel"] for a in new_posts} >= {REQUEST_CHANNEL, APPROVAL_CHANNEL}
    assert "approve_request" in json.dumps(next(a for a in new_posts if a["channel"] == APPROVAL_CHANNEL)["blocks"])
    assert ("operator:bob", "admin_repost", True) in audit_actions(bot.runtime.store, row.id)

    # News Slack refused for a while waits far off, with its tries counted: requeue makes it due now.
    later = utcnow() + timedelta(hours=1)
    with bot.runtime.engine.begin() as connection:
        connection.execute(update(AppRequest).where(col(AppRequest.id) == row.id).values(reason="Rewritten"))
    # Written already waiting (one transaction): a running courier cannot deliver it before it is put off.
    with bot.runtime.engine.begin() as connection:
        connection.execute(insert(SlackNews).values(**{**news_row(row.id, Event.DECIDED), "available_at": later,
                                                       "attempts": 4}))
    assert NewsStore(bot.runtime.engine).pending(row.id)
    result = admin("requeue", row.id, db=db, cwd=tmp_path)
    assert result.returncode == 0 and "1 piece(s) of Slack news" in result.stdout
    wait_for(lambda: not NewsStore(bot.runtime.engine).pending(row.id), what="the news delivered")
    assert any(a.get("ts") == fresh.thread_ts and "Rewritten" in json.dumps(a.get("blocks"))
               for a in bot.slack.of("chat.update"))
    wrong = admin("repost", row.id, "--channel", "#general", db=db, cwd=tmp_path)
    assert wrong.returncode == 1 and "'#general' is not a Slack channel id" in wrong.stderr
    # Nothing waits (news given up after a fault in the bot leaves the queue): the messages are redrawn.
    with bot.runtime.engine.begin() as connection:
        connection.execute(update(AppRequest).where(col(AppRequest.id) == row.id).values(reason="Rewritten again"))
    edits = len(bot.slack.of("chat.update"))
    nothing = admin("requeue", row.id, db=db, cwd=tmp_path)
    assert nothing.returncode == 0 and "No Slack news waited" in nothing.stdout
    wait_for(lambda: any(a.get("ts") == fresh.thread_ts and "Rewritten again" in json.dumps(a.get("blocks"))
                         for a in bot.slack.of("chat.update")[edits:]), what="the thread head redrawn")
    wait_for(lambda: any(a.get("ts") == fresh.approval_ts and "Rewritten again" in json.dumps(a.get("blocks"))
                         for a in bot.slack.of("chat.update")[edits:]), what="the card redrawn")


@pytest.mark.slow
def test_every_subcommand_has_help(tmp_path: Path) -> None:
    for sub in ("list", "show", "cancel", "fail", "repost", "requeue"):
        result = run_bot("admin", sub, "--help", env={}, cwd=tmp_path)
        assert result.returncode == 0 and "usage: appserver-bot admin " + sub in result.stdout
