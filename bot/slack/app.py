"""The Bolt AsyncApp: listeners wired, Events API retries deduplicated, errors logged (never a crash)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.outage import is_database_outage
from bot.slack import approvals, commands, fallbacks, home, modal, outage_answers
from bot.slack.context import BotContext

log = logging.getLogger(__name__)
SEEN_EVENTS = 10_000


class EventDeduplicator:
    """Slack resends an event it thinks timed out; each event_id is acted on once per process."""

    def __init__(self, capacity: int = SEEN_EVENTS) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True

    async def middleware(self, body: dict[str, Any], next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not self.first_time(str(event_id)):
            log.info("dropped a repeated delivery of event %s", event_id)
            return BoltResponse(status=200, body="")
        return await next()


async def _remember_the_request(body: dict[str, Any], client: AsyncWebClient,
                                next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse | None:
    """The request a listener works for, so a database outage met after the answer is told to its person."""
    outage_answers.CURRENT.set((body, client))
    return await next()


def build_app(ctx: BotContext, client: AsyncWebClient, *, signing_secret: str) -> AsyncApp:
    # The HTTP front door (bot/server.py) verifies every signature on the raw bytes before Bolt sees the
    # request, and Socket Mode needs none; Bolt's own check would only log a refused body.
    app = AsyncApp(client=client, signing_secret=signing_secret, process_before_response=True,
                   ignoring_self_events_enabled=True, request_verification_enabled=False)
    app.use(EventDeduplicator().middleware)
    app.use(_remember_the_request)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], response: BoltResponse | None,
                       client: AsyncWebClient) -> BoltResponse | None:
        if is_database_outage(error):  # the person gets a sentence, the log one line a minute
            return outage_answers.bolt_response(body, client, error)
        kind = body.get("type") or body.get("command")
        if response is not None and response.status == 500:
            # Raised while Bolt matched listeners: the payload, not our code, is at fault. One line, no traceback.
            log.warning("could not route a %s payload: %s: %s", kind, type(error).__name__, error)
            return None
        log.error("listener failed for a %s payload: %s", kind, error, exc_info=error)
        return None

    commands.register(app, ctx)
    modal.register(app, ctx)
    approvals.register(app, ctx)
    home.register(app, ctx)
    fallbacks.register(app)
    return app
