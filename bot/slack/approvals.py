"""Approve / Reject (with a reason), Pay, "this one is ours" / "none of these" and Send again: buttons on
cards and App Home. A success is told by the news it queues (the card and the thread follow); the clicker
hears directly only what concerns them alone (a refusal, a payment that did not go through)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.lifecycle import State
from bot.slack import commands, forms, guard, messages
from bot.slack.binding import Shown, ShownChoice, mismatch
from bot.slack.context import BotContext
from bot.slack.early_ack import answered_at_ack
from bot.slack.home import publish_home
from bot.slack.ids import Action, Block, Callback
from bot.slack.payloads import as_dict
from bot.slack.text import is_user_id
from bot.store.models import AppRequest
from bot.workflow import Decision, Outcome

log = logging.getLogger(__name__)


def _clicked(body: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(user, request id, channel, thread ts) of a button click; missing parts are empty."""
    user = as_dict(body.get("user")).get("id")
    actions = body.get("actions")
    action = as_dict(actions[0]) if isinstance(actions, list) and actions else {}
    value = action.get("value")
    channel = as_dict(body.get("channel")).get("id") or as_dict(body.get("container")).get("channel_id")
    message = as_dict(body.get("message"))
    thread = message.get("thread_ts") or message.get("ts")
    return (str(user) if is_user_id(user) else "", value if isinstance(value, str) else "",
            channel if isinstance(channel, str) else None,
            thread if isinstance(thread, str) else None)


def register(app: AsyncApp, ctx: BotContext) -> None:
    async def tell_clicker(body: dict[str, Any], decision: Decision) -> None:
        user, _, channel, thread = _clicked(body)
        if channel:
            await ctx.writer.ephemeral(channel, user, decision.sentence, thread_ts=thread)
        else:  # a click in App Home has no channel: answer in the app's DM
            await ctx.writer.post(user, decision.sentence)

    async def after_click(body: dict[str, Any]) -> None:
        if as_dict(body.get("view")).get("type") == "home":
            await publish_home(ctx, _clicked(body)[0])

    async def as_shown(body: dict[str, Any], action: str,
                       amount_of: Callable[[AppRequest], str | None] | None = None
                       ) -> tuple[str, AppRequest | None] | None:
        """The request id, and the request as just read, when the click is for the request as its card showed
        it; otherwise the clicker is told why, the refusal is audited, and None."""
        user, value, _, _ = _clicked(body)
        shown = Shown.parse(value)
        if shown is None:
            await tell_clicker(body, Decision(Outcome.NOT_FOUND, "This button does not name a request."))
            return None
        row = await ctx.workflow.get(shown.request_id)
        problem = mismatch(shown, row, amount_of(row) if amount_of else None) if row is not None else None
        if row is None or problem is None:
            return shown.request_id, row  # an unknown id is the workflow's to answer
        await ctx.workflow.audit(row.id, user, action, allowed=False, detail=f"{Outcome.NOT_AS_SHOWN.value}: {problem}")
        await tell_clicker(body, Decision(Outcome.NOT_AS_SHOWN, problem, row))
        return None

    @app.action(Action.APPROVE.value)
    @answered_at_ack
    async def approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user = _clicked(body)[0]
        shown = await as_shown(body, "approve")
        if shown is None:
            return
        request_id, row = shown
        decision = await ctx.workflow.approve(request_id, user, known=row)
        if decision.ok:
            ctx.wake_workers()  # the order goes out, and the card and thread say so
        else:
            await tell_clicker(body, decision)
        await after_click(body)

    @app.action(Action.REJECT.value)
    @answered_at_ack
    async def reject_clicked(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user, request_id, channel, thread = _clicked(body)
        # Refuse before asking for a reason, so nobody types one in vain (the refusal is audited).
        checked = await ctx.workflow.check_decider(request_id, user, "reject")
        if not isinstance(checked, Decision):  # decided already: who decided, and no form for a reason
            checked = await ctx.workflow.refuse_if_decided(checked, user, "reject") or checked
        if isinstance(checked, Decision):
            await tell_clicker(body, checked)
            await after_click(body)
            return
        card = {"channel": channel or "", "thread": thread or ""}
        try:
            await client.views_open(trigger_id=body.get("trigger_id"), view=forms.reject_view(request_id, card))
        except SlackApiError as error:
            log.warning("views.open for a rejection failed: %s", error.response.get("error"))
            await tell_clicker(body, Decision(Outcome.WRONG_STATE, "Slack took too long to open the form; click "
                                              "Reject again."))

    @app.view(Callback.REJECT.value)
    @answered_at_ack
    async def reject_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = forms.reason_from(as_dict(view.get("state")).get("values"))
        if not reason:
            await ack(response_action="errors", errors={Block.REJECT_REASON.value: "Please say why it is rejected."})
            return
        await ack()
        user = str(as_dict(body.get("user")).get("id", ""))
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        decision = await ctx.workflow.reject(str(meta.get("request_id", "")), user, reason)
        if decision.ok:
            ctx.wake_workers()
        elif meta.get("channel"):
            await ctx.writer.ephemeral(meta["channel"], user, decision.sentence, thread_ts=meta.get("thread") or None)
        else:
            await ctx.writer.post(user, decision.sentence)

    async def done_or_tell(body: dict[str, Any], decision: Decision) -> None:
        """A success was queued as news (the card and the thread say it); anything else goes to the clicker."""
        if decision.ok:
            ctx.wake_workers()
        else:
            await tell_clicker(body, decision)
        await after_click(body)

    @app.action(Action.PAY.value)
    @answered_at_ack
    async def pay(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user = _clicked(body)[0]
        # A Pay button carries the amount its card showed: a click is taken only for the amount the order has now.
        shown = await as_shown(body, "pay_order", amount_of=messages.payable_amount)
        if shown is None:
            return
        await done_or_tell(body, await ctx.workflow.pay_order(shown[0], user))

    @app.action(Action.RETRY.value)
    @answered_at_ack
    async def retry(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user, request_id, _, _ = _clicked(body)
        decision = await ctx.workflow.retry_after_attention(request_id, user)
        if decision.outcome is Outcome.TOO_EARLY and decision.request is not None:  # the time in the reader's zone
            decision = Decision(decision.outcome, messages.resend_refusal(decision.request) or decision.sentence,
                                decision.request)
        if decision.ok and decision.request and decision.request.channel_id and decision.request.thread_ts:
            await ctx.writer.post(decision.request.channel_id, f":repeat: {decision.sentence}",
                                  thread_ts=decision.request.thread_ts)
        await done_or_tell(body, decision)

    @app.action(Action.CHOOSE_CANDIDATE.value)
    @answered_at_ack
    async def choose(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user, value, _, _ = _clicked(body)
        shown = ShownChoice.parse(value)
        if shown.candidate_id is None:
            await tell_clicker(body, Decision(Outcome.NOT_FOUND, "This button does not name a candidate."))
            return
        await done_or_tell(body, await ctx.workflow.choose_candidate(shown.request_id, user, shown.candidate_id,
                                                                     shown.key))

    @app.action(Action.NO_CANDIDATE.value)
    @answered_at_ack
    async def none_of_these(ack: AsyncAck, body: dict[str, Any]) -> None:
        """Rules out the candidates the clicker's card listed, and only those (a click on a list that changed
        since is refused)."""
        await ack()
        user, value, _, _ = _clicked(body)
        shown = ShownChoice.parse(value)
        await done_or_tell(body, await ctx.workflow.choose_candidate(shown.request_id, user, None, shown.key))

    @app.action(Action.CANCEL.value)
    @answered_at_ack
    async def cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        """The requester withdraws their request (the workflow refuses anyone else, and a request already
        ordered); the answer goes to the clicker alone, the thread head and the card show it."""
        await ack()
        user, request_id, _, _ = _clicked(body)
        decision = await ctx.workflow.cancel(request_id, user)
        await tell_clicker(body, decision)
        if decision.ok:
            ctx.wake_workers()
        await after_click(body)

    @app.action(Action.ORDER_AGAIN.value)
    @answered_at_ack
    async def order_again(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The create form, filled as the earlier request was (group, product, count, billing, disk, period)."""
        await ack()
        user, request_id, _, _ = _clicked(body)
        row = await asyncio.to_thread(ctx.store.get, request_id)
        if row is None or not (row.requester_id == user or await ctx.workflow.is_approver(user)):
            await tell_clicker(body, Decision(Outcome.NOT_FOUND, f"There is no request {request_id} that you can see."))
            return
        prefill = commands.form_values_of(messages.spec_of(row))
        if row.state == State.PARTLY_DONE:  # the servers that were not created, not the whole number again
            prefill = prefill.model_copy(update={"count": str(messages.missing_servers(row))})
        refusal = await guard.requester_refusal(ctx, user) or \
            await guard.size_refusal(ctx, user, int(prefill.count or row.subscription_num))
        if refusal is not None:
            await tell_clicker(body, Decision(Outcome.NOT_APPROVER, refusal.sentence))
            return

        async def tell(text: str) -> None:
            await tell_clicker(body, Decision(Outcome.WRONG_STATE, text))

        await commands.open_create_form(ctx, client, body.get("trigger_id"), prefill, row.channel_id, tell, keep=True)
