"""The Slack app manifests pass Slack's own JSON Schema and match what the code listens for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.slack.access import BOT_SCOPES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = Path(__file__).parent / "fixtures" / "slack-manifest-schema" / "manifest.schema.1.0.0.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text())
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_for_slack(path: Path) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(load(path)))
    assert errors == [], [e.message for e in errors]


def test_the_schema_does_catch_a_broken_manifest() -> None:
    broken = load(MANIFESTS[0])
    broken["features"]["slash_commands"][0]["command"] = "appserver"  # must start with /
    broken["settings"].pop("interactivity")["is_enabled"] = True
    broken["settings"]["interactivity"] = {"request_url": "https://x"}  # is_enabled missing
    assert len(list(jsonschema.Draft7Validator(SCHEMA).iter_errors(broken))) >= 2


def test_both_modes_and_least_privilege() -> None:
    http, socket = load(ROOT / "manifests" / "http-mode.yaml"), load(ROOT / "manifests" / "socket-mode.yaml")
    assert http["settings"]["socket_mode_enabled"] is False and socket["settings"]["socket_mode_enabled"] is True
    assert "url" not in json.dumps(socket["settings"])
    assert "/slack/events" in http["settings"]["interactivity"]["request_url"]
    for manifest in (http, socket):
        assert manifest["features"]["slash_commands"][0]["command"] == "/appserver"
        # Exactly the scopes the bot checks for at start and in `doctor`, each with its reason.
        assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
        assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
        assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_procfile_runs_the_web_and_worker_processes() -> None:
    lines = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line)
    assert lines == {"web": "appserver-bot serve --no-tracker", "worker": "appserver-bot worker"}
