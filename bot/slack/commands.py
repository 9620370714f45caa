"""`/appserver`: create, status, list, cancel, help. Every branch acks first; slow work comes after."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud.errors import CloudError, describe
from bot.digits import ascii_int
from bot.lifecycle import LABELS, State
from bot.slack import forms, guard
from bot.slack.context import BotContext
from bot.slack.early_ack import answered_at_ack
from bot.slack.messages import (
    group_words,
    partial_text,
    progress_text,
    servers_text,
    spec_of,
    status_line,
    what_is_ordered,
    when,
)
from bot.slack.text import code, escape_mrkdwn, is_request_id, mention
from bot.store.models import AppRequest

log = logging.getLogger(__name__)

USAGE = """*`/appserver`* orders Huawei Cloud Workspace app servers.
• `/appserver create [key=value …]`: open the request form; values prefill it, e.g. `count=3 months=6 group=office-apps`
• `/appserver status AS-7K3F9QX2`: where a request stands
• `/appserver list`: your requests (and, for approvers, what waits for you)
• `/appserver cancel AS-7K3F9QX2`: cancel your request before it is ordered
• `/appserver help`: this message"""


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.command("/appserver")
    @answered_at_ack
    async def appserver(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        text = str(command.get("text") or "").strip()
        sub, _, rest = text.partition(" ")
        sub = sub.lower()
        user = str(command.get("user_id", ""))
        if sub == "create":
            await _create(ack, command, client, respond, ctx, rest)
        elif sub in ("", "help"):
            await ack(text=USAGE)
        elif sub == "status":
            await ack()
            await respond(response_type="ephemeral", text=await _status(ctx, rest.strip().upper(), user))
        elif sub == "list":
            await ack()
            await respond(response_type="ephemeral", text=await _list(ctx, user))
        elif sub == "cancel":
            await ack()
            request_id = rest.strip().upper()
            if not is_request_id(request_id):
                await respond(response_type="ephemeral", text=f"{code(request_id[:40])} is not a request id; "
                              "they look like `AS-7K3F9QX2`.")
                return
            decision = await ctx.workflow.cancel(request_id, user)
            await respond(response_type="ephemeral", text=decision.sentence)
            if decision.ok:
                ctx.wake_workers()
        else:
            await ack(text=f"I don't know {code(sub)}.\n{USAGE}")


async def _create(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond,
                  ctx: BotContext, rest: str) -> None:
    try:
        prefill = forms.parse_prefill(rest)
    except forms.PrefillError as error:
        await ack(text=str(error))
        return
    user = str(command.get("user_id", ""))
    count = ascii_int(prefill.count, max_digits=forms.PREFILL_DIGITS["count"]) or 1  # digits: `parse_prefill` checked
    refusal = await guard.requester_refusal(ctx, user) or await guard.size_refusal(ctx, user, count)
    if refusal is not None:  # no form: say which rule refuses, and its number
        await ack(text=refusal.sentence)
        return
    await ack()

    async def tell(text: str) -> None:
        await respond(response_type="ephemeral", text=text)

    await open_create_form(ctx, client, command.get("trigger_id"), prefill, command.get("channel_id"), tell)


def form_values_of(spec: dict[str, Any]) -> forms.FormValues:
    """The create form filled as a stored request was (to order the same again); a new reason is asked for."""
    extend = spec.get("create_server_extend_param") or {}
    volume = spec.get("root_volume") or {}
    hints = spec.get("scheduler_hints") or {}
    prepaid = extend.get("charging_mode") == forms.PREPAID

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return forms.FormValues(
        group_id=spec.get("server_group_id"), availability_zone=spec.get("availability_zone"),
        product_id=spec.get("product_id"), disk_type=volume.get("type"), disk_size=text(volume.get("size")),
        count=text(spec.get("subscription_num")), billing=forms.PREPAID if prepaid else forms.POSTPAID,
        period_unit=text(extend.get("period_type")) if prepaid else None,
        period_num=text(extend.get("period_num")) if prepaid else None,
        auto_renew=bool(extend.get("is_auto_renew")), auto_pay=bool(extend.get("is_auto_pay")),
        update_agent=bool(spec.get("update_access_agent")), dedicated_host=hints.get("dedicated_host_id"))


async def open_create_form(ctx: BotContext, client: AsyncWebClient, trigger_id: object, prefill: forms.FormValues,
                           channel_id: object, tell: Callable[[str], Awaitable[None]], *, keep: bool = False) -> None:
    """Open the create form (a command, App Home's New request, Order again): at once when the catalogue is
    cached, else a loading view within the trigger's 3 s, then the form filled from the cloud. `keep`: the
    prefill's own product and disk win over the group's (ordering the same again)."""
    context = forms.ModalContext(channel_id=channel_id if isinstance(channel_id, str) else None)
    cached = ctx.catalogue.fresh()
    # With the catalogue at hand and no group to look up, the form itself opens at once (one Slack call);
    # otherwise a loading view holds the trigger while the cloud answers.
    ready = ctx.catalogue.create_form(cached, prefill, context, sandbox=ctx.sandbox) \
        if cached is not None and not prefill.group_id else None
    try:
        opened = await client.views_open(trigger_id=str(trigger_id or ""), view=ready or forms.loading_view())
    except SlackApiError as error:
        code = error.response.get("error", "unknown")
        log.warning("views.open failed: %s", code)
        await tell(f"Slack took too long to open the form ({code}); please try again.")
        return
    if ready is not None:
        return
    view = opened.get("view") or {}
    view_id, view_hash = view.get("id"), view.get("hash")
    try:
        catalogue = await ctx.catalogue.get()
        if prefill.group_id:
            by_name = {g.name: g.id for g in catalogue.groups if g.name}
            prefill = prefill.model_copy(update={"group_id": by_name.get(prefill.group_id, prefill.group_id)})
            if catalogue.group(prefill.group_id):
                mine = prefill.model_dump(include={"product_id", "disk_type", "disk_size"}, exclude_none=True)
                prefill, context = await ctx.catalogue.prefill_from_group(prefill.group_id or "", prefill, context)
                if keep:
                    prefill = prefill.model_copy(update=mine)
            else:
                prefill = prefill.model_copy(update={"group_id": None})
        new_view = ctx.catalogue.create_form(catalogue, prefill, context, sandbox=ctx.sandbox)
    except CloudError as error:
        new_view = forms.message_view(f":warning: The cloud's catalogue could not be read. {describe(error)}").to_dict()
    try:
        await client.views_update(view_id=view_id, hash=view_hash, view=new_view)
    except SlackApiError as error:
        # hash_conflict: the user already moved on (closed the modal); nothing to repair.
        log.warning("views.update of the create form failed: %s", error.response.get("error"))


async def _can_see(ctx: BotContext, request: AppRequest, user: str) -> bool:
    return request.requester_id == user or await ctx.workflow.is_approver(user)


async def summary(ctx: BotContext, request: AppRequest) -> str:
    """One request in a few lines: group, count and billing, state, and once done its servers by name."""
    names = await ctx.names.of(request)
    lines = [f"*{request.id}*: {what_is_ordered(spec_of(request))} in {group_words(request, names)}, asked "
             f"{when(request.created_at)}", status_line(request)]
    if progress := progress_text(request):
        lines.append(progress)
    if servers := servers_text(request, names):
        lines.append(f"Servers: {servers}")
    return "\n".join(lines)


async def _status(ctx: BotContext, request_id: str, user: str) -> str:
    if not request_id:
        return "Which request? For example `/appserver status AS-7K3F9QX2`."
    if not is_request_id(request_id):
        return f"{code(request_id[:40])} is not a request id; they look like `AS-7K3F9QX2`."
    request = await asyncio.to_thread(ctx.store.get, request_id)
    if request is None or not await _can_see(ctx, request, user):
        return f"There is no request {request_id} that you can see."
    lines = [await summary(ctx, request)]
    refs = [f"{kind} {code(ref)}" for kind, ref in (("order", request.order_id), ("job", request.job_id)) if ref]
    if refs:
        lines.append("Cloud " + ", ".join(refs))
    if request.state == State.PARTLY_DONE:
        lines.append(partial_text(request))
    elif request.outcome_sentence and request.state != State.SUCCEEDED:
        lines.append(escape_mrkdwn(request.outcome_sentence))
    return "\n".join(lines)


async def _list(ctx: BotContext, user: str) -> str:
    mine = await asyncio.to_thread(ctx.store.for_requester, user, 10)
    lines = ["*Your recent requests*"] + [await summary(ctx, r) for r in mine] if mine else \
        ["You have no requests yet. Start one with `/appserver create`."]
    if await ctx.workflow.is_approver(user):
        waiting = [r for r in await asyncio.to_thread(
            ctx.store.in_states, [State.PENDING_APPROVAL, State.AWAITING_PAYMENT, State.NEEDS_ATTENTION], 50)
            if r.requester_id != user]
        lines.append("*Waiting for you*")
        lines += [f"• {r.id} from {mention(r.requester_id)}: {what_is_ordered(spec_of(r))}, {LABELS[State(r.state)]}"
                  for r in waiting] or ["Nothing waits for you."]
    return "\n".join(lines)[:3900]
