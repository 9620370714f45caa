"""Every mistake an operator can make in the settings, made through the real `appserver-bot` process:
one sentence naming the variable and what to do, a non-zero exit status, and no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.sandbox.server import free_port
from tests.conftest import postgres_base_url
from tests.fake_slack import FakeSlack
from tests.processes import run_bot

# What each command needs to get as far as the database.
TOKENS = {"SLACK_BOT_TOKEN": "xoxb-fake-token", "SLACK_SIGNING_SECRET": "not-a-real-secret",
          "SLACK_APP_TOKEN": "xapp-1-fake"}
STARTING = ("serve", "socket", "worker", "migrate")


def own_port() -> dict[str, str]:
    """A free PORT, so that `serve` and `worker` reach the database check whatever else listens on 3000."""
    return {"PORT": str(free_port())}


def assert_one_sentence(result: object, code: int, *words: str) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("appserver-bot: ") and lines[0].endswith("."), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def database_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line[6:].startswith("database"))


@pytest.mark.slow
@pytest.mark.parametrize(("url", "words"), [
    ("notaurl", ["not a database URL", "sqlite:///"]),
    ("mysql://bot:hunter2@db.example.com/bot", ["not supported", "SQLite or PostgreSQL"]),
    ("postgresql+asyncpg://bot@db.example.com/bot", ["use postgresql://"]),
], ids=["malformed", "unsupported-driver", "driver-not-shipped"])
def test_a_database_url_the_bot_cannot_use_is_refused_by_every_command(
    url: str, words: list[str], tmp_path: Path, fake_slack: tuple[FakeSlack, str]
) -> None:
    env = {**TOKENS, **own_port(), "DATABASE_URL": url, "SLACK_API_URL": fake_slack[1]}
    for command in (*STARTING, "doctor"):
        result = run_bot(command, env=env, cwd=tmp_path)
        line = assert_one_sentence(result, 2, "DATABASE_URL", *words)
        assert "hunter2" not in line and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def unusable_postgres(kind: str) -> tuple[str, list[str]]:
    base = postgres_base_url().replace("postgresql+psycopg://", "postgresql://", 1)
    if kind == "unreachable":
        return f"postgresql://postgres@127.0.0.1:{free_port()}/test", ["Cannot reach", "running"]
    if kind == "wrong user":
        return base.replace("postgres@", "nobody_here:secret-pw@", 1), ["refused the user 'nobody_here'", "password"]
    return base.rsplit("/", 1)[0] + "/no_such_database", ["'no_such_database'", "does not exist", "createdb"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["unreachable", "wrong user", "missing database"])
def test_a_postgres_the_bot_cannot_open_is_one_sentence(kind: str, tmp_path: Path,
                                                         fake_slack: tuple[FakeSlack, str]) -> None:
    url, words = unusable_postgres(kind)
    env = {**TOKENS, **own_port(), "DATABASE_URL": url, "SLACK_API_URL": fake_slack[1]}
    for command in STARTING:
        assert_one_sentence(run_bot(command, env=env, cwd=tmp_path), 3, "DATABASE_URL", *words)
    doctor = run_bot("doctor", env=env, cwd=tmp_path)
    assert doctor.returncode == 1 and doctor.stderr == ""
    line = database_line(doctor.stdout)
    assert line.startswith("FAIL") and "DATABASE_URL" in line and all(word in line for word in words)
    assert "secret-pw" not in doctor.stdout


@pytest.mark.slow
def test_a_postgres_not_migrated_is_refused_until_migrate(postgres_url: str, tmp_path: Path,
                                                          fake_slack: tuple[FakeSlack, str]) -> None:
    env = {**TOKENS, **own_port(), "DATABASE_URL": postgres_url, "SLACK_API_URL": fake_slack[1]}
    for command in ("serve", "socket", "worker"):
        assert_one_sentence(run_bot(command, env=env, cwd=tmp_path), 3, "DATABASE_URL", "empty",
                            "run `appserver-bot migrate`")
    doctor = run_bot("doctor", env=env, cwd=tmp_path)
    assert doctor.returncode == 1 and "appserver-bot migrate" in database_line(doctor.stdout)
    migrated = run_bot("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0 and "migrated the schema from empty to" in migrated.stdout
    assert migrated.stderr == ""  # no Alembic narration at INFO
    again = run_bot("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already up to date" in again.stdout


@pytest.mark.slow
def test_a_sqlite_file_in_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    env = {**TOKENS, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/bot.db"}
    assert_one_sentence(run_bot("migrate", env=env, cwd=tmp_path), 3, "DATABASE_URL", "folder", "missing")


@pytest.mark.slow
def test_the_traceback_is_there_only_at_debug(tmp_path: Path) -> None:
    env = {**TOKENS, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/bot.db", "LOG_LEVEL": "DEBUG"}
    result = run_bot("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 3 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("appserver-bot: DATABASE_URL names the SQLite file")


@pytest.mark.slow
@pytest.mark.parametrize(("command", "env", "words"), [
    ("serve", {"SLACK_BOT_TOKEN": ""}, ["SLACK_BOT_TOKEN is not set"]),
    ("serve", {"SLACK_SIGNING_SECRET": ""}, ["SLACK_SIGNING_SECRET is not set"]),
    ("socket", {"SLACK_APP_TOKEN": ""}, ["SLACK_APP_TOKEN is not set"]),
    ("worker", {"APPROVERS": "alice"}, ["APPROVERS", "'alice' is not a Slack user id"]),
    ("serve", {"PORT": "eighty"}, ["PORT"]),
    ("socket", {"LOG_LEVEL": "LOUD"}, ["LOG_LEVEL"]),
    ("worker", {"SLACK_API_URL": "slack.com/api"}, ["SLACK_API_URL", "http://"]),
    ("migrate", {"POLL_INTERVAL_SECONDS": "0"}, ["POLL_INTERVAL_SECONDS"]),
    ("doctor", {"HUAWEICLOUD_SDK_AK": "AKONLY"}, ["HUAWEICLOUD_SDK_SK is missing"]),
], ids=lambda value: value if isinstance(value, str) else None)
def test_every_other_setting_is_one_sentence_naming_it(command: str, env: dict[str, str], words: list[str],
                                                        tmp_path: Path) -> None:
    full = {**TOKENS, **own_port(), "DATABASE_URL": f"sqlite:///{tmp_path}/bot.db", **env}
    full = {name: value for name, value in full.items() if value}
    assert_one_sentence(run_bot(command, env=full, cwd=tmp_path), 2, *words)


@pytest.mark.slow
def test_a_busy_port_is_one_sentence_naming_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_bot("serve", "--host", "127.0.0.1", env={**TOKENS, "PORT": str(port)}, cwd=tmp_path)
    assert_one_sentence(result, 3, f"Cannot listen on 127.0.0.1:{port}", "PORT")
    assert list(tmp_path.iterdir()) == []  # refused before anything was created
