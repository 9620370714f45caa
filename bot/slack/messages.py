"""Messages: the request's thread, the approval card, replies, outcomes and App Home. Data in, blocks out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.blocks.blocks import Block as SlackBlock
from slack_sdk.models.views import View

from bot.lifecycle import LABELS, State
from bot.progress import Progress
from bot.slack.binding import button_value
from bot.slack.ids import Action
from bot.slack.text import code, escape_mrkdwn, mention
from bot.store.models import AppRequest, utcnow
from bot.store.repository import server_ids

SANDBOX_NOTE = ":test_tube: *SANDBOX*: no cloud credentials are set, so no real servers are created."
STATE_EMOJI = {
    State.PENDING_APPROVAL: ":hourglass:", State.APPROVED: ":white_check_mark:", State.SUBMITTING: ":outbox_tray:",
    State.SUBMITTED: ":outbox_tray:", State.PROVISIONING: ":gear:", State.SUCCEEDED: ":large_green_circle:",
    State.FAILED: ":red_circle:", State.REJECTED: ":no_entry:", State.EXPIRED: ":alarm_clock:",
    State.CANCELLED: ":heavy_multiplication_x:", State.SUBMIT_FAILED: ":red_circle:",
    State.NEEDS_ATTENTION: ":warning:",
}
MAX_IDS_SHOWN = 20


@dataclass(frozen=True)
class Message:
    text: str  # the notification text (and what screen readers and old clients show)
    blocks: list[dict[str, Any]]


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(max(seconds, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def spec_of(request: AppRequest) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(request.spec_json)
    return spec


def billing_text(spec: dict[str, Any]) -> str:
    extend = spec.get("create_server_extend_param") or {}
    if extend.get("charging_mode") != "prePaid":
        return "pay-per-use"
    unit = "month" if extend.get("period_type") == 2 else "year"
    num = extend.get("period_num")
    flags = [f for f, on in (("auto-renew", extend.get("is_auto_renew")), ("auto-pay", extend.get("is_auto_pay"))) if on]
    return f"yearly/monthly, {num} {unit}{'s' if num != 1 else ''}" + (f" ({', '.join(flags)})" if flags else "")


def spec_fields(spec: dict[str, Any], group_name: str | None = None) -> list[MarkdownTextObject]:
    volume = spec.get("root_volume") or {}
    pairs = [
        ("Servers", str(spec.get("subscription_num"))),
        ("Server group", escape_mrkdwn(group_name) if group_name else code(spec.get("server_group_id"))),
        ("Product", code(spec.get("product_id"))),
        ("System disk", escape_mrkdwn(f"{volume.get('type')} {volume.get('size')} GB")),
        ("Zone", escape_mrkdwn(spec.get("availability_zone") or "chosen by the cloud")),
        ("Billing", billing_text(spec)),
        ("Network", f"subnet {code(spec.get('subnet_id'))} in VPC {code(spec.get('vpc_id'))}"),
    ]
    if spec.get("ou_name"):
        pairs.append(("OU", code(spec["ou_name"])))
    if spec.get("scheduler_hints"):
        pairs.append(("Dedicated host", code(spec["scheduler_hints"].get("dedicated_host_id"))))
    return [_md(f"*{k}*\n{v}") for k, v in pairs][:10]


def _ids_text(request: AppRequest) -> str:
    ids = server_ids(request)
    if not ids:
        return ""
    shown = ", ".join(code(i) for i in ids[:MAX_IDS_SHOWN])
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    return f"{shown}{more}"


def status_line(request: AppRequest) -> str:
    state = State(request.state)
    line = f"{STATE_EMOJI[state]} *{LABELS[state]}*"
    if state == State.PENDING_APPROVAL and request.expires_at:
        line += f" (expires {_when(request.expires_at)})"
    if request.decided_by and state not in (State.PENDING_APPROVAL, State.CANCELLED, State.EXPIRED):
        verb = "Rejected" if state == State.REJECTED else "Approved"
        line += f"\n{verb} by {mention(request.decided_by)} {_when(request.decided_at)}"
        if request.decision_reason:
            line += f": {escape_mrkdwn(request.decision_reason)}"
    return line


def progress_text(request: AppRequest, now: datetime | None = None) -> str | None:
    state = State(request.state)
    if state not in (State.SUBMITTED, State.PROVISIONING):
        return None
    progress = Progress.of(request)
    now = now or utcnow()
    parts = []
    if request.order_id and progress.order_status == 6:
        deadline = f" by {_when(progress.payment_deadline)}" if progress.payment_deadline else ""
        parts.append(f":credit_card: Order {code(request.order_id)} waits for payment{deadline}.")
    else:
        parts.append(f"`{progress.bar()}`")
    if request.submitted_at:
        parts.append(f"elapsed {_duration((now - request.submitted_at).total_seconds())}")
    if progress.expected_end:
        parts.append(f"expected end {_when(progress.expected_end)}")
    return " · ".join(parts)


def request_message(request: AppRequest, *, sandbox: bool, group_name: str | None = None) -> Message:
    """The request's own message, the head of its thread; edited in place as things change."""
    spec = spec_of(request)
    blocks: list[SlackBlock] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    blocks.append(SectionBlock(text=_md(f"*{request.id}*: {mention(request.requester_id)} asks for "
                                        f"{spec.get('subscription_num')} app server(s)\n{status_line(request)}")))
    blocks.append(SectionBlock(fields=spec_fields(spec, group_name)))
    if request.reason:
        blocks.append(ContextBlock(elements=[_md(f":memo: {escape_mrkdwn(request.reason)}")]))
    if progress := progress_text(request):
        blocks.append(ContextBlock(elements=[_md(progress)]))
    refs = [f"job {code(request.job_id)}" if request.job_id else "",
            f"order {code(request.order_id)}" if request.order_id else ""]
    if any(refs):
        blocks.append(ContextBlock(elements=[_md("Cloud: " + ", ".join(r for r in refs if r))]))
    if ids := _ids_text(request):
        blocks.append(SectionBlock(text=_md(f"*Servers*\n{ids}")))
    if request.outcome_sentence:
        blocks.append(SectionBlock(text=_md(escape_mrkdwn(request.outcome_sentence))))
    prefix = "[SANDBOX] " if sandbox else ""
    text = f"{prefix}{request.id}: {LABELS[State(request.state)]}"
    return Message(text, [b.to_dict() for b in blocks])


def approval_card(request: AppRequest, *, sandbox: bool, quota: str | None, group_name: str | None = None) -> Message:
    spec = spec_of(request)
    state = State(request.state)
    blocks: list[SlackBlock] = [HeaderBlock(text=PlainTextObject(text=f"Approval: {request.id}"))]
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    blocks.append(SectionBlock(text=_md(f"{mention(request.requester_id)} asks for {spec.get('subscription_num')} app "
                                        f"server(s), {billing_text(spec)}.\n{status_line(request)}")))
    blocks.append(SectionBlock(fields=spec_fields(spec, group_name)))
    blocks.append(ContextBlock(elements=[_md(f":memo: {escape_mrkdwn(request.reason or 'No reason given.')}"),
                                         _md(f":bar_chart: {quota or 'Quota not checked.'}"),
                                         _md(f"Spec hash `{request.spec_hash[:12]}`")]))
    if state == State.PENDING_APPROVAL:
        blocks.append(ActionsBlock(block_id=f"decide:{request.id}", elements=[
            ButtonElement(text="Approve", action_id=Action.APPROVE.value, value=button_value(request), style="primary",
                          confirm=ConfirmObject(title="Approve this order?", text=f"The bot will order exactly "
                                                f"this from the cloud ({billing_text(spec)}).",
                                                confirm="Approve", deny="Back")),
            ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id, style="danger"),
        ]))
    prefix = "[SANDBOX] " if sandbox else ""
    return Message(f"{prefix}Approval needed for {request.id}" if state == State.PENDING_APPROVAL
                   else f"{prefix}{request.id}: {LABELS[state]}", [b.to_dict() for b in blocks])


def payment_message(request: AppRequest, *, sandbox: bool) -> Message:
    progress = Progress.of(request)
    deadline = f" before {_when(progress.payment_deadline)}" if progress.payment_deadline else ""
    text = (f":credit_card: Order `{request.order_id}` was placed but is not paid. Nothing is created until it is "
            f"paid{deadline}. An approver can pay it here, or in the Billing Center.")
    blocks: list[SlackBlock] = [SectionBlock(text=_md(text)), ActionsBlock(block_id=f"pay:{request.id}", elements=[
        ButtonElement(text="Pay now", action_id=Action.PAY.value, value=button_value(request), style="primary",
                      confirm=ConfirmObject(title="Pay this order?", text="The cloud account is charged now.",
                                            confirm="Pay", deny="Back"))])]
    if sandbox:
        blocks.insert(0, ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    return Message(("[SANDBOX] " if sandbox else "") + f"{request.id}: the order waits for payment",
                   [b.to_dict() for b in blocks])


def attention_message(request: AppRequest, *, sandbox: bool) -> Message:
    found = request.lookup_found
    if found:
        what = f"The cloud shows what it created: {_ids_text(request) or 'see the audit log'}"
        what += f" (job {code(request.job_id)})." if request.job_id else (
            f" (order {code(request.order_id)})." if request.order_id else ".")
        action = "It must not be sent again."
    else:
        what = "The bot found nothing created by it so far."
        action = "An approver may send it again once they are sure."
    text = f":warning: {escape_mrkdwn(request.outcome_sentence or 'The outcome of the order is unknown.')}\n{what} {action}"
    blocks: list[SlackBlock] = [SectionBlock(text=_md(text))]
    if found is False:
        blocks.append(ActionsBlock(block_id=f"retry:{request.id}", elements=[
            ButtonElement(text="Send again", action_id=Action.RETRY.value, value=request.id,
                          confirm=ConfirmObject(title="Send the order again?", text="The bot looks at the cloud once "
                                                "more first, and refuses if anything from this request shows up.",
                                                confirm="Send again", deny="Back"))]))
    if sandbox:
        blocks.insert(0, ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    return Message(("[SANDBOX] " if sandbox else "") + f"{request.id} needs attention", [b.to_dict() for b in blocks])


def outcome_text(request: AppRequest, *, sandbox: bool) -> str:
    """The final word, for the thread, the notify channel and the requester's DM."""
    state = State(request.state)
    prefix = "[SANDBOX] " if sandbox else ""
    if state == State.SUCCEEDED:
        ids = _ids_text(request)
        return f"{prefix}:large_green_circle: {request.id} is done: {len(server_ids(request))} app server(s) created" \
               + (f": {ids}" if ids else ".")
    if state == State.REJECTED:
        return (f"{prefix}:no_entry: {request.id} was rejected by {mention(request.decided_by)}: "
                f"{escape_mrkdwn(request.decision_reason)}")
    if state == State.EXPIRED:
        return f"{prefix}:alarm_clock: {request.id} expired without a decision; nothing was ordered."
    if state == State.CANCELLED:
        return f"{prefix}:heavy_multiplication_x: {request.id} was cancelled; nothing was ordered."
    sentence = escape_mrkdwn(request.outcome_sentence or "The cloud gave no reason.")
    ids = _ids_text(request)
    extra = f" Servers that were created: {ids}." if ids else ""
    return f"{prefix}:red_circle: {request.id} failed. {sentence}{extra}"


def reply_text(request: AppRequest, event: str, *, sandbox: bool) -> str | None:
    prefix = "[SANDBOX] " if sandbox else ""
    state = State(request.state)
    if event == "submitted":
        ref = f"job {code(request.job_id)}" if request.job_id else f"order {code(request.order_id)}"
        return f"{prefix}:outbox_tray: Ordered from the cloud ({ref}). I'll follow it here."
    if event == "decided" and state == State.APPROVED:
        return f"{prefix}:white_check_mark: Approved by {mention(request.decided_by)}. Ordering now."
    return None


def home_view(mine: list[AppRequest], pending: list[AppRequest], *, approver: bool, sandbox: bool) -> View:
    blocks: list[SlackBlock] = [HeaderBlock(text=PlainTextObject(text="App servers"))]
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    blocks.append(SectionBlock(text=_md("Type `/appserver create` to ask for app servers, `/appserver help` for more.")))
    blocks.append(HeaderBlock(text=PlainTextObject(text="My recent requests")))
    if not mine:
        blocks.append(SectionBlock(text=_md("_None yet._")))
    for request in mine[:15]:
        spec = spec_of(request)
        blocks.append(SectionBlock(text=_md(f"*{request.id}* · {spec.get('subscription_num')} server(s), "
                                            f"{billing_text(spec)}\n{status_line(request)}")))
    if approver:
        blocks.append(DividerBlock())
        blocks.append(HeaderBlock(text=PlainTextObject(text="Waiting for my decision")))
        if not pending:
            blocks.append(SectionBlock(text=_md("_Nothing waits for you._")))
        for request in pending[:20]:
            spec = spec_of(request)
            blocks.append(SectionBlock(text=_md(f"*{request.id}* from {mention(request.requester_id)}: "
                                                f"{spec.get('subscription_num')} server(s), {billing_text(spec)}"
                                                f"\n:memo: {escape_mrkdwn(request.reason or 'No reason given.')}")))
            blocks.append(ActionsBlock(block_id=f"home:{request.id}", elements=[
                ButtonElement(text="Approve", action_id=Action.APPROVE.value, value=button_value(request),
                              style="primary"),
                ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id, style="danger")]))
    return View(type="home", blocks=blocks[:100])
