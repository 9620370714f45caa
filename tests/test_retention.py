"""RETENTION_DAYS: the words typed in Slack of requests that ended long ago, their Slack news that was never
taken, and expired replay signatures are forgotten, in batches; state, ids, amounts and the audit log stay."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, update
from sqlmodel import Session, col, select

from bot.lifecycle import State
from bot.retention import Pruned, Retention
from bot.sandbox.server import free_port
from bot.spec import parse_spec
from bot.store.models import AppRequest, SeenSignature, SlackNews, utcnow
from bot.store.news import NewsStore
from bot.store.repository import NewRequest, RequestStore
from tests.fake_slack import FakeSlack
from tests.processes import BotProcess, assert_bot_lines_only
from tests.specs import prepaid_body


def request(store: RequestStore, engine: Engine, *, ended_days_ago: float | None, state: State = State.REJECTED,
            reason: str = "For the new office in Lyon") -> AppRequest:
    spec = parse_spec(prepaid_body())
    row = store.create(NewRequest("U0ASKER", spec.canonical_json(), spec.spec_hash(), spec.charging_mode,
                                  spec.subscription_num, spec.server_group_id, reason=reason),
                       State.PENDING_APPROVAL, "U0ASKER")
    if state == State.REJECTED:
        store.transition(row.id, State.PENDING_APPROVAL, State.REJECTED, actor="U0BOSS", action="reject",
                         detail="Lyon is not open yet",
                         changes={"decided_by": "U0BOSS", "decision_reason": "Lyon is not open yet",
                                  "finished_at": utcnow(), "order_id": f"CS{row.id[3:]}"})
    if ended_days_ago is not None:
        then = utcnow() - timedelta(days=ended_days_ago)
        with engine.begin() as connection:
            connection.execute(update(AppRequest).where(col(AppRequest.id) == row.id)
                               .values(finished_at=then, updated_at=then, created_at=then))
            connection.execute(update(SlackNews).where(col(SlackNews.request_id) == row.id).values(created_at=then))
    fresh = store.get(row.id)
    assert fresh is not None
    return fresh


def count(engine: Engine, table: type, *where: object) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(table).where(*where)).one())  # type: ignore[arg-type]


def test_ended_requests_forget_the_typed_words_and_keep_the_rest(engine: Engine) -> None:
    store = RequestStore(engine)
    old = request(store, engine, ended_days_ago=100)
    recent = request(store, engine, ended_days_ago=10)
    waiting = request(store, engine, ended_days_ago=None, state=State.PENDING_APPROVAL)
    with engine.begin() as connection:  # a request waiting since long ago has not ended: kept whole
        connection.execute(update(AppRequest).where(col(AppRequest.id) == waiting.id)
                           .values(created_at=utcnow() - timedelta(days=200), updated_at=utcnow() - timedelta(days=200)))
    audit_before = [(e.action, e.detail) for e in store.audit_log(old.id)]
    assert NewsStore(engine).pending(old.id)  # its news never reached Slack
    now = int(utcnow().timestamp())
    with engine.begin() as connection:  # left by a replica that then saw no traffic to purge them itself
        connection.execute(insert(SeenSignature), [{"signature": "a" * 64, "expires_at": now - 10},
                                                   {"signature": "b" * 64, "expires_at": now + 300}])

    pruned = Retention(engine, 90).prune()
    assert pruned == Pruned(news=1, signatures=1, requests=1)
    kept = store.get(old.id)
    assert kept is not None and kept.reason is None and kept.decision_reason is None
    assert (kept.state, kept.order_id, kept.spec_hash, kept.decided_by) == (
        State.REJECTED, old.order_id, old.spec_hash, "U0BOSS")
    log = store.audit_log(old.id)
    assert [(e.action, e.detail) for e in log[:-1]] == audit_before  # the audit log stays, rejection reason and all
    assert log[-1].action == "retention" and "RETENTION_DAYS" in (log[-1].detail or "")
    assert NewsStore(engine).pending(old.id) == []
    for younger in (recent, waiting):
        row = store.get(younger.id)
        assert row is not None and row.reason == "For the new office in Lyon"
        assert NewsStore(engine).pending(younger.id)
    assert count(engine, SeenSignature) == 1
    assert not Retention(engine, 90).prune()  # nothing twice


def test_a_long_backlog_goes_in_small_batches_over_several_runs(engine: Engine) -> None:
    store = RequestStore(engine)
    rows = [request(store, engine, ended_days_ago=120) for _ in range(5)]
    retention = Retention(engine, 90, batch=2, most_batches=2)
    assert retention.prune().requests == 4  # two transactions of two: the run stays short
    assert retention.prune().requests == 1
    assert all(store.get(r.id).reason is None for r in rows)  # type: ignore[union-attr]
    assert count(engine, SlackNews, col(SlackNews.request_id).in_([r.id for r in rows])) == 0


@pytest.mark.slow
def test_the_worker_prunes_by_itself(fake_slack: tuple[FakeSlack, str], tmp_path: Path) -> None:
    from bot.store.db import make_engine
    from bot.store.schema import migrate

    database = f"sqlite:///{tmp_path}/bot.db"
    engine = make_engine(database)
    migrate(engine)
    store = RequestStore(engine)
    old = request(store, engine, ended_days_ago=40)
    fake, url = fake_slack
    bot = BotProcess("worker", env={"SLACK_BOT_TOKEN": fake.token, "SLACK_API_URL": url, "DATABASE_URL": database,
                                    "RETENTION_DAYS": "30", "PORT": str(free_port())}, cwd=tmp_path)
    try:
        bot.wait_for("retention: forgot")
    finally:
        code = bot.stop(signal.SIGTERM)
    # The worker serves /healthz with uvicorn, which ends by re-raising the signal it stopped for.
    assert code in (0, -signal.SIGTERM), bot.output
    assert_bot_lines_only(bot.output)
    row = store.get(old.id)
    assert row is not None and row.reason is None and row.state == State.REJECTED
    engine.dispose()
