"""SQLite writes on the event loop when they need not wait (the replay memory's insert, an audited refusal),
else on a thread: the same rows either way, and the loop never sleeps on a busy database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bot.lifecycle import State
from bot.store.db import make_engine, write_lock
from bot.store.replays import ReplayMemory
from bot.store.repository import NewRequest, RequestStore
from bot.store.schema import migrate

SIGNATURE = "ab" * 32


def _memory(tmp_path: Path) -> tuple[ReplayMemory, str]:
    path = str(tmp_path / "bot.db")
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    return ReplayMemory(engine), path


def test_inline_and_threaded_inserts_share_one_memory(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    later = int(time.time()) + 600
    assert asyncio.run(memory.remember(SIGNATURE, later)) is True
    assert memory.first_time(SIGNATURE, later) is False  # the threaded path sees the inline insert
    assert memory.first_time("cd" * 32, later) is True
    assert asyncio.run(memory.remember("cd" * 32, later)) is False
    memory.close()


def test_another_process_holding_the_write_lock_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    memory, path = _memory(tmp_path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another replica's writer would

    async def scenario() -> None:
        remembered = asyncio.create_task(memory.remember(SIGNATURE, int(time.time()) + 600))
        for _ in range(20):  # the loop keeps turning meanwhile: nothing sleeps on it
            await asyncio.sleep(0.01)
        assert not remembered.done()
        other.execute("COMMIT")
        assert await remembered is True

    asyncio.run(scenario())
    assert asyncio.run(memory.remember(SIGNATURE, int(time.time()) + 600)) is False
    other.close()
    memory.close()


def test_a_writer_of_this_process_is_waited_for_off_the_loop(tmp_path: Path) -> None:
    memory, _ = _memory(tmp_path)
    lock = write_lock(make_engine(f"sqlite:///{tmp_path / 'bot.db'}"))

    async def scenario() -> None:
        lock.acquire()
        remembered = asyncio.create_task(memory.remember(SIGNATURE, int(time.time()) + 600))
        await asyncio.sleep(0.1)
        assert not remembered.done()
        lock.release()
        assert await remembered is True

    asyncio.run(scenario())
    memory.close()


def test_an_audit_written_on_the_loop_is_the_row_the_thread_writes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    store = RequestStore(engine)
    row = store.create(NewRequest("U0ASKER", "{}", "h" * 64, "prePaid", 1, "sg"), State.PENDING_APPROVAL, "U0ASKER")
    assert store.audit_now(row.id, "U0OTHER", "approve", allowed=False, detail="not_approver: only approvers")
    store.audit(row.id, "U0OTHER", "approve", allowed=False, detail="not_approver: only approvers")
    inline, threaded = [e for e in store.audit_log(row.id) if e.action == "approve"]
    fields = ("request_id", "actor", "action", "allowed", "detail", "old_state", "new_state", "spec_hash")
    assert [getattr(inline, f) for f in fields] == [getattr(threaded, f) for f in fields]
    assert inline.allowed is False and inline.old_state == State.PENDING_APPROVAL.value
    assert inline.at.tzinfo is not None and abs((threaded.at - inline.at).total_seconds()) < 5
    other = sqlite3.connect(str(tmp_path / "bot.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another replica writing: the loop does not wait, the caller uses a thread
    assert store.audit_now(row.id, "U0OTHER", "approve", allowed=False) is False
    other.execute("COMMIT")
    other.close()
    store.close()


def test_a_request_read_on_the_loop_is_the_one_a_thread_reads_even_while_another_process_writes(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    migrate(engine)
    store = RequestStore(engine)
    row = store.create(NewRequest("U0ASKER", '{"a": 1}', "h" * 64, "prePaid", 3, "sg", reason="why"),
                       State.PENDING_APPROVAL, "U0ASKER")
    other = sqlite3.connect(str(tmp_path / "bot.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a writer elsewhere: WAL lets the read go on
    now = store.get_now(row.id)
    other.execute("ROLLBACK")
    other.close()
    assert now is not None and now.model_dump() == store.get(row.id).model_dump()  # type: ignore[union-attr]
    assert now.created_at.tzinfo is not None and now.state == State.PENDING_APPROVAL.value
    assert store.get_now("AS-00000000") is None
    store.close()
