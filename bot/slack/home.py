"""App Home: my recent requests, and for approvers what waits for them, with the buttons."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.lifecycle import State
from bot.slack import commands, forms, guard
from bot.slack.early_ack import answered_at_ack, in_background
from bot.slack.ids import Action
from bot.slack.messages import home_view
from bot.slack.payloads import as_dict
from bot.store.models import AppRequest

if TYPE_CHECKING:
    from bot.slack.context import BotContext


async def publish_home(ctx: BotContext, user: str) -> None:
    mine = await asyncio.to_thread(ctx.store.for_requester, user, 15)
    approver = await ctx.workflow.is_approver(user)
    pending: list[AppRequest] = []
    to_pay: list[AppRequest] = []
    attention: list[AppRequest] = []
    if approver:
        # What the approver can act on: not their own requests (they can neither decide nor pay those).
        waiting = [r for r in await asyncio.to_thread(
            ctx.store.in_states, [State.PENDING_APPROVAL, State.AWAITING_PAYMENT, State.NEEDS_ATTENTION], 100)
            if r.requester_id != user]
        pending = [r for r in waiting if r.state == State.PENDING_APPROVAL]
        to_pay = [r for r in waiting if r.state == State.AWAITING_PAYMENT and r.order_id]
        attention = [r for r in waiting if r.state == State.NEEDS_ATTENTION]
    shown = {r.id: r for r in [*mine, *pending[:10], *to_pay[:10]]}.values()
    names = dict(zip([r.id for r in shown], await asyncio.gather(*(ctx.names.of(r) for r in shown)), strict=True))
    view = home_view(mine, pending, approver=approver, sandbox=ctx.sandbox, to_pay=to_pay, attention=attention,
                     names=names)
    await ctx.writer.publish_home(user, view.to_dict())


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    @in_background
    async def home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await publish_home(ctx, str(event["user"]))

    @app.action(Action.NEW_REQUEST.value)
    @answered_at_ack
    async def new_request(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """App Home's New request: the create form, as `/appserver create` opens it."""
        await ack()
        user = str(as_dict(body.get("user")).get("id", ""))
        refusal = await guard.requester_refusal(ctx, user)
        if refusal is not None:
            await ctx.writer.post(user, refusal.sentence)
            return

        async def tell(text: str) -> None:
            await ctx.writer.post(user, text)

        await commands.open_create_form(ctx, client, body.get("trigger_id"), forms.FormValues(), None, tell)
