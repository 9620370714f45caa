"""`appserver-bot doctor` and `migrate` as an operator runs them, and the schema check at start."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.spec import parse_spec
from bot.store.db import Sessions, make_engine, normalize_url
from bot.store.repository import NewRequest, RequestStore
from bot.store.schema import SchemaBehind, ensure_schema, head_revision, migrate, schema_status
from tests.fake_slack import FakeSlack
from tests.specs import office_body

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def slack_url() -> Iterator[str]:
    with BackgroundServer(FakeSlack().app) as server:
        yield server.url + "/api/"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def doctor_env(sandbox: Sandbox, sandbox_url: str, slack_url: str, db: str) -> dict[str, str]:
    cfg = sandbox.config
    return {
        "HUAWEICLOUD_SDK_AK": cfg.access_key, "HUAWEICLOUD_SDK_SK": cfg.secret_key,
        "WORKSPACE_ENDPOINT": sandbox_url, "HUAWEICLOUD_SDK_IAM_ENDPOINT": sandbox_url,
        "BSS_ENDPOINT": sandbox_url, "VPC_ENDPOINT": sandbox_url, "CLOUD_RETRY_BASE_SECONDS": "0.01",
        "SLACK_BOT_TOKEN": "xoxb-fake-token", "SLACK_API_URL": slack_url, "DATABASE_URL": db,
    }


def test_doctor_all_green_against_the_sandbox(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                              tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/bot.db"
    assert run_cli("migrate", env=doctor_env(sandbox, sandbox_url, slack_url, db), cwd=tmp_path).returncode == 0
    result = run_cli("doctor", env=doctor_env(sandbox, sandbox_url, slack_url, db), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok    cloud") and sandbox.config.project_id in lines[0] and "cn-north-4" in lines[0]
    assert sandbox_url in lines[0] and "AK/SK accepted" in lines[0]
    assert lines[1].startswith("ok    slack") and "U0BOT" in lines[1]
    assert lines[2].startswith("ok    database") and head_revision() in lines[2]
    assert lines[3] == f"ok    account   account id {sandbox.config.domain_id} found through IAM"
    assert sandbox.calls("ListServerGroups")[0]["auth"] == "aksk"


def test_doctor_names_each_failure_and_exits_non_zero(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                                      tmp_path: Path) -> None:
    env = doctor_env(sandbox, sandbox_url, slack_url, f"sqlite:///{tmp_path}/empty.db")
    env.update(HUAWEICLOUD_SDK_SK="WRONG", SLACK_BOT_TOKEN="xoxb-wrong")
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    cloud, slack, database, account = result.stdout.splitlines()
    assert cloud.startswith("FAIL  cloud") and "APIGW.0301" in cloud and "credentials" in cloud
    assert account.startswith("FAIL  account") and "HUAWEICLOUD_SDK_DOMAIN_ID" in account and "APIGW.0301" in account
    assert slack.startswith("FAIL  slack") and "invalid_auth" in slack
    assert database.startswith("FAIL  database") and "appserver-bot migrate" in database
    assert "WRONG" not in result.stdout + result.stderr


def test_sqlite_is_migrated_on_first_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/fresh.db")
    assert not schema_status(engine).up_to_date
    assert ensure_schema(engine).up_to_date
    assert (tmp_path / "fresh.db").exists()


def test_a_postgres_database_that_is_behind_is_refused(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    with pytest.raises(SchemaBehind, match="run `appserver-bot migrate`"):
        ensure_schema(engine)
    result = run_cli("migrate", env={"DATABASE_URL": postgres_url}, cwd=tmp_path)
    assert result.returncode == 0 and "up to date" in result.stdout
    assert ensure_schema(engine).up_to_date
    engine.dispose()


def test_migrations_match_the_models(engine: object) -> None:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_postgres_urls_use_the_shipped_driver() -> None:
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/again.db")
    assert migrate(engine).up_to_date and migrate(engine).up_to_date


def test_doctor_accepts_a_plain_postgresql_url(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                               postgres_url: str, tmp_path: Path) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    env = doctor_env(sandbox, sandbox_url, slack_url, plain)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[2].startswith("ok    database")


def test_on_sqlite_reads_go_on_while_a_write_is_open_and_writers_queue(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/bot.db")
    migrate(engine)
    store = RequestStore(engine)
    spec = parse_spec(office_body())
    row = store.create(NewRequest("U0ASKER", spec.canonical_json(), spec.spec_hash(), "postPaid", 1, "g"),
                       State.APPROVED, "U0ASKER")
    sessions = Sessions(engine)
    writing, release = threading.Event(), threading.Event()

    def long_write() -> None:
        with sessions.write() as session:
            session.execute(text("UPDATE requests SET reason = 'x'"))
            writing.set()
            release.wait(10)

    writer = threading.Thread(target=long_write)
    writer.start()
    try:
        assert writing.wait(10)
        fresh = store.get(row.id)  # a deferred read: WAL serves the last committed state at once
        assert fresh is not None and fresh.reason is None
        second = threading.Thread(target=store.audit, args=(row.id, "U0X", "look"), kwargs={"allowed": True})
        second.start()
        second.join(0.5)
        assert second.is_alive()  # the second writer waits for the first ...
    finally:
        release.set()
        writer.join(10)
    second.join(10)
    assert not second.is_alive()  # ... and goes as soon as it commits
    assert [e.action for e in store.audit_log(row.id)] == ["created", "look"]
    engine.dispose()
