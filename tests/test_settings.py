"""Settings: the contract's names, `.env` support, and one plain sentence for a bad setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_mean_sandbox_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.sandbox_mode and settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.database_url == "sqlite:///appserver-bot.db"


def test_contract_names_and_comma_separated_approvers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVERS", "U012AB3CD, S0MANAGERS ,W99")
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK123")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK456")
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "0.25")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    settings = load_settings(_env_file=None)
    assert settings.approvers == ["U012AB3CD", "S0MANAGERS", "W99"]
    assert settings.poll_interval_seconds == 0.25 and settings.uses_aksk and not settings.sandbox_mode
    assert "SK456" not in repr(settings) and "xoxb-test" not in repr(settings)
    assert set(settings.secret_values()) == {"AK123", "SK456", "xoxb-test"}


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("APPROVAL_CHANNEL=C0APPROVALS\nPORT=8080\n")
    settings = load_settings()
    assert settings.approval_channel == "C0APPROVALS" and settings.port == 8080


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"PORT": "eighty"}, "Setting PORT is invalid"),
        ({"APPROVERS": "alice"}, "Setting APPROVERS is invalid: 'alice' is not a Slack user id"),
        ({"HUAWEICLOUD_SDK_AK": "AK"}, "HUAWEICLOUD_SDK_SK is missing"),
        ({"HUAWEICLOUD_IAM_USER": "bob"}, "must all be set"),
        ({"SLACK_API_URL": "slack.com/api"}, "Setting SLACK_API_URL is invalid: must be a URL"),
        ({"POLL_INTERVAL_SECONDS": "0"}, "Setting POLL_INTERVAL_SECONDS is invalid"),
    ],
)
def test_bad_settings_give_one_sentence(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], sentence: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    assert sentence in str(error.value)
    assert "\n" not in str(error.value)


def test_a_secret_is_never_echoed_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUAWEICLOUD_IAM_PASSWORD", "hunter2-secret")
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    assert "hunter2-secret" not in str(error.value)


@pytest.mark.slow
def test_the_program_stops_with_the_sentence_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "doctor"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PORT": "not-a-port"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("appserver-bot: Setting PORT is invalid")
    assert "Traceback" not in result.stderr


def test_the_env_example_names_only_real_settings_and_copied_as_is_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "APPROVERS"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parent.parent / ".env.example"
    names = {line.lstrip("# ").split("=", 1)[0] for line in example.read_text().splitlines()
             if "=" in line and line.lstrip("# ")[:1].isupper() and " " not in line.lstrip("# ").split("=", 1)[0]}
    assert {"SLACK_BOT_TOKEN", "APPROVERS", "APPROVAL_CHANNEL", "NOTIFY_CHANNEL", "DATABASE_URL"} <= names
    assert {name.lower() for name in names} <= set(Settings.model_fields)
    copied = Settings(_env_file=example)  # type: ignore[call-arg]
    assert copied.slack_bot_token is None and copied.slack_app_token is None and copied.approvers == []
