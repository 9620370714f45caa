"""Messages: the request's thread, the approval card, replies, outcomes and App Home. Data in, blocks out."""

from __future__ import annotations

import json
from collections.abc import Sequence
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

from bot.lifecycle import FINAL_STATES, LABELS, State
from bot.price import quote_of
from bot.progress import Progress
from bot.reconcile import Candidates
from bot.slack.ids import Action, candidate_value
from bot.store.models import AppRequest, utcnow
from bot.store.repository import server_ids

SANDBOX_NOTE = ":test_tube: *SANDBOX*: no cloud credentials are set, so no real servers are created."
STATE_EMOJI = {
    State.PENDING_APPROVAL: ":hourglass:", State.APPROVED: ":white_check_mark:", State.SUBMITTING: ":outbox_tray:",
    State.SUBMITTED: ":outbox_tray:", State.AWAITING_PAYMENT: ":credit_card:", State.PROVISIONING: ":gear:",
    State.SUCCEEDED: ":large_green_circle:",
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
        ("Server group", group_name or f"`{spec.get('server_group_id')}`"),
        ("Product", f"`{spec.get('product_id')}`"),
        ("System disk", f"{volume.get('type')} {volume.get('size')} GB"),
        ("Zone", spec.get("availability_zone") or "chosen by the cloud"),
        ("Billing", billing_text(spec)),
        ("Network", f"subnet `{spec.get('subnet_id')}` in VPC `{spec.get('vpc_id')}`"),
    ]
    if spec.get("ou_name"):
        pairs.append(("OU", f"`{spec['ou_name']}`"))
    if spec.get("scheduler_hints"):
        pairs.append(("Dedicated host", f"`{spec['scheduler_hints'].get('dedicated_host_id')}`"))
    return [_md(f"*{k}*\n{v}") for k, v in pairs][:10]


def _ids_text(request: AppRequest) -> str:
    ids = server_ids(request)
    if not ids:
        return ""
    shown = ", ".join(f"`{i}`" for i in ids[:MAX_IDS_SHOWN])
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    return f"{shown}{more}"


def status_line(request: AppRequest) -> str:
    state = State(request.state)
    line = f"{STATE_EMOJI[state]} *{LABELS[state]}*"
    if state == State.PENDING_APPROVAL and request.expires_at:
        line += f" (expires {_when(request.expires_at)})"
    if request.decided_by and state not in (State.PENDING_APPROVAL, State.CANCELLED, State.EXPIRED):
        verb = "Rejected" if state == State.REJECTED else "Approved"
        line += f"\n{verb} by <@{request.decided_by}> {_when(request.decided_at)}"
        if request.decision_reason:
            line += f": {request.decision_reason}"
    return line


def price_text(request: AppRequest) -> str | None:
    """The estimate quoted before approval, labelled as one; or why there is none (it never blocks a request)."""
    quote = quote_of(request)
    if quote is None:
        return None
    if not quote.ok:
        return f":moneybag: {quote.summary()}. The request goes on without it; the order states the exact amount."
    text = f":moneybag: *{quote.summary()}*"
    monthly = quote.monthly_estimate()
    if quote.basis == "hour" and monthly is not None:
        text += f", about {quote.money(monthly)} a month if they run all the time"
    return text + ". An estimate from the cloud's price list; the order states the exact amount."


def mention(slack_id: str) -> str:
    """A ping for a user (U…/W…) or a user group (S…)."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def mentions(approvers: Sequence[str]) -> str:
    return " ".join(mention(a) for a in approvers)


def order_amount_text(progress: Progress) -> str | None:
    """The exact amount to pay, as the order states it."""
    if progress.order_amount is None:
        return None
    amount = f"{progress.order_currency or ''} {progress.order_amount:,.2f}".strip()
    if progress.order_official_amount is not None and progress.order_official_amount > progress.order_amount:
        amount += f" (list price {progress.order_official_amount:,.2f}, after discounts)"
    return amount


def payment_sentence(request: AppRequest) -> str:
    progress = Progress.of(request)
    amount = order_amount_text(progress)
    deadline = f" by {_when(progress.payment_deadline)}" if progress.payment_deadline else ""
    what = f"*{amount}*" if amount else "its amount (see the Billing Center)"
    return (f":credit_card: Order `{request.order_id}` waits for payment of {what}{deadline}. "
            "Nothing is created until it is paid; if it is not paid in time the order lapses.")


def pay_button(request: AppRequest) -> ButtonElement:
    """Pay, with a confirmation that repeats what is charged."""
    amount = order_amount_text(Progress.of(request)) or "the order's amount"
    return ButtonElement(
        text="Pay", action_id=Action.PAY.value, value=request.id, style="primary",
        confirm=ConfirmObject(title="Pay this order?", text=f"The cloud account is charged {amount} now for order "
                              f"{request.order_id}.", confirm="Pay", deny="Back"))


def progress_text(request: AppRequest, now: datetime | None = None) -> str | None:
    state = State(request.state)
    if state not in (State.SUBMITTED, State.AWAITING_PAYMENT, State.PROVISIONING):
        return None
    progress = Progress.of(request)
    now = now or utcnow()
    parts = []
    if state == State.AWAITING_PAYMENT:
        amount = order_amount_text(progress)
        deadline = f" by {_when(progress.payment_deadline)}" if progress.payment_deadline else ""
        parts.append(f":credit_card: Order `{request.order_id}` waits for an approver to pay"
                     + (f" {amount}" if amount else "") + deadline)
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
    blocks.append(SectionBlock(text=_md(f"*{request.id}*: <@{request.requester_id}> asks for "
                                        f"{spec.get('subscription_num')} app server(s)\n{status_line(request)}")))
    blocks.append(SectionBlock(fields=spec_fields(spec, group_name)))
    if price := price_text(request):
        blocks.append(ContextBlock(elements=[_md(price)]))
    if request.reason:
        blocks.append(ContextBlock(elements=[_md(f":memo: {request.reason}")]))
    if progress := progress_text(request):
        blocks.append(ContextBlock(elements=[_md(progress)]))
    refs = [f"job `{request.job_id}`" if request.job_id else "", f"order `{request.order_id}`" if request.order_id else ""]
    if any(refs):
        blocks.append(ContextBlock(elements=[_md("Cloud: " + ", ".join(r for r in refs if r))]))
    if ids := _ids_text(request):
        blocks.append(SectionBlock(text=_md(f"*Servers*\n{ids}")))
    if request.outcome_sentence:
        blocks.append(SectionBlock(text=_md(request.outcome_sentence)))
    prefix = "[SANDBOX] " if sandbox else ""
    text = f"{prefix}{request.id}: {LABELS[State(request.state)]}"
    return Message(text, [b.to_dict() for b in blocks])


def approval_card(request: AppRequest, *, sandbox: bool, quota: str | None, group_name: str | None = None,
                  approvers: Sequence[str] = ()) -> Message:
    """The approvers' message about a request: it follows the request to its end, with the buttons that fit
    its state (decide, pay, say which order is ours, send again)."""
    spec = spec_of(request)
    state = State(request.state)
    blocks: list[SlackBlock] = [HeaderBlock(text=PlainTextObject(text=f"Approval: {request.id}"))]
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    blocks.append(SectionBlock(text=_md(f"<@{request.requester_id}> asks for {spec.get('subscription_num')} app "
                                        f"server(s), {billing_text(spec)}.\n{status_line(request)}")))
    blocks.append(SectionBlock(fields=spec_fields(spec, group_name)))
    if price := price_text(request):
        blocks.append(SectionBlock(text=_md(price)))
    blocks.append(ContextBlock(elements=[_md(f":memo: {request.reason or 'No reason given.'}"),
                                         _md(f":bar_chart: {quota or 'Quota not checked.'}"),
                                         _md(f"Spec hash `{request.spec_hash[:12]}`")]))
    if state == State.PENDING_APPROVAL:
        blocks.append(ActionsBlock(block_id=f"decide:{request.id}", elements=[
            ButtonElement(text="Approve", action_id=Action.APPROVE.value, value=request.id, style="primary",
                          confirm=ConfirmObject(title="Approve this order?", text=approve_confirmation(request, spec),
                                                confirm="Approve", deny="Back")),
            ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id, style="danger"),
        ]))
    elif state == State.AWAITING_PAYMENT and request.order_id:
        blocks.append(SectionBlock(text=_md(payment_sentence(request))))
        blocks.append(ActionsBlock(block_id=f"pay:{request.id}", elements=[pay_button(request)]))
    elif state == State.NEEDS_ATTENTION:
        blocks.extend(attention_blocks(request, with_buttons=True))
    elif state in (State.SUBMITTED, State.PROVISIONING):
        if request.payment_by:
            blocks.append(ContextBlock(elements=[_md(f":credit_card: Paid by <@{request.payment_by}>.")]))
        if progress := progress_text(request):
            blocks.append(ContextBlock(elements=[_md(progress)]))
    elif state in FINAL_STATES and state not in (State.REJECTED, State.EXPIRED, State.CANCELLED):
        blocks.append(SectionBlock(text=_md(outcome_text(request, sandbox=False))))
    prefix = "[SANDBOX] " if sandbox else ""
    who = f" {mentions(approvers)}" if approvers else ""
    if state == State.PENDING_APPROVAL:
        text = f"{prefix}Approval needed for {request.id}"
    elif state == State.AWAITING_PAYMENT:
        amount = order_amount_text(Progress.of(request))
        text = f"{prefix}{request.id}: order {request.order_id} waits for payment" + (f" of {amount}" if amount else "") \
            + who
    elif state == State.NEEDS_ATTENTION:
        text = f"{prefix}{request.id} needs an approver: the outcome of its order is unknown{who}"
    else:
        text = f"{prefix}{request.id}: {LABELS[state]}"
    return Message(text, [b.to_dict() for b in blocks])


def approve_confirmation(request: AppRequest, spec: dict[str, Any]) -> str:
    quote = quote_of(request)
    cost = f", estimated at {quote.money(quote.final_amount)}" \
        if quote and quote.ok and quote.final_amount is not None else ""
    when = " per hour" if quote and quote.ok and quote.basis == "hour" else ""
    return f"The bot will order exactly this from the cloud ({billing_text(spec)}{cost}{when})."


def payment_reply(request: AppRequest, *, sandbox: bool, approvers: Sequence[str], for_approvers: bool,
                  approval_channel: str | None) -> str:
    """Who must do what about an order waiting for payment: the approvers (pinged) or the requester (told)."""
    prefix = "[SANDBOX] " if sandbox else ""
    if for_approvers:
        who = mentions(approvers) or "Approvers"
        return f"{prefix}{who}: {payment_sentence(request)} Pay it with the button on this card, or in the Billing Center."
    where = f" in <#{approval_channel}>" if approval_channel else " from the app's Home tab"
    return (f"{prefix}{payment_sentence(request)} An approver pays it{where}; it is paid with the company's cloud "
            "account, so the person who asked cannot pay it.")


def paid_reply(request: AppRequest, *, sandbox: bool) -> str:
    prefix = "[SANDBOX] " if sandbox else ""
    amount = order_amount_text(Progress.of(request))
    who = f"<@{request.payment_by}>" if request.payment_by else "An approver"
    return f"{prefix}:credit_card: {who} paid order `{request.order_id}`" + (f" ({amount})" if amount else "") + \
        ". The cloud is creating the servers now."


def attention_blocks(request: AppRequest, *, with_buttons: bool) -> list[SlackBlock]:
    """What the bot found after an unknown create, and (for approvers) the choices it needs."""
    candidates = Candidates.of(request)
    if request.lookup_found:
        what = f"The cloud shows what it created: {_ids_text(request) or 'see the audit log'}"
        what += f" (job `{request.job_id}`)." if request.job_id else (
            f" (order `{request.order_id}`)." if request.order_id else ".")
        action = "It must not be sent again."
    elif candidates.items:
        fits = candidates.items[0].fits
        what = ("The cloud shows more than one " + ("order" if candidates.items[0].kind == "order" else "job")
                + " that matches this request, so the bot will not guess which is ours:" if fits else
                "The cloud shows something created at that time that does not match this request exactly:")
        action = "An approver says which one is ours, or that none is." if with_buttons else \
            "An approver is asked which one is ours."
    elif request.lookup_found is False:
        what = "The bot found nothing created by it so far."
        action = "An approver may send it again once they are sure." if with_buttons else \
            "An approver decides whether to send it again."
    else:
        what = "The bot is looking for what was created."
        action = ""
    text = f":warning: {request.outcome_sentence or 'The outcome of the order is unknown.'}\n{what} {action}".rstrip()
    blocks: list[SlackBlock] = [SectionBlock(text=_md(text))]
    for candidate in candidates.items if not request.lookup_found else []:
        section = SectionBlock(text=_md(f"• {candidate.detail}"))
        if with_buttons:
            section.accessory = ButtonElement(
                text="This one is ours", action_id=Action.CHOOSE_CANDIDATE.value,
                value=candidate_value(request.id, candidate.id),
                confirm=ConfirmObject(title="Link this to the request?", text=f"The bot follows {candidate.kind} "
                                      f"{candidate.id} as {request.id}'s, and may offer to pay it.",
                                      confirm="It is ours", deny="Back"))
        blocks.append(section)
    if with_buttons and candidates.items and not request.lookup_found:
        blocks.append(ActionsBlock(block_id=f"candidates:{request.id}", elements=[
            ButtonElement(text="None of these", action_id=Action.NO_CANDIDATE.value, value=request.id,
                          confirm=ConfirmObject(title="None of these is ours?", text="The bot will not link or pay "
                                                "any of them. It looks once more before the order may be sent again.",
                                                confirm="None is ours", deny="Back"))]))
    elif with_buttons and request.lookup_found is False:
        blocks.append(ActionsBlock(block_id=f"retry:{request.id}", elements=[
            ButtonElement(text="Send again", action_id=Action.RETRY.value, value=request.id,
                          confirm=ConfirmObject(title="Send the order again?", text="The bot looks at the cloud once "
                                                "more first, and refuses if anything from this request shows up.",
                                                confirm="Send again", deny="Back"))]))
    return blocks


def attention_message(request: AppRequest, *, sandbox: bool) -> Message:
    """For the requester's thread: what happened and what happens next (the choices are the approvers')."""
    blocks = attention_blocks(request, with_buttons=False)
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
        return f"{prefix}:no_entry: {request.id} was rejected by <@{request.decided_by}>: {request.decision_reason}"
    if state == State.EXPIRED:
        return f"{prefix}:alarm_clock: {request.id} expired without a decision; nothing was ordered."
    if state == State.CANCELLED:
        return f"{prefix}:heavy_multiplication_x: {request.id} was cancelled; nothing was ordered."
    sentence = request.outcome_sentence or "The cloud gave no reason."
    ids = _ids_text(request)
    extra = f" Servers that were created: {ids}." if ids else ""
    return f"{prefix}:red_circle: {request.id} failed. {sentence}{extra}"


def trouble_text(request: AppRequest, *, sandbox: bool) -> str:
    prefix = "[SANDBOX] " if sandbox else ""
    return (f"{prefix}:warning: The bot cannot follow {request.id} right now: {request.last_error or 'the cloud refused'} "
            "It keeps trying, less often; an administrator needs to fix this.")


def reply_text(request: AppRequest, event: str, *, sandbox: bool) -> str | None:
    prefix = "[SANDBOX] " if sandbox else ""
    state = State(request.state)
    if event == "submitted":
        refs = [f"{kind} `{ref}`" for kind, ref in (("order", request.order_id), ("job", request.job_id)) if ref]
        return f"{prefix}:outbox_tray: Ordered from the cloud ({', '.join(refs)}). I'll follow it here."
    # By the time this is told the request may already be ordered: the decision is what is announced.
    if event == "decided" and request.decided_by and state not in (State.PENDING_APPROVAL, State.REJECTED):
        return f"{prefix}:white_check_mark: Approved by <@{request.decided_by}>. Ordering now."
    return None


def home_view(mine: list[AppRequest], pending: list[AppRequest], *, approver: bool, sandbox: bool,
              to_pay: Sequence[AppRequest] = (), attention: Sequence[AppRequest] = ()) -> View:
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
        blocks.append(HeaderBlock(text=PlainTextObject(text="Waiting for me")))
        if not (pending or to_pay or attention):
            blocks.append(SectionBlock(text=_md("_Nothing waits for you._")))
        for request in to_pay[:10]:
            spec = spec_of(request)
            blocks.append(SectionBlock(text=_md(f"*{request.id}* from <@{request.requester_id}>: "
                                                f"{spec.get('subscription_num')} server(s), {billing_text(spec)}\n"
                                                f"{payment_sentence(request)}")))
            blocks.append(ActionsBlock(block_id=f"home-pay:{request.id}", elements=[pay_button(request)]))
        for request in attention[:5]:
            blocks.append(SectionBlock(text=_md(f"*{request.id}* from <@{request.requester_id}> needs attention")))
            blocks.extend(attention_blocks(request, with_buttons=True))
        for request in pending[:20]:
            spec = spec_of(request)
            blocks.append(SectionBlock(text=_md(f"*{request.id}* from <@{request.requester_id}>: "
                                                f"{spec.get('subscription_num')} server(s), {billing_text(spec)}"
                                                f"\n:memo: {request.reason or 'No reason given.'}")))
            blocks.append(ActionsBlock(block_id=f"home:{request.id}", elements=[
                ButtonElement(text="Approve", action_id=Action.APPROVE.value, value=request.id, style="primary"),
                ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id, style="danger")]))
    return View(type="home", blocks=blocks[:100])
