"""The create modal's interactions: choosing a group, switching billing, group search, and submitting."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud.errors import CloudError, describe
from bot.policy import Refusal
from bot.progress import Progress
from bot.slack import forms, guard
from bot.slack.context import BotContext
from bot.slack.early_ack import answered_at_ack
from bot.slack.ids import Action, Block, Callback
from bot.slack.payloads import as_dict
from bot.slack.text import is_user_id
from bot.spec import CreateAppServersRequest, SpecError, parse_spec
from bot.workflow import Refused

log = logging.getLogger(__name__)
QUOTA_CHECK_SECONDS = 1.5  # the whole view_submission must be answered within 3 s


def register(app: AsyncApp, ctx: BotContext) -> None:
    @app.action(Action.GROUP_SELECT.value)
    @answered_at_ack
    async def group_chosen(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        view, form, context = _open_form(body)
        if not form.group_id:
            return
        try:
            catalogue = await ctx.catalogue.get()
            form, context = await ctx.catalogue.prefill_from_group(form.group_id, form, context)
        except CloudError as error:
            context = context.model_copy(update={"network_error": describe(error)})
            catalogue = forms.Catalogue()
        await _update(client, view, ctx.catalogue.create_form(catalogue, form, context, sandbox=ctx.sandbox))

    async def redraw(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The billing or the period unit changed: the fields, labels and bounds that follow them change too."""
        await ack()
        view, form, context = _open_form(body)
        try:
            catalogue = await ctx.catalogue.get()
        except CloudError:
            return
        await _update(client, view, ctx.catalogue.create_form(catalogue, form, context, sandbox=ctx.sandbox))

    for action in (Action.BILLING_CHANGE, Action.PERIOD_UNIT_CHANGE):
        app.action(action.value)(redraw)

    @app.options(Action.GROUP_SELECT.value)
    @answered_at_ack
    async def group_options(ack: AsyncAck, body: dict[str, Any]) -> None:
        typed = str(body.get("value") or "").lower()
        try:
            catalogue = await asyncio.wait_for(ctx.catalogue.get(), timeout=2.0)
        except (CloudError, TimeoutError):
            await ack(options=[])
            return
        matches = [g for g in catalogue.groups if typed in (g.name or "").lower() or typed in g.id.lower()]
        await ack(options=[forms.group_option(g).to_dict() for g in matches[: forms.STATIC_SELECT_LIMIT]])

    @app.view(Callback.CREATE.value)
    @answered_at_ack
    async def create_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = str(as_dict(body.get("user")).get("id", ""))
        refusal = await guard.requester_refusal(ctx, user) if is_user_id(user) else Refusal(
            "user", "This submission does not say who sent it.")
        if refusal is not None:
            await ack(response_action="update", view=forms.message_view(f":no_entry: {refusal.sentence}").to_dict())
            return
        form = forms.read_form(as_dict(view.get("state")).get("values"))
        context = forms.ModalContext.load(view.get("private_metadata"))
        try:
            cached = ctx.catalogue.last()  # the chosen product's flavor is ListProduct's (no cloud call here)
            spec = parse_spec(forms.spec_body(form, context, cached.products if cached else ()))
            errors = forms.modal_errors({}, form, context)
        except SpecError as invalid:
            errors = forms.modal_errors(invalid.errors, form, context)
            spec = None
        if errors or spec is None:
            await ack(response_action="errors", errors=errors or {Block.GROUP.value: "Choose a server group."})
            return
        refusal = await guard.size_refusal(ctx, user, spec.subscription_num)
        if refusal is not None:
            await ack(response_action="errors", errors={Block.COUNT.value: refusal.sentence})
            return
        # The price is asked beside the quota, so it costs the form no extra wait; it never blocks a request.
        (quota_note, quota_error), quote = await asyncio.gather(_check_quota(ctx, spec), ctx.pricer.quote(spec))
        if context.image_product_id:  # a Marketplace image is billed apart: the estimate says it is left out
            quote = quote.model_copy(update={"image_product_id": context.image_product_id})
        errors = {Block.COUNT.value: quota_error} if quota_error else {}
        # Whether an approver decides is known only now, with the price and what the person had approved without
        # one today: then they need the reason, and a place among the requests an approver has to look at.
        rule = await guard.approval_rule(ctx, spec, quote, user)
        if rule and (refusal := await guard.pending_refusal(ctx, user)):
            errors[Block.COUNT.value] = refusal.sentence
        elif rule and not form.reason:
            errors[Block.REASON.value] = f"Say why these servers are needed: an approver decides this request — {rule}."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        # Stored before the ack: once the user sees the modal close, the request cannot be lost.
        progress = Progress(total=spec.subscription_num, quota_note=quota_note).model_dump_json()
        # The same transaction queues its thread and approval card for the courier.
        try:
            await ctx.workflow.submit(spec, user, channel_id=context.channel_id, reason=form.reason,
                                      progress_json=progress, price=quote)
        except Refused as refused:  # another submission of theirs took the day's last servers or place meanwhile
            await ack(response_action="errors", errors={Block.COUNT.value: refused.refusal.sentence})
            return
        await ack()
        ctx.wake_workers()


def _open_form(body: dict[str, Any]) -> tuple[dict[str, Any], forms.FormValues, forms.ModalContext]:
    """The modal a block action came from: the view, what is typed in it, and its context."""
    view = as_dict(body.get("view"))
    return view, forms.read_form(as_dict(view.get("state")).get("values")), forms.ModalContext.load(
        view.get("private_metadata"))


async def _update(client: AsyncWebClient, view: dict[str, Any], new_view: Any) -> None:
    if not isinstance(view.get("id"), str):
        return  # not a view Slack sent (no id): nothing to update
    try:
        await client.views_update(view_id=view["id"], hash=view.get("hash"), view=new_view)
    except SlackApiError as error:
        log.info("views.update skipped: %s", error.response.get("error"))


async def _check_quota(ctx: BotContext, spec: CreateAppServersRequest) -> tuple[str, str | None]:
    """CheckQuota within the ack's time budget. Returns (note for the approver, error for the form)."""
    try:
        quota = await asyncio.wait_for(ctx.cloud.workspace.check_quota(
            product_id=spec.product_id, subscription_num=spec.subscription_num, disk_size=spec.root_volume.size,
            disk_num=1, is_period=spec.is_prepaid, flavor_id=spec.flavor_id,
        ), timeout=QUOTA_CHECK_SECONDS)
    except TimeoutError:
        return "Quota could not be checked in time; the cloud checks it again on create.", None
    except CloudError as error:
        return f"Quota could not be checked: {describe(error)}", None
    if not quota.is_enough:
        short = "; ".join(f"{q.type} needs {q.need}, {q.remainder} left" for q in quota.shortfalls())
        return f"Quota is not enough: {short}", f"Not enough quota for this many servers: {short or 'the cloud says no'}."
    left = ", ".join(f"{q.type} {q.remainder} left" for q in quota.quota_remainder)
    return f"Quota OK ({left})" if left else "Quota OK", None
