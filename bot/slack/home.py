"""App Home: my recent requests, and for approvers what waits for them, with the buttons."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

from bot.lifecycle import State
from bot.slack.messages import home_view

if TYPE_CHECKING:
    from bot.slack.context import BotContext


async def publish_home(ctx: BotContext, user: str) -> None:
    mine = await asyncio.to_thread(ctx.store.for_requester, user, 15)
    approver = await ctx.workflow.is_approver(user)
    pending = []
    if approver:
        pending = [r for r in await asyncio.to_thread(ctx.store.in_states, [State.PENDING_APPROVAL], 50)
                   if r.requester_id != user]
    view = home_view(mine, pending, approver=approver, sandbox=ctx.sandbox)
    await ctx.writer.publish_home(user, view.to_dict())


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await publish_home(ctx, str(event["user"]))
