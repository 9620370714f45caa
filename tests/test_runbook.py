"""RUNBOOK.md names only what the bot serves: every metric in its text and alert rules is on a real /metrics."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.harness import Bot

RUNBOOK = Path(__file__).resolve().parent.parent / "RUNBOOK.md"


def served_names(exposition: str) -> set[str]:
    """Every family and sample name on /metrics (a counter's samples end in _total)."""
    names = set(re.findall(r"^# (?:HELP|TYPE) (\w+)", exposition, re.MULTILINE))
    names |= set(re.findall(r"^(\w+)[{ ]", exposition, re.MULTILINE))
    return names


def test_the_runbook_names_only_metrics_the_bot_serves_and_its_rules_parse(bot: Bot) -> None:
    text = RUNBOOK.read_text()
    served = served_names(bot.http.get(bot.url + "/metrics").text)
    named = set(re.findall(r"\bappserver_\w+", text))
    assert named and named <= served, sorted(named - served)
    rules_yaml = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(rules_yaml)["groups"][0]["rules"]
    alerts = {rule["alert"] for rule in rules}
    mentioned = set(re.findall(r"`(Appserver\w+)`", text))
    assert mentioned <= alerts, sorted(mentioned - alerts)  # every alert the text explains has a rule
    for rule in rules:  # each says where to read what to do
        assert rule["expr"] and re.search(r"RUNBOOK\.md|doctor", rule["annotations"]["summary"]), rule
