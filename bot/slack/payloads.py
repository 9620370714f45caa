"""A look at a signed payload before Bolt: parsed exactly as Bolt parses it, and of the shape Bolt's
routing and our listeners index without checking. Anything else is not Slack's and never reaches them."""

from __future__ import annotations

from typing import Any

from slack_bolt.request.internals import parse_body

# Slack's payloads nest about ten levels (rich text in a message in an event); far more is not Slack.
MAX_DEPTH = 40

# Keys whose values Bolt or the listeners use as they are, in the objects named in _TYPED_SCOPES.
_STRINGS = frozenset({
    "type", "subtype", "callback_id", "action_id", "block_id", "command", "trigger_id", "response_url",
    "team_id", "user_id", "channel_id", "enterprise_id", "user_team", "thread_ts", "event_id", "api_app_id",
    "tab", "channel_type", "bot_id", "function_execution_id", "bot_access_token", "id", "private_metadata",
    "hash", "view_id", "message_ts", "ts", "challenge", "external_id", "app_id", "token", "root_view_id",
})
_OBJECTS = frozenset({
    "event", "view", "message", "previous_message", "container", "item", "assistant_thread", "function_data",
    "workflow_step", "state", "values", "selected_option",
})
_LISTS_OF_OBJECTS = frozenset({"actions", "authorizations", "response_urls", "selected_options"})
_STRINGS_OR_OBJECTS = frozenset({"user", "team", "channel", "enterprise"})  # an id in events, an object elsewhere
_CALLBACK_TYPES = frozenset({"interactive_message", "dialog_submission", "dialog_cancellation", "dialog_suggestion",
                             "shortcut", "message_action", "workflow_step_edit"})


class Unparseable(ValueError):
    """The body cannot be read as a Slack payload at all (not UTF-8, not JSON, not an object, too deep)."""


def as_dict(value: Any) -> dict[str, Any]:
    """A payload part that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


def parse(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The payload Bolt will see, or `Unparseable` with the reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Unparseable("the body is not UTF-8") from None
    try:
        payload = parse_body(text, content_type.split(";")[0].strip() if content_type else None)
    except (ValueError, RecursionError):  # RecursionError: JSON nested beyond Python's stack
        raise Unparseable("the body is not JSON or a form") from None
    if not isinstance(payload, dict):
        raise Unparseable("the payload is not a JSON object")
    if _depth(payload) > MAX_DEPTH:
        raise Unparseable(f"the payload nests deeper than {MAX_DEPTH} levels")
    return payload


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


# The objects Bolt reads keys from (routing, its context, its matchers) and the listeners rely on:
# their own keys are typed; deeper data (blocks, attachments, state values) is read defensively.
_TYPED_SCOPES = frozenset({
    "", "event", "event.message", "event.previous_message", "event.item", "event.assistant_thread", "view",
    "view.state", "actions[]", "authorizations[]", "response_urls[]", "user", "team", "channel", "enterprise",
    "container", "message", "previous_message", "item", "assistant_thread", "function_data", "workflow_step",
})


def shape_problem(payload: dict[str, Any]) -> str | None:
    """Where the payload departs from Slack's shape (a path and what it should be), or None."""
    problem = _required(payload)
    if problem:
        return problem
    stack: list[tuple[dict[str, Any], str]] = [(payload, "")]
    while stack:
        node, scope = stack.pop()
        for key, value in node.items():
            if value is None:
                continue
            problem = _typed(key, value)
            if problem:
                return f"{scope + '.' if scope else ''}{key} {problem}"
            inner = f"{scope}.{key}" if scope else key
            if isinstance(value, dict) and inner in _TYPED_SCOPES:
                stack.append((value, inner))
            elif isinstance(value, list) and f"{inner}[]" in _TYPED_SCOPES:
                stack.extend((item, f"{inner}[]") for item in value if isinstance(item, dict))
    return None


def _typed(key: str, value: Any) -> str | None:
    if key in _STRINGS and not isinstance(value, str):
        return "is not a string"
    if key in _OBJECTS and not isinstance(value, dict):
        return "is not an object"
    if key in _LISTS_OF_OBJECTS and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
        return "is not a list of objects"
    if key in _STRINGS_OR_OBJECTS and not isinstance(value, str | dict):
        return "is not an id or an object"
    return None


def _required(payload: dict[str, Any]) -> str | None:
    """What Bolt indexes without looking, for the payload's kind."""
    kind = payload.get("type")
    if kind is not None and not isinstance(kind, str):
        return "type is not a string"
    if kind == "event_callback" or "event" in payload:
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event has no type"
    if kind in ("block_actions", "interactive_message"):
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            return "actions is not a list of objects"
        if kind == "block_actions" and not all(isinstance(a.get("action_id"), str) for a in actions):
            return "actions[].action_id is missing"
    if kind in ("view_submission", "view_closed"):
        view = payload.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str) \
                or not isinstance(view.get("type"), str):
            return "view has no callback_id or type"
    if "response_urls" in payload and "response_url" not in payload:  # Bolt takes the first one's url
        urls = payload["response_urls"]
        if not isinstance(urls, list) or not all(isinstance(u, dict) for u in urls):
            return "response_urls is not a list of objects"
    if kind == "block_suggestion" and not isinstance(payload.get("action_id"), str):
        return "action_id is missing"
    if kind in _CALLBACK_TYPES and not isinstance(payload.get("callback_id"), str):
        return "callback_id is missing"
    if kind == "workflow_step_edit" and not isinstance(payload.get("workflow_step"), dict):
        return "workflow_step is missing"
    if "command" in payload and not isinstance(payload["command"], str):
        return "command is not a string"
    return None
