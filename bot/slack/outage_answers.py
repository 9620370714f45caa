"""What a person sees when the database is away while they use the bot: a sentence, never a failure Slack
shows as its own ("/appserver failed with the error …", a red banner on the form).

A slash command is answered in its ack (shown only to them); a form submission keeps the form open with the
sentence on its first field; a click is acknowledged and the sentence follows through the payload's
`response_url`, or as an ephemeral message (in App Home: a direct message). Used at the front door (the
replay memory could not be written, so nothing was done) and for a listener whose database call failed.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from slack_bolt.response import BoltResponse
from slack_sdk.models.blocks import MarkdownTextObject, PlainTextObject, SectionBlock
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.outage import OUTAGES, SENTENCE
from bot.slack.payloads import as_dict

log = logging.getLogger(__name__)

# The kinds of request a person makes, in the words the outage log uses (a fixed set: the log keys on them).
_KINDS = {"command": "a slash command", "block_actions": "a click", "view_submission": "a form submission",
          "block_suggestion": "a search in a menu", "view_closed": "a closed form"}
# Tasks telling people after the answer left: the loop holds tasks weakly.
_telling: set[asyncio.Task[None]] = set()


def kind_of(body: dict[str, Any]) -> str:
    """`command`, `block_actions`, `view_submission`, … or `other` (events, which Slack retries by itself)."""
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if isinstance(kind, str) and kind in _KINDS else "other"


def describe_kind(body: dict[str, Any]) -> str:
    return _KINDS.get(kind_of(body), "a Slack event")


@dataclass(frozen=True)
class Answer:
    """The HTTP answer (status and JSON body or none), and whether the sentence must follow it for a click."""

    status: int
    body: dict[str, Any] | None
    tell_after: bool = False


def answer_for(body: dict[str, Any]) -> Answer:
    kind = kind_of(body)
    if kind == "command":
        return Answer(200, {"response_type": "ephemeral", "text": SENTENCE})
    if kind == "view_submission":
        view = as_dict(body.get("view"))
        field = _first_input(view)
        if field is not None:
            return Answer(200, {"response_action": "errors", "errors": {field: SENTENCE}})
        return Answer(200, {"response_action": "update", "view": _message_view(view).to_dict()})
    if kind == "block_suggestion":
        return Answer(200, {"options": []})
    if kind in ("block_actions", "view_closed"):
        return Answer(200, None, tell_after=kind == "block_actions")
    # Events are not a person's request: an error makes Slack deliver them again later.
    return Answer(503, {"error": "the database is unavailable"})


def bolt_response(body: dict[str, Any], client: AsyncWebClient, error: BaseException) -> BoltResponse:
    """For a listener whose database call failed before it answered Slack."""
    OUTAGES.report(f"answering {describe_kind(body)}", error)
    answer = answer_for(body)
    if answer.tell_after:
        tell_soon(body, client)
    return BoltResponse(status=answer.status, body=answer.body or "")


def tell_soon(body: dict[str, Any], client: AsyncWebClient) -> None:
    """Tell the person the sentence after the answer has left (a click, or a request already answered)."""
    task = asyncio.get_running_loop().create_task(tell(body, client), name="outage sentence")
    _telling.add(task)
    task.add_done_callback(_telling.discard)


async def tell(body: dict[str, Any], client: AsyncWebClient) -> None:
    """The sentence, for the person who made the request, wherever Slack lets the bot say it."""
    user = _user_id(body)
    try:
        url = _response_url(body)
        if url is not None:
            await AsyncWebhookClient(url).send(text=SENTENCE, response_type="ephemeral", replace_original=False)
            return
        channel = as_dict(body.get("channel")).get("id") or body.get("channel_id")
        if isinstance(channel, str) and channel and user:
            await client.chat_postEphemeral(channel=channel, user=user, text=SENTENCE)
        elif user:  # App Home, a form: the app's messages with the person
            await client.chat_postMessage(channel=user, text=SENTENCE)
    except Exception as error:  # Slack too is unreachable: nothing more to do than say so once
        log.warning("could not tell %s that the database is away: %s", user or "the person", type(error).__name__)


def _response_url(body: dict[str, Any]) -> str | None:
    url = body.get("response_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return url
    for entry in body.get("response_urls") or []:
        candidate = as_dict(entry).get("response_url")
        if isinstance(candidate, str) and candidate.startswith(("https://", "http://")):
            return candidate
    return None


def _user_id(body: dict[str, Any]) -> str | None:
    user = body.get("user_id") or as_dict(body.get("user")).get("id")
    return user if isinstance(user, str) and user else None


def _first_input(view: dict[str, Any]) -> str | None:
    for block in view.get("blocks") or []:
        block = as_dict(block)
        if block.get("type") == "input" and isinstance(block.get("block_id"), str):
            return str(block["block_id"])
    return None


def _message_view(view: dict[str, Any]) -> View:
    title = as_dict(view.get("title")).get("text")
    return View(type="modal", title=PlainTextObject(text=title if isinstance(title, str) and title else "App Servers"),
                close=PlainTextObject(text="Close"), blocks=[SectionBlock(text=MarkdownTextObject(text=SENTENCE))])


# The request a listener works for, for `told_after_answer` (a Bolt middleware sets it; the listener's task
# inherits it).
CURRENT: ContextVar[tuple[dict[str, Any], AsyncWebClient] | None] = ContextVar("slack_request", default=None)


def told_after_answer(error: BaseException) -> bool:
    """A listener's database call failed after it answered Slack: tell the person, say it once a minute. False
    when there is no request to answer (the caller logs the failure as any other)."""
    current = CURRENT.get()
    if current is None:
        return False
    body, client = current
    OUTAGES.report(f"finishing {describe_kind(body)} after its answer", error)
    if kind_of(body) in ("command", "block_actions", "view_submission"):
        tell_soon(body, client)
    return True
