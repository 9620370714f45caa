"""Registered last: anything no other listener takes is acknowledged, never answered with an error.

Old buttons (from an earlier version of a message), events the app does not act on and closed
modals would otherwise show people a failure in Slack.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack.early_ack import answered_at_ack, in_background
from bot.slack.payloads import as_dict
from bot.slack.text import code

log = logging.getLogger(__name__)
ANY = re.compile(".*")


def register(app: AsyncApp) -> None:
    @app.command(ANY)
    @answered_at_ack
    async def other_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack(text=f"This app answers `/appserver`, not {code(command.get('command'))}.")

    @app.action(ANY)
    @answered_at_ack
    async def other_action(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        log.info("acknowledged an action no listener handles: %s",
                 [a.get("action_id") for a in body.get("actions") or []])

    @app.options(ANY)
    @answered_at_ack
    async def other_options(ack: AsyncAck) -> None:
        await ack(options=[])

    @app.view(ANY)
    @answered_at_ack
    async def other_view(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        log.info("acknowledged a view no listener handles: %s", as_dict(body.get("view")).get("callback_id"))

    @app.view_closed(ANY)
    @answered_at_ack
    async def view_closed(ack: AsyncAck) -> None:
        await ack()

    @app.event(ANY)
    @in_background
    async def other_event(event: dict[str, Any]) -> None:
        log.debug("ignoring event %s", event.get("type"))

    @app.shortcut(ANY)
    @answered_at_ack
    async def other_shortcut(ack: AsyncAck) -> None:
        await ack()
