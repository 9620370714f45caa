"""`appserver-bot doctor` and `migrate` as an operator runs them, and the schema check at start."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from bot.doctor import CHECKS
from bot.lifecycle import State
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from bot.slack.access import BOT_SCOPES
from bot.spec import parse_spec
from bot.store.db import Sessions, make_engine, normalize_url
from bot.store.repository import NewRequest, RequestStore
from bot.store.schema import SchemaBehind, ensure_schema, head_revision, migrate, schema_status
from tests.fake_slack import FakeSlack
from tests.processes import run_bot as run_cli
from tests.specs import office_body


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack(group_members={"S0LEADS": ["U0LEAD1", "U0LEAD2"]})
    with BackgroundServer(fake.app) as server:
        yield fake, server.url + "/api/"


@pytest.fixture
def slack_url(slack: tuple[FakeSlack, str]) -> str:
    return slack[1]


def doctor_env(sandbox: Sandbox, sandbox_url: str, slack_url: str, db: str) -> dict[str, str]:
    cfg = sandbox.config
    return {
        "HUAWEICLOUD_SDK_AK": cfg.access_key, "HUAWEICLOUD_SDK_SK": cfg.secret_key,
        "WORKSPACE_ENDPOINT": sandbox_url, "HUAWEICLOUD_SDK_IAM_ENDPOINT": sandbox_url,
        "BSS_ENDPOINT": sandbox_url, "VPC_ENDPOINT": sandbox_url, "CLOUD_RETRY_BASE_SECONDS": "0.01",
        "SLACK_BOT_TOKEN": "xoxb-fake-token", "SLACK_API_URL": slack_url, "DATABASE_URL": db,
    }


def lines_by_check(stdout: str) -> dict[str, str]:
    """`ok    cloud     …` → {"cloud": "ok    cloud     …"}: one line per check, and nothing else."""
    lines = stdout.splitlines()
    assert all(line[:6] in ("ok    ", "warn  ", "FAIL  ") for line in lines), stdout
    by_name = {line[6:].split()[0]: line for line in lines}
    assert len(by_name) == len(lines) == len(CHECKS), stdout
    return by_name


@pytest.mark.slow
def test_doctor_all_green_against_the_sandbox(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                              tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/bot.db"
    env = {**doctor_env(sandbox, sandbox_url, slack_url, db), "APPROVERS": "U0BOSS,S0LEADS",
           "APPROVAL_CHANNEL": "C0APPROVALS", "NOTIFY_CHANNEL": "C0NEWS"}
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = lines_by_check(result.stdout)
    assert all(line.startswith("ok  ") for line in lines.values()), result.stdout
    cloud = lines["cloud"]
    assert sandbox.config.project_id in cloud and "cn-north-4" in cloud
    assert sandbox_url in cloud and "AK/SK accepted" in cloud
    assert "U0BOT" in lines["slack"]
    assert f"all {len(BOT_SCOPES)}" in lines["scopes"]
    assert "APPROVAL_CHANNEL C0APPROVALS: the bot is a member" in lines["channels"]
    assert "U0BOSS, S0LEADS: 3 people can approve" in lines["approvers"]
    assert head_revision() in lines["database"]
    assert lines["account"] == f"ok    account   account id {sandbox.config.domain_id} found through IAM"
    assert sandbox.calls("ListServerGroups")[0]["auth"] == "aksk"


@pytest.mark.slow
def test_doctor_names_each_failure_and_exits_non_zero(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                                      postgres_url: str, tmp_path: Path) -> None:
    env = doctor_env(sandbox, sandbox_url, slack_url, postgres_url)
    env.update(HUAWEICLOUD_SDK_SK="WRONG", SLACK_BOT_TOKEN="xoxb-wrong", APPROVERS="U0BOSS")
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = lines_by_check(result.stdout)
    assert lines["cloud"].startswith("FAIL") and "APIGW.0301" in lines["cloud"] and "credentials" in lines["cloud"]
    assert lines["slack"].startswith("FAIL") and "invalid_auth" in lines["slack"] and "SLACK_BOT_TOKEN" in lines["slack"]
    assert lines["scopes"].startswith("FAIL") and lines["approvers"].startswith("FAIL")
    assert lines["channels"].startswith("warn")
    assert lines["account"].startswith("FAIL") and "HUAWEICLOUD_SDK_DOMAIN_ID" in lines["account"]
    assert lines["database"].startswith("FAIL") and "appserver-bot migrate" in lines["database"]
    assert "WRONG" not in result.stdout + result.stderr


@pytest.mark.slow
def test_doctor_names_missing_scopes_channels_it_cannot_post_in_and_unknown_approvers(
    sandbox: Sandbox, sandbox_url: str, slack: tuple[FakeSlack, str], tmp_path: Path
) -> None:
    fake, url = slack
    fake.scopes = ["commands", "chat:write", "channels:read", "groups:read", "channels:history", "groups:history",
                   "im:history", "im:write"]
    fake.channels["C0PRIVATE"] = {"is_private": True, "is_member": False}
    fake.channels["C0PUBLIC"] = {"is_member": False}
    fake.users["U0GONE"] = {"deleted": True}
    env = {**doctor_env(sandbox, sandbox_url, url, f"sqlite:///{tmp_path}/bot.db"), "APPROVERS": "U0GONE,S0EMPTY",
           "APPROVAL_CHANNEL": "C0PRIVATE", "NOTIFY_CHANNEL": "C0PUBLIC"}
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = lines_by_check(result.stdout)
    assert "the app lacks chat:write.public, usergroups:read, users:read" in lines["scopes"]
    channels = lines["channels"]
    assert channels.startswith("FAIL") and "APPROVAL_CHANNEL C0PRIVATE: not found, or a private channel" in channels
    # Without chat:write.public a public channel needs an invitation too.
    assert "NOTIFY_CHANNEL C0PUBLIC: the bot is not a member: invite the bot" in channels
    approvers = lines["approvers"]
    assert approvers.startswith("FAIL") and "U0GONE is deactivated" in approvers
    assert "user group S0EMPTY has no members" in approvers
    assert not fake.of("chat.postMessage")


@pytest.mark.slow
def test_doctor_in_a_new_folder_agrees_with_serve_and_leaves_nothing_behind(
    sandbox: Sandbox, sandbox_url: str, slack_url: str, tmp_path: Path
) -> None:
    env = doctor_env(sandbox, sandbox_url, slack_url, "sqlite:///appserver-bot.db")
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""  # no Alembic or httpx lines: one line per check and nothing else
    line = lines_by_check(result.stdout)["database"]
    assert line.startswith("ok") and "created and migrated on first start" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_doctor_says_an_empty_sqlite_file_is_migrated_on_first_start(
    sandbox: Sandbox, sandbox_url: str, slack_url: str, tmp_path: Path
) -> None:
    (tmp_path / "bot.db").touch()
    result = run_cli("doctor", env=doctor_env(sandbox, sandbox_url, slack_url, "sqlite:///bot.db"), cwd=tmp_path)
    line = lines_by_check(result.stdout)["database"]
    assert result.returncode == 0 and line.startswith("ok") and f"empty; migrated to {head_revision()}" in line


def test_sqlite_is_migrated_on_first_start(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/fresh.db")
    assert not schema_status(engine).up_to_date
    assert ensure_schema(engine).up_to_date
    assert (tmp_path / "fresh.db").exists()


@pytest.mark.slow
def test_a_postgres_database_that_is_behind_is_refused(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    with pytest.raises(SchemaBehind, match="run `appserver-bot migrate`"):
        ensure_schema(engine)
    result = run_cli("migrate", env={"DATABASE_URL": postgres_url}, cwd=tmp_path)
    assert result.returncode == 0 and f"from empty to {head_revision()}" in result.stdout
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


@pytest.mark.slow
def test_doctor_accepts_a_plain_postgresql_url(sandbox: Sandbox, sandbox_url: str, slack_url: str,
                                               postgres_url: str, tmp_path: Path) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    env = doctor_env(sandbox, sandbox_url, slack_url, plain)
    assert run_cli("migrate", env=env, cwd=tmp_path).returncode == 0
    result = run_cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_by_check(result.stdout)["database"].startswith("ok    database")


@pytest.mark.slow
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


def test_a_database_migrated_by_a_newer_bot_is_refused_not_migrated(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/newer.db")
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaBehind, match="DATABASE_URL is at schema 9999, newer than this version of the bot knows"):
        ensure_schema(engine)
    with pytest.raises(SchemaBehind, match="newer version"):
        migrate(engine)
    engine.dispose()
