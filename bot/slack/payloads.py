"""A look at an interactive payload before Bolt: the parts Bolt indexes without checking must be there."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs


def as_dict(value: Any) -> dict[str, Any]:
    """A payload part that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def interactive_payload(body: bytes) -> dict[str, Any] | None:
    """The JSON of a form-encoded `payload=` body; None for commands, events and anything else."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    raw = fields.get("payload")
    if not raw:
        return None
    try:
        payload = json.loads(raw[0])
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def well_formed(body: dict[str, Any]) -> bool:
    """Slack always sends these; a payload without them is not Slack's and is dropped, not crashed on."""
    kind = body.get("type")
    if not isinstance(kind, str) or not isinstance(body.get("user", {}), dict):
        return False
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        return isinstance(view, dict) and isinstance(view.get("type"), str)
    if kind == "block_actions":
        actions = body.get("actions")
        return isinstance(actions, list) and bool(actions) and all(isinstance(a, dict) for a in actions)
    if kind == "block_suggestion":
        return isinstance(body.get("action_id"), str)
    return True
