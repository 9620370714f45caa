"""Messages: the request's thread, the approval card, replies, outcomes and App Home. Data in, blocks out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
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
from bot.money import CENT, button_amount, gap_over_one_percent, money
from bot.price import quote_of
from bot.progress import Progress
from bot.reconcile import Candidate, Candidates
from bot.slack.binding import button_value, choice_value
from bot.slack.ids import Action
from bot.slack.names import Names
from bot.slack.text import code, escape_mrkdwn, mention
from bot.store.models import AppRequest, utcnow
from bot.store.repository import server_ids

SANDBOX_NOTE = ":test_tube: *SANDBOX*: no cloud credentials are set, so no real servers are created."
STATE_EMOJI = {
    State.PENDING_APPROVAL: ":hourglass:", State.APPROVED: ":white_check_mark:", State.SUBMITTING: ":outbox_tray:",
    State.SUBMITTED: ":outbox_tray:", State.AWAITING_PAYMENT: ":credit_card:", State.PROVISIONING: ":gear:",
    State.SUCCEEDED: ":large_green_circle:", State.PARTLY_DONE: ":large_yellow_circle:",
    State.FAILED: ":red_circle:", State.REJECTED: ":no_entry:", State.EXPIRED: ":alarm_clock:",
    State.CANCELLED: ":heavy_multiplication_x:", State.SUBMIT_FAILED: ":red_circle:",
    State.NEEDS_ATTENTION: ":warning:",
}
MAX_IDS_SHOWN = 20
CANCELLABLE = frozenset({State.PENDING_APPROVAL, State.APPROVED})
# A request that ended (or never started) offers to ask for the same again.
ORDER_AGAIN_STATES = frozenset({State.SUCCEEDED, State.PARTLY_DONE, State.FAILED, State.REJECTED, State.EXPIRED,
                                State.CANCELLED, State.SUBMIT_FAILED})
NO_NAMES = Names()


@dataclass(frozen=True)
class Links:
    """Where things are: the requester's thread, the approvers' card (permalinks) and the cloud's console."""

    thread: str | None = None
    card: str | None = None
    console: str | None = None


NO_LINKS = Links()


def link(url: str | None, label: str) -> str:
    """A mrkdwn link; the label alone when there is no URL (permalinks come from Slack, the console from
    the settings, so neither holds a "|" or ">")."""
    return f"<{url}|{escape_mrkdwn(label)}>" if url else escape_mrkdwn(label)


@dataclass(frozen=True)
class Message:
    text: str  # the notification text (and what screen readers and old clients show)
    blocks: list[dict[str, Any]]


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def when(moment: datetime | None) -> str:
    """A moment each reader's Slack shows in their own time zone."""
    if moment is None:
        return "unknown"
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{moment:%Y-%m-%d %H:%M} UTC>"


def _ago(moment: datetime) -> str:
    """"5 minutes ago", rendered by each Slack client, so it moves without an edit."""
    return f"<!date^{int(moment.timestamp())}^{{ago}}|at {moment:%Y-%m-%d %H:%M} UTC>"


def spec_of(request: AppRequest) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(request.spec_json)
    return spec


def billing_words(spec: dict[str, Any]) -> str:
    """"Pay-per-use (by the hour)" or "Yearly/monthly: 6 months, auto-pay": how the servers are paid for."""
    extend = spec.get("create_server_extend_param") or {}
    if extend.get("charging_mode") != "prePaid":
        return "Pay-per-use (by the hour)"
    unit = "month" if extend.get("period_type") == 2 else "year"
    num = extend.get("period_num")
    flags = [f for f, on in (("auto-pay", extend.get("is_auto_pay")), ("auto-renew", extend.get("is_auto_renew"))) if on]
    return f"Yearly/monthly: {num} {unit}{'s' if num != 1 else ''}" + (f", {', '.join(flags)}" if flags else "")


def group_words(request: AppRequest, names: Names) -> str:
    return escape_mrkdwn(names.group) if names.group else code(request.server_group_id)


def spec_fields(spec: dict[str, Any], names: Names = NO_NAMES) -> list[MarkdownTextObject]:
    """What is ordered, in words; the ids behind the names are in `ids_context`."""
    volume = spec.get("root_volume") or {}
    product = escape_mrkdwn(names.product) if names.product else code(spec.get("product_id"))
    network = (f"subnet {escape_mrkdwn(names.network)}" if names.network
               else f"subnet {code(spec.get('subnet_id'))}")
    group = escape_mrkdwn(names.group) if names.group else code(spec.get("server_group_id"))
    pairs = [
        ("Server group", group),
        ("Servers", f"{spec.get('subscription_num')} × {product}"),  # noqa: RUF001
        ("Billing", billing_words(spec)),
        ("System disk", escape_mrkdwn(f"{volume.get('type')} {volume.get('size')} GB")),
        ("Zone", escape_mrkdwn(spec.get("availability_zone") or "chosen by the cloud")),
        ("Network", network),
    ]
    if spec.get("scheduler_hints"):
        pairs.append(("Dedicated host", code(spec["scheduler_hints"].get("dedicated_host_id"))))
    return [_md(f"*{k}*\n{v}") for k, v in pairs][:10]


def ids_context(request: AppRequest, spec: dict[str, Any]) -> ContextBlock:
    """The ids behind the names, small, for whoever needs to find them in the console."""
    parts = [f"{request.id}", f"group {code(spec.get('server_group_id'))}", f"product {code(spec.get('product_id'))}",
             f"subnet {code(spec.get('subnet_id'))}", f"VPC {code(spec.get('vpc_id'))}"]
    if spec.get("ou_name"):
        parts.append(f"OU {code(spec['ou_name'])}")
    parts += [f"{kind} {code(ref)}" for kind, ref in (("job", request.job_id), ("order", request.order_id)) if ref]
    return ContextBlock(elements=[_md(" · ".join(parts))])


def servers_text(request: AppRequest, names: Names = NO_NAMES) -> str:
    """The servers by name (ids where the cloud gave no name), the first few of many."""
    ids = server_ids(request)
    if not ids:
        return ""
    shown = ", ".join(escape_mrkdwn(n) if n in names.servers.values() else code(n)
                      for n in names.server_list(ids[:MAX_IDS_SHOWN]))
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    return f"{shown}{more}"


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
        line += f" (expires {when(request.expires_at)})"
    if state in FINAL_STATES and request.finished_at:
        line += f" {when(request.finished_at)}"
    if request.decided_by and state not in (State.PENDING_APPROVAL, State.CANCELLED, State.EXPIRED):
        verb = "Rejected" if state == State.REJECTED else "Approved"
        line += f"\n{verb} by {mention(request.decided_by)} {when(request.decided_at)}"
        if request.decision_reason:
            line += f": {escape_mrkdwn(request.decision_reason)}"
    return line


def what_is_ordered(spec: dict[str, Any]) -> str:
    """"3 app servers for 6 months", "2 app servers, pay-per-use": the order in a few words."""
    count = spec.get("subscription_num")
    servers = f"{count} app server{'' if count == 1 else 's'}"
    extend = spec.get("create_server_extend_param") or {}
    if extend.get("charging_mode") != "prePaid":
        return f"{servers}, pay-per-use"
    num = extend.get("period_num")
    unit = "month" if extend.get("period_type") == 2 else "year"
    return f"{servers} for {num} {unit}{'' if num == 1 else 's'}"


def _auto_pay(spec: dict[str, Any]) -> bool:
    return bool((spec.get("create_server_extend_param") or {}).get("is_auto_pay"))


def covers_text(spec: dict[str, Any], names: Names = NO_NAMES) -> str:
    """What an estimate prices, in words: exactly the product, disk, count and period of the body ordered."""
    count = spec.get("subscription_num")
    product = escape_mrkdwn(names.product) if names.product else code(spec.get("product_id"))
    volume = spec.get("root_volume") or {}
    extend = spec.get("create_server_extend_param") or {}
    if extend.get("charging_mode") == "prePaid":
        num = extend.get("period_num")
        when_ = f" for {num} {'month' if extend.get('period_type') == 2 else 'year'}{'' if num == 1 else 's'}"
    else:
        when_ = " for one hour"
    plural = "" if count == 1 else "s"
    return (f"It covers {count} app server{plural} of {product} and {'its' if count == 1 else 'their'} "
            f"{escape_mrkdwn(str(volume.get('type')))} {escape_mrkdwn(str(volume.get('size')))} GB system "
            f"disk{plural}{when_}.")


def image_fee_text(request: AppRequest) -> str:
    """A Marketplace image is billed apart from the servers: the estimate leaves its fee out, and says so."""
    quote = quote_of(request)
    if quote is None or not quote.image_product_id:
        return ""
    return (f" Not included: the fee of the group's paid Marketplace image (product {code(quote.image_product_id)}), "
            "billed separately.")


def price_text(request: AppRequest, names: Names = NO_NAMES) -> str | None:
    """The estimate quoted before approval, said as what it covers; or, for the approver, what no price means."""
    quote = quote_of(request)
    if quote is None:
        return None
    spec = spec_of(request)
    if not quote.ok or quote.final_amount is None or quote.list_amount is None:
        text = f":moneybag: *No price estimate*: {escape_mrkdwn(quote.no_price or 'the billing service gave none')}."
        text += image_fee_text(request)
        if spec.get("create_server_extend_param", {}).get("charging_mode") != "prePaid":
            return text + " Pay-per-use servers are billed by the hour once they exist."
        text += " Approving places the order; its exact amount is shown here before anyone pays."
        if _auto_pay(spec):
            text += " Auto-pay is on, so that amount is charged without asking: check the price before approving."
        return text
    count = spec.get("subscription_num")
    monthly = quote.monthly_estimate()
    if quote.basis == "hour":
        head = f"*Estimated cost: {quote.money(quote.final_amount)} an hour* for {count} server(s)"
        if monthly is not None:
            head += f" (about {quote.money(monthly)} a month if they run all the time)"
    else:
        head = f"*Estimated total: {quote.money(quote.final_amount)}* for {count} server(s) × {quote.period_text}"  # noqa: RUF001
        if monthly is not None and quote.period_months and quote.period_months > 1:
            head += f" (about {quote.money(monthly)} a month)"
    if quote.discounted_amount is not None:
        named = f" “{escape_mrkdwn(quote.discount_name)}”" if quote.discount_name else " the best discount"
        head += f". List price {quote.money(quote.list_amount)}, less{named}"
    return (f":moneybag: {head}. {covers_text(spec, names)}{image_fee_text(request)} From the cloud's price list; "
            "the exact amount is the order's.")


def estimate_gap(request: AppRequest) -> str:
    """How what Pay charges differs from the estimate the approver saw: by how much when over 1 %."""
    quote = quote_of(request)
    progress = Progress.of(request)
    charge = progress.to_charge()
    if quote is None or not quote.ok or quote.final_amount is None or charge is None:
        return ""
    if quote.currency and progress.order_currency and quote.currency != progress.order_currency:
        return ""
    estimate = quote.final_amount
    gap = charge - estimate
    if abs(gap) < CENT:
        return " It is the amount the approver saw."
    if not gap_over_one_percent(charge, estimate):
        return f" It is within 1 % of the approved estimate of {quote.money(estimate)}."
    more = "more" if gap > 0 else "less"
    share = (abs(gap) * 100 / estimate).quantize(Decimal("0.1")) if estimate else None
    percent = f", {share} %" if share is not None else ""
    return f" That is {quote.money(abs(gap))}{percent} {more} than the approved estimate of {quote.money(estimate)}."


def ping(slack_id: str) -> str:
    """A ping for a user (U…/W…) or a user group (S…), as configured in APPROVERS."""
    return f"<!subteam^{slack_id}>" if slack_id.startswith("S") else f"<@{slack_id}>"


def mentions(approvers: Sequence[str]) -> str:
    return " ".join(ping(a) for a in approvers)


def charge_text(progress: Progress) -> str | None:
    """What Pay charges, with the currency ("CNY 5,475.60")."""
    charge = progress.to_charge()
    return money(charge, progress.order_currency) if charge is not None else None


def discount_sentence(progress: Progress) -> str:
    """The discount Pay uses in words and the list price, or, in one sentence, that the discounts could not be
    read; then where coupons go."""
    price = progress.list_price()
    listed = money(price, progress.order_currency) if price is not None else "the order's list price"
    chosen = progress.discount
    if chosen is not None:
        text = (f"List price {listed}, less the {chosen.words} of "
                f"{money(chosen.amount_off, progress.order_currency)}.")
    elif progress.discounts_read:
        text = f"List price {listed}; no discount applies to this order."
    else:
        why = escape_mrkdwn(progress.discounts_error or "billing did not say")
        text = f"The bot could not read this order's discounts ({why}), so Pay charges the list price, {listed}."
    return text


COUPONS = "Coupons are not used; apply one in the Billing Center instead."


def proxy_sentence(request: AppRequest) -> str:
    """A payment billing turned into a proxy order: it waits for the master account, not for us."""
    progress = Progress.of(request)
    who = mention(request.payment_by) if request.payment_by else "An approver"
    deadline = f" by {when(progress.payment_deadline)}" if progress.payment_deadline else ""
    charged = progress.charged_amount
    sent = f" of {money(charged, progress.order_currency)}" if charged is not None else ""
    with_ = f" (with {progress.charged_with})" if progress.charged_with and progress.discount is not None else ""
    return (f":hourglass: {who} sent the payment{sent} for order {code(request.order_id)}{with_}, but billing does not "
            f"show it paid: this account's finance is hosted by a master account, so the payment now waits for the "
            f"master account to pay it in the Billing Center{deadline}. The bot keeps following the order and says "
            "here when it is paid.")


def payment_sentence(request: AppRequest) -> str:
    progress = Progress.of(request)
    if progress.proxy_payment_at is not None:
        return proxy_sentence(request)
    amount = charge_text(progress)
    what = f"Pay charges *{amount}*" if amount else "Its amount is in the Billing Center"
    due = (f"Due by {when(progress.payment_deadline)}: unpaid, the order lapses then" if progress.payment_deadline
           else "Unpaid, the order lapses at its deadline")
    return (f":credit_card: Order {code(request.order_id)} waits for payment. {what}. "
            f"{discount_sentence(progress)}{estimate_gap(request)}\n{due} and nothing is created. {COUPONS}")


def payable_amount(request: AppRequest) -> str | None:
    """The amount a Pay button stands for (it carries it, and a click is taken only while it is still so)."""
    progress = Progress.of(request)
    charge = progress.to_charge()
    return button_amount(charge, progress.order_currency) if charge is not None else None


def pay_button(request: AppRequest) -> ButtonElement:
    """Pay, with a confirmation that repeats what is charged (after which discount, or the list price when the
    discounts could not be read), for what, and how it compares with the estimate."""
    progress = Progress.of(request)
    amount = charge_text(progress) or "the order's amount"
    what = f"order {request.order_id} ({request.id}: {what_is_ordered(spec_of(request))})"
    if progress.discount is None and not progress.discounts_read:
        title = "Pay the list price?"
        text = (f"The order's discounts could not be read, so this charges the list price, {amount}, with no "
                f"discount, for {what}.{estimate_gap(request)}")
    else:
        title = "Pay this order?"
        chosen, price = progress.discount, progress.list_price()
        listed = money(price, progress.order_currency) if price is not None else "unknown"
        after = f" (list price {listed}, less the {chosen.words})" if chosen else \
            " (the list price: no discount applies)"
        text = f"Charge the cloud account {amount}{after} for {what}?{estimate_gap(request)}"
    return ButtonElement(
        text="Pay", action_id=Action.PAY.value, value=button_value(request, amount=payable_amount(request)),
        style="primary", confirm=ConfirmObject(title=title, text=text[:300], confirm="Pay", deny="Back"))


def stage_text(request: AppRequest) -> str:
    """Where the cloud is with the order, in words (a prepaid order shows no per-server progress at first)."""
    state = State(request.state)
    prepaid = request.charging_mode == "prePaid"
    if state == State.SUBMITTED:
        return "Order placed; the cloud is processing it" if prepaid else "The cloud accepted the job and is starting it"
    if Progress.of(request).order_paid or request.payment_by:
        return "Paid; the cloud is creating the servers"
    return "The cloud is creating the servers"


def progress_text(request: AppRequest) -> str | None:
    """Stage, servers ready, and time since the order (each reader's Slack counts it, so it moves)."""
    state = State(request.state)
    if state not in (State.SUBMITTED, State.AWAITING_PAYMENT, State.PROVISIONING):
        return None
    progress = Progress.of(request)
    parts = []
    if state == State.AWAITING_PAYMENT and progress.proxy_payment_at is not None:
        deadline = f" by {when(progress.payment_deadline)}" if progress.payment_deadline else ""
        parts.append(f":hourglass: Payment sent; order {code(request.order_id)} waits for the master account to pay "
                     f"it in the Billing Center{deadline}")
    elif state == State.AWAITING_PAYMENT:
        amount = charge_text(progress)
        deadline = f" by {when(progress.payment_deadline)}" if progress.payment_deadline else ""
        parts.append(f":credit_card: Order {code(request.order_id)} waits for an approver to pay"
                     + (f" {amount}" if amount else "") + deadline)
    else:
        parts.append(f":gear: {stage_text(request)}")
        if progress.ready or request.charging_mode != "prePaid":
            parts.append(f"`{progress.bar()}`")
    if request.submitted_at:
        parts.append(f"ordered {_ago(request.submitted_at)}")
    if progress.expected_end:
        parts.append(f"expected end {when(progress.expected_end)}")
    return " · ".join(parts)


def cancel_button(request: AppRequest) -> ButtonElement:
    return ButtonElement(text="Cancel request", action_id=Action.CANCEL.value, value=request.id,
                         confirm=ConfirmObject(title="Cancel this request?", text=(
                             f"{request.id} ({what_is_ordered(spec_of(request))}) is withdrawn; nothing is ordered.")[:300],
                             confirm="Cancel it", deny="Keep it"))


def order_again_button(request: AppRequest) -> ButtonElement:
    return ButtonElement(text="Order again", action_id=Action.ORDER_AGAIN.value, value=request.id)


def request_buttons(request: AppRequest) -> ActionsBlock | None:
    """The requester's buttons for the state: cancel while nothing is ordered, order again once it ended."""
    state = State(request.state)
    if state in CANCELLABLE:
        return ActionsBlock(block_id=f"mine:{request.id}", elements=[cancel_button(request)])
    if state in ORDER_AGAIN_STATES:
        return ActionsBlock(block_id=f"again:{request.id}", elements=[order_again_button(request)])
    return None


def headline(request: AppRequest, names: Names) -> str:
    spec = spec_of(request)
    return f"{mention(request.requester_id)} asks for {what_is_ordered(spec)} in *{group_words(request, names)}*"


def reason_text(request: AppRequest) -> str:
    reason = (request.reason or "").strip()
    if not reason:
        return "_No reason given._"
    return "\n".join(f">{escape_mrkdwn(line)}" for line in reason.splitlines()[:20])[:2900]


def request_message(request: AppRequest, *, sandbox: bool, names: Names = NO_NAMES, links: Links = NO_LINKS,
                    approval_channel: str | None = None) -> Message:
    """The request's own message, the head of its thread; edited in place as things change."""
    spec = spec_of(request)
    state = State(request.state)
    blocks: list[SlackBlock] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    status = status_line(request)
    if state == State.PENDING_APPROVAL:
        where = link(links.card, "the approval card") if links.card else (
            f"<#{approval_channel}>" if approval_channel else "the approvers' App Home")
        status += f"\nAn approver decides in {where}; you'll hear here."
    blocks.append(SectionBlock(text=_md(f"*{request.id}*: {headline(request, names)}\n{status}")))
    if request.reason:
        blocks.append(SectionBlock(text=_md(reason_text(request))))
    blocks.append(SectionBlock(fields=spec_fields(spec, names)))
    if price := price_text(request, names):
        blocks.append(ContextBlock(elements=[_md(price)]))
    if progress := progress_text(request):
        blocks.append(ContextBlock(elements=[_md(progress)]))
    if servers := servers_text(request, names):
        blocks.append(SectionBlock(text=_md(f"*Servers*\n{servers}")))
    if state == State.PARTLY_DONE:
        blocks.append(SectionBlock(text=_md(f":large_yellow_circle: {partial_text(request, names)}")))
    elif request.outcome_sentence and state not in (State.SUCCEEDED,):
        blocks.append(SectionBlock(text=_md(escape_mrkdwn(request.outcome_sentence))))
    if buttons := request_buttons(request):
        blocks.append(buttons)
    blocks.append(ids_context(request, spec))
    prefix = "[SANDBOX] " if sandbox else ""
    text = f"{prefix}{request.id}: {what_is_ordered(spec)} · {LABELS[state]}"
    return Message(text, [b.to_dict() for b in blocks])


def card_header(request: AppRequest, names: Names) -> str:
    spec = spec_of(request)
    group = f" · {names.group}" if names.group else ""
    return f"{what_is_ordered(spec)}{group}"[:150]


def approval_card(request: AppRequest, *, sandbox: bool, quota: str | None, names: Names = NO_NAMES,
                  links: Links = NO_LINKS, approvers: Sequence[str] = ()) -> Message:
    """The approvers' message about a request, in words: who asks, why, for what, at what price. It follows
    the request to its end, with the buttons that fit its state (decide, pay, say which order is ours)."""
    spec = spec_of(request)
    state = State(request.state)
    blocks: list[SlackBlock] = [HeaderBlock(text=PlainTextObject(text=card_header(request, names)))]
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    who = mentions(approvers)
    ask = f"{who}: " if who and state == State.PENDING_APPROVAL else ""
    # The header says what and where: this says who asks, and why.
    blocks.append(SectionBlock(text=_md(f"{ask}*{mention(request.requester_id)} asks:*\n{reason_text(request)}")))
    blocks.append(SectionBlock(fields=spec_fields(spec, names)))
    if price := price_text(request, names):
        blocks.append(SectionBlock(text=_md(price)))
    blocks.append(SectionBlock(text=_md(status_line(request))))
    if state == State.PENDING_APPROVAL:
        if why := approval_reason(request):
            blocks.append(ContextBlock(elements=[_md(why)]))
        blocks.append(ActionsBlock(block_id=f"decide:{request.id}", elements=[
            approve_button(request), ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id,
                                                   style="danger")]))
    elif state == State.AWAITING_PAYMENT and request.order_id:
        blocks.append(SectionBlock(text=_md(payment_sentence(request))))
        if Progress.of(request).proxy_payment_at is None:
            blocks.append(ActionsBlock(block_id=f"pay:{request.id}", elements=[pay_button(request)]))
    elif state == State.NEEDS_ATTENTION:
        blocks.extend(attention_blocks(request, with_buttons=True))
    elif state in (State.SUBMITTED, State.PROVISIONING):
        if request.payment_by:
            blocks.append(ContextBlock(elements=[_md(f":credit_card: {_paid(request)}.")]))
        if progress := progress_text(request):
            blocks.append(ContextBlock(elements=[_md(progress)]))
    elif state in FINAL_STATES and (state not in (State.REJECTED, State.EXPIRED, State.CANCELLED)
                                    or (state == State.CANCELLED and request.outcome_sentence)):
        blocks.append(SectionBlock(text=_md(outcome_text(request, sandbox=False, names=names))))
    notes = [f":bar_chart: {quota or 'Quota not checked.'}"]
    if links.thread:
        notes.append(link(links.thread, "The requester's thread"))
    blocks.append(ContextBlock(elements=[_md(" · ".join(notes))]))
    blocks.append(ids_context(request, spec))
    prefix = "[SANDBOX] " if sandbox else ""
    pinged = f"{who}: " if who else ""
    if state == State.PENDING_APPROVAL:
        quote = quote_of(request)
        cost = f", est. {quote.money(quote.final_amount)}{' an hour' if quote.basis == 'hour' else ''}" \
            if quote and quote.ok and quote.final_amount is not None else (", no price estimate" if quote else "")
        group = f" in {names.group}" if names.group else ""
        text = (f"{prefix}{pinged}Approval needed: {what_is_ordered(spec)}{group}{cost}, asked by "
                f"{mention(request.requester_id)} ({request.id})")
    elif state == State.AWAITING_PAYMENT and Progress.of(request).proxy_payment_at is not None:
        text = f"{prefix}{request.id}: the payment of order {request.order_id} waits for the master account"
    elif state == State.AWAITING_PAYMENT:
        amount = charge_text(Progress.of(request))
        text = f"{prefix}{pinged}{request.id}: order {request.order_id} waits for payment" + \
            (f" of {amount}" if amount else "")
    elif state == State.NEEDS_ATTENTION:
        text = f"{prefix}{pinged}{request.id} needs an approver: the outcome of its order is unknown"
    else:
        text = f"{prefix}{request.id}: {LABELS[state]}"
    return Message(text, [b.to_dict() for b in blocks])


def approval_reason(request: AppRequest) -> str | None:
    """Why a person decides the request: the guardrail that applied when it was submitted."""
    rule = Progress.of(request).approval_rule
    return f":raised_hand: An approver decides this request: {rule}." if rule else None


def approve_button(request: AppRequest) -> ButtonElement:
    """Approve, with the confirmation that says what approving does with money (the card and App Home alike)."""
    return ButtonElement(text="Approve", action_id=Action.APPROVE.value, value=button_value(request), style="primary",
                         confirm=ConfirmObject(title="Approve this order?",
                                               text=approve_confirmation(request, spec_of(request)),
                                               confirm="Approve", deny="Back"))


def approve_confirmation(request: AppRequest, spec: dict[str, Any]) -> str:
    """What approving does with money: ordering, and whether anything is charged now."""
    quote = quote_of(request)
    estimate = f" (estimated {quote.money(quote.final_amount)}{' an hour' if quote.basis == 'hour' else ''})" \
        if quote and quote.ok and quote.final_amount is not None else " (no price estimate)"
    head = f"The bot orders {what_is_ordered(spec)}{estimate}."
    if (spec.get("create_server_extend_param") or {}).get("charging_mode") != "prePaid":
        return head + " Pay-per-use servers are billed by the hour once they exist."
    if _auto_pay(spec):
        return head + (" Auto-pay is on: the cloud account is charged when the order is placed, and billing applies "
                       "the commercial discount itself.")
    return head + " Nothing is charged yet: the order then waits for an approver to pay it."


def payment_reply(request: AppRequest, *, sandbox: bool, approvers: Sequence[str], for_approvers: bool,
                  approval_channel: str | None) -> str:
    """Who must do what about an order waiting for payment: the approvers (pinged) or the requester (told)."""
    prefix = "[SANDBOX] " if sandbox else ""
    progress = Progress.of(request)
    amount = charge_text(progress) or "its amount"
    deadline = f" by {when(progress.payment_deadline)}" if progress.payment_deadline else ""
    if for_approvers:
        who = mentions(approvers) or "Approvers"
        return (f"{prefix}{who}: {request.id} ({what_is_ordered(spec_of(request))}, from {mention(request.requester_id)}) "
                f"needs payment: *{amount}*{deadline}, order {code(request.order_id)}. {discount_sentence(progress)}"
                f"{estimate_gap(request)} Pay with the button on the card above, or in the Billing Center.")
    where = f" in <#{approval_channel}>" if approval_channel else " from the app's Home tab"
    return (f"{prefix}{payment_sentence(request)} An approver pays it{where}; it is paid from the company's cloud "
            "account, so you can't pay it yourself. You'll hear here when it is paid.")


def _paid(request: AppRequest) -> str:
    progress = Progress.of(request)
    charged = progress.charged_amount if progress.charged_amount is not None else progress.to_charge()
    amount = money(charged, progress.order_currency) if charged is not None else None
    who = mention(request.payment_by) if request.payment_by else "An approver"
    paid = f"{who} paid " + (f"{amount} for " if amount else "") + f"order {code(request.order_id)}"
    if progress.proxy_payment_at is not None:
        # Billing says it is paid now (the master account paid the proxy order): said as billing shows it.
        paid = f"Billing now shows order {code(request.order_id)} paid" + (f", {amount}," if amount else "") + \
            f" (sent by {who})"
    return paid + (f" with {progress.charged_with}" if progress.charged_with else "")


def paid_reply(request: AppRequest, *, sandbox: bool) -> str:
    prefix = "[SANDBOX] " if sandbox else ""
    return f"{prefix}:credit_card: {_paid(request)}. The cloud is creating the servers now."


def payment_waits_reply(request: AppRequest, *, sandbox: bool) -> str:
    """Pay answered, but billing shows the order unpaid: the payment waits for the master account."""
    return ("[SANDBOX] " if sandbox else "") + proxy_sentence(request)


def payment_remind_text(request: AppRequest, *, sandbox: bool, approvers: Sequence[str]) -> str:
    """Approvers, before the deadline of an order whose payment still waits for the master account."""
    progress = Progress.of(request)
    who = mentions(approvers) or "Approvers"
    deadline = when(progress.payment_deadline)
    return (f"{'[SANDBOX] ' if sandbox else ''}:bell: {who}: the payment of order {code(request.order_id)} "
            f"({request.id}, {what_is_ordered(spec_of(request))}) still waits for the master account; unpaid, the order "
            f"lapses {deadline} and nothing is created. Ask the master account to pay it in the Billing Center.")


def _candidate_line(request: AppRequest, candidate: Candidate) -> str:
    line = f"• {escape_mrkdwn(candidate.detail)}"
    quote = quote_of(request)
    if candidate.amount is not None and quote and quote.ok and quote.final_amount is not None and \
            abs(candidate.amount - quote.final_amount) < CENT:
        line += " (the same amount as this request's estimate)"
    return line


def attention_blocks(request: AppRequest, *, with_buttons: bool) -> list[SlackBlock]:
    """For approvers: what the bot found after an unknown create, and the choice it needs from them."""
    candidates = Candidates.of(request)
    head = (":warning: The cloud did not confirm this order, so the bot cannot tell whether it went through, "
            "and it will not send it again by itself.")
    if request.lookup_found:
        what = f"It found what the order created and follows it: {_ids_text(request) or 'see the audit log'}"
        what += f" (job {code(request.job_id)})." if request.job_id else (
            f" (order {code(request.order_id)})." if request.order_id else ".")
    elif candidates.items:
        count = len(candidates.items)
        kind = ("order" if candidates.items[0].kind == "order" else "job") + ("" if count == 1 else "s")
        if candidates.items[0].fits:
            what = (f"{count} {kind} placed at that time {'matches' if count == 1 else 'match'} this request, so the "
                    "bot will not guess "
                    "which is ours. Pick ours (an order then waits for payment as usual), or choose *None of these*. "
                    "Nothing is paid until an approver pays it.")
        else:
            what = ("The cloud shows something placed at that time that does not match this request exactly (below). "
                    "If none of it is ours, choose *None of these*; the order may then be sent again.")
    elif candidates.create_answered:
        what = "The cloud did answer this order, with something another request holds, so it is never sent again."
    elif request.lookup_found is False:
        what = "The bot found nothing created by it. An approver may send it again once sure."
    else:
        what = "The bot is looking for what was created."
    blocks: list[SlackBlock] = [SectionBlock(text=_md(f"{head}\n{what}"))]
    if candidates.link_refused:
        blocks.append(SectionBlock(text=_md(f":no_entry: Not linked: {escape_mrkdwn(candidates.link_refused)}")))
    elif request.last_error:
        blocks.append(ContextBlock(elements=[_md(f"What the cloud said: {escape_mrkdwn(request.last_error)}")]))
    for candidate in candidates.items if not request.lookup_found else []:
        section = SectionBlock(text=_md(_candidate_line(request, candidate)))
        if with_buttons:
            cost = f" ({money(candidate.amount, candidate.currency)})" if candidate.amount is not None else ""
            follow = "It then waits for an approver to pay it." if candidate.kind == "order" else \
                "The bot then follows its servers."
            section.accessory = ButtonElement(
                text="This one is ours", action_id=Action.CHOOSE_CANDIDATE.value,
                value=choice_value(request, candidate.id),
                confirm=ConfirmObject(title="Is this ours?", text=(
                    f"Link {candidate.kind} {candidate.id}{cost} to {request.id}? {follow} If it is someone else's, "
                    "we would pay for their servers.")[:300], confirm="It is ours", deny="Back"))
        blocks.append(section)
    if with_buttons and candidates.items and not request.lookup_found:
        blocks.append(ActionsBlock(block_id=f"candidates:{request.id}", elements=[
            ButtonElement(text="None of these", action_id=Action.NO_CANDIDATE.value, value=choice_value(request),
                          confirm=ConfirmObject(title="None of these is ours?", text="The bot will not link or pay "
                                                "any of them. It looks once more before the order may be sent again.",
                                                confirm="None is ours", deny="Back"))]))
    resendable = not candidates.items and request.lookup_found is False and not candidates.create_answered
    if resendable and (sendable := resend_from_text(request)) is not None:
        blocks.append(ContextBlock(elements=[_md(sendable)]))
    if with_buttons and resendable:
        blocks.append(ActionsBlock(block_id=f"retry:{request.id}", elements=[
            ButtonElement(text="Send again", action_id=Action.RETRY.value, value=request.id,
                          confirm=ConfirmObject(title="Send the order again?", text="The bot looks at the cloud once "
                                                "more first, and refuses if anything from this request shows up.",
                                                confirm="Send again", deny="Back"))]))
    return blocks


def resend_from_text(request: AppRequest) -> str | None:
    """From when Send again can be used: once the time in which the first try could still show up in the cloud
    has passed (a look then must find nothing)."""
    since = Candidates.of(request).resend_from
    if since is None:
        return None
    if since <= utcnow():
        return (f"*Send again* can be used: the time in which the first try could show up in the cloud ended "
                f"{when(since)}. The bot looks once more when it is clicked.")
    return (f":hourglass_flowing_sand: *Send again* can be used from {when(since)}: until then, what the first try "
            "made may still show up in the cloud. The bot looks once more when it is clicked.")


def resend_refusal(request: AppRequest) -> str | None:
    """The answer to a Send again clicked too early, in the reader's time zone (None when no look recorded when)."""
    since = Candidates.of(request).resend_from
    if since is None:
        return None
    return (f"{request.id} can be sent again from {when(since)}: until then, what the first try made may still show "
            "up in the cloud. Nothing was sent.")


def attention_message(request: AppRequest, *, sandbox: bool) -> Message:
    """For the requester's thread: what happened and that approvers handle it (not other people's orders)."""
    if request.lookup_found:
        text = (":warning: The cloud did not confirm your order at first, but the bot found what it created and "
                "follows it here.")
    else:
        text = (":warning: The cloud did not confirm your order, so an approver is checking whether it went through. "
                "Nothing for you to do; please don't submit it again. You'll hear here when it is settled.")
    blocks: list[SlackBlock] = [SectionBlock(text=_md(text))]
    if sandbox:
        blocks.insert(0, ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    return Message(("[SANDBOX] " if sandbox else "") + f"{request.id} needs attention: " + text.removeprefix(":warning: "),
                   [b.to_dict() for b in blocks])


def missing_servers(request: AppRequest) -> int:
    """How many of the servers asked for were not created (what Order again offers after a partial result)."""
    return max(request.subscription_num - len(server_ids(request)), 0)


def partial_text(request: AppRequest, names: Names = NO_NAMES) -> str:
    """The partial result in words: "Partly done: 2 of 3 servers created (names); 1 failed to open and ..."."""
    count = len(server_ids(request))
    servers = servers_text(request, names)
    made = "servers created" if request.job_id is None else "ready"
    failed = escape_mrkdwn(request.outcome_sentence or f"{missing_servers(request)} failed.")
    return f"Partly done: {count} of {request.subscription_num} {made}" + (f" ({servers})" if servers else "") + \
        f"; {failed}"


def outcome_text(request: AppRequest, *, sandbox: bool, names: Names = NO_NAMES) -> str:
    """The final word in one line (the card, the fallback text of the replies)."""
    state = State(request.state)
    prefix = "[SANDBOX] " if sandbox else ""
    if state == State.SUCCEEDED:
        servers = servers_text(request, names)
        count = len(server_ids(request))
        paid = f" ({_paid(request)})" if request.payment_by else ""
        return f"{prefix}:large_green_circle: {request.id} is done: {count} app server{'' if count == 1 else 's'} " \
               f"created" + paid + (f": {servers}" if servers else ".")
    if state == State.PARTLY_DONE:
        return f"{prefix}:large_yellow_circle: {request.id}: {partial_text(request, names)}"
    if state == State.REJECTED:
        return (f"{prefix}:no_entry: {request.id} was rejected by {mention(request.decided_by)}: "
                f"{escape_mrkdwn(request.decision_reason)}")
    if state == State.EXPIRED:
        return f"{prefix}:alarm_clock: {request.id} expired without a decision; nothing was ordered."
    if state == State.CANCELLED:
        why = f" {escape_mrkdwn(request.outcome_sentence)}" if request.outcome_sentence else ""  # an operator's
        return f"{prefix}:heavy_multiplication_x: {request.id} was cancelled; nothing was ordered.{why}"
    sentence = escape_mrkdwn(request.outcome_sentence or "The cloud gave no reason.")
    servers = servers_text(request, names)
    extra = f" Servers that were created: {servers}." if servers else ""
    return f"{prefix}:red_circle: {request.id} failed. {sentence}{extra}"


def console_line(links: Links) -> str | None:
    return f":desktop_computer: {link(links.console, 'Open the Workspace console')}" if links.console else None


def final_reply(request: AppRequest, *, sandbox: bool, names: Names = NO_NAMES, links: Links = NO_LINKS) -> Message:
    """The requester's last reply in the thread: the outcome with the servers by name, where to see them,
    and the way to ask for the same again. The requester is mentioned, so this one reply reaches them."""
    text = outcome_text(request, sandbox=sandbox, names=names)
    state = State(request.state)
    head = f"{mention(request.requester_id)} {text}"
    if state == State.PARTLY_DONE:
        head = (f"{'[SANDBOX] ' if sandbox else ''}:large_yellow_circle: {mention(request.requester_id)} "
                f"{partial_text(request, names)}")
    if state == State.SUCCEEDED:
        count = len(server_ids(request))
        servers = servers_text(request, names)
        head = (f"{'[SANDBOX] ' if sandbox else ''}:large_green_circle: {mention(request.requester_id)} your {count} app "
                f"server{'' if count == 1 else 's'} in *{group_words(request, names)}* "
                f"{'is' if count == 1 else 'are'} ready" + (f": {servers}" if servers else "."))
    blocks: list[SlackBlock] = [SectionBlock(text=_md(head))]
    notes = []
    if state in (State.SUCCEEDED, State.PARTLY_DONE) and (line := console_line(links)):
        notes.append(line)
    if state == State.PARTLY_DONE:
        missing = missing_servers(request)
        notes.append(f"Order again asks for the {missing} missing server{'' if missing == 1 else 's'}.")
    if state == State.EXPIRED:
        notes.append("No approver decided in time. Order again to ask once more.")
    if notes:
        blocks.append(ContextBlock(elements=[_md(n) for n in notes]))
    if state in ORDER_AGAIN_STATES:
        blocks.append(ActionsBlock(block_id=f"again-reply:{request.id}", elements=[order_again_button(request)]))
    return Message(text, [b.to_dict() for b in blocks])


def outcome_message(request: AppRequest, *, sandbox: bool, names: Names = NO_NAMES, links: Links = NO_LINKS) -> Message:
    """For NOTIFY_CHANNEL: what was created (or failed), for whom, approved by whom, where to read more."""
    text = outcome_text(request, sandbox=sandbox, names=names)
    spec = spec_of(request)
    approved = mention(request.decided_by) if request.decided_by else "automatically (within the guardrails)"
    count = len(server_ids(request))
    fields = [_md(f"*Asked by*\n{mention(request.requester_id)}"), _md(f"*Approved by*\n{approved}"),
              _md(f"*Server group*\n{group_words(request, names)}"),
              _md(f"*Servers*\n{count} of {spec.get('subscription_num')} created")]
    blocks: list[SlackBlock] = [SectionBlock(text=_md(text)), SectionBlock(fields=fields)]
    notes = [link(links.thread, "The request's thread")] if links.thread else []
    if State(request.state) in (State.SUCCEEDED, State.PARTLY_DONE) and (line := console_line(links)):
        notes.append(line)
    if notes:
        blocks.append(ContextBlock(elements=[_md(" · ".join(notes))]))
    return Message(text, [b.to_dict() for b in blocks])


def outcome_line(request: AppRequest, *, sandbox: bool, names: Names = NO_NAMES, links: Links = NO_LINKS) -> str:
    """A request's outcome as one line of a digest: the final word, whom it is for, where its thread is."""
    where = f" · {link(links.thread, 'thread')}" if links.thread else ""
    return f"{mention(request.requester_id)} {outcome_text(request, sandbox=sandbox, names=names)}{where}"


DIGEST_MOST = 20  # lines in one digest: a few thousand characters, well within a message's limits


def digest_message(lines: Sequence[str], *, sandbox: bool) -> Message:
    """Several outcomes for one channel in one message. Slack takes about one post a second per channel, so when
    many requests end together their outcomes share posts instead of queueing for minutes; each line mentions
    its requester, so each is still notified, and the thread's head shows the outcome too."""
    header = f"{'[SANDBOX] ' if sandbox else ''}{len(lines)} requests finished:"
    blocks: list[SlackBlock] = [SectionBlock(text=_md(f"*{header}*"))]
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(c) + 1 for c in chunk) + len(line) > 2900:  # a section holds 3,000 characters
            blocks.append(SectionBlock(text=_md("\n".join(chunk))))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(SectionBlock(text=_md("\n".join(chunk))))
    return Message("\n".join([header, *lines])[:4000], [b.to_dict() for b in blocks])


def decision_reply(request: AppRequest, *, sandbox: bool) -> str | None:
    """The one reply an approval gets in the requester's thread (a rejection's is its `final_reply`)."""
    if not request.decided_by or State(request.state) in (State.PENDING_APPROVAL, State.REJECTED, State.EXPIRED,
                                                          State.CANCELLED):
        return None
    prefix = "[SANDBOX] " if sandbox else ""
    at = f" {when(request.decided_at)}" if request.decided_at else ""
    return f"{prefix}:white_check_mark: {mention(request.requester_id)}: {mention(request.decided_by)} approved " \
           f"{request.id}{at}. It is being ordered; this thread shows how it goes."


def expiring_message(request: AppRequest, *, sandbox: bool, links: Links = NO_LINKS) -> Message:
    """The requester, shortly before their request expires undecided."""
    prefix = "[SANDBOX] " if sandbox else ""
    card = f" ({link(links.card, 'the approval card')})" if links.card else ""
    text = (f"{prefix}:alarm_clock: {mention(request.requester_id)} no approver has decided on {request.id} yet{card}; "
            f"it expires {when(request.expires_at)} and nothing is ordered then. You may ask an approver, or cancel it.")
    blocks = [SectionBlock(text=_md(text)),
              ActionsBlock(block_id=f"expiring:{request.id}", elements=[cancel_button(request)])]
    return Message(text, [b.to_dict() for b in blocks])


def expiry_warning_closed(request: AppRequest, *, sandbox: bool) -> Message:
    """The expiry warning once the request can no longer be cancelled: where it stands, and no button."""
    prefix = "[SANDBOX] " if sandbox else ""
    text = f"{prefix}{request.id} can no longer be cancelled: {status_line(request)}"
    return Message(text, [SectionBlock(text=_md(text)).to_dict()])


def trouble_text(request: AppRequest, *, sandbox: bool) -> str:
    prefix = "[SANDBOX] " if sandbox else ""
    why = escape_mrkdwn(request.last_error or "the cloud refused")
    return (f"{prefix}:warning: The bot cannot follow {request.id} right now: {why} "
            "It keeps trying, less often; an administrator needs to fix this.")


def home_view(mine: list[AppRequest], pending: list[AppRequest], *, approver: bool, sandbox: bool,
              to_pay: Sequence[AppRequest] = (), attention: Sequence[AppRequest] = (),
              names: Mapping[str, Names] | None = None) -> View:
    named = names or {}
    blocks: list[SlackBlock] = [HeaderBlock(text=PlainTextObject(text="App servers"))]
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_NOTE)]))
    blocks.append(SectionBlock(text=_md("Ask for app servers with the button, or type `/appserver create` "
                                        "(`/appserver help` for more).")))
    blocks.append(ActionsBlock(block_id="home-new", elements=[
        ButtonElement(text="New request", action_id=Action.NEW_REQUEST.value, value="new", style="primary")]))
    blocks.append(HeaderBlock(text=PlainTextObject(text="My recent requests")))
    if not mine:
        blocks.append(SectionBlock(text=_md("_None yet._")))
    for request in mine[:15]:
        of = named.get(request.id, NO_NAMES)
        line = f"*{request.id}* · {what_is_ordered(spec_of(request))} in {group_words(request, of)}\n{status_line(request)}"
        if servers := servers_text(request, of):
            line += f"\nServers: {servers}"
        section = SectionBlock(text=_md(line))
        if State(request.state) in CANCELLABLE:
            section.accessory = cancel_button(request)
        elif State(request.state) in ORDER_AGAIN_STATES:
            section.accessory = order_again_button(request)
        blocks.append(section)
    if approver:
        blocks.append(DividerBlock())
        blocks.append(HeaderBlock(text=PlainTextObject(text="Waiting for me")))
        if not (pending or to_pay or attention):
            blocks.append(SectionBlock(text=_md("_Nothing waits for you._")))
        for request in to_pay[:10]:
            blocks.append(SectionBlock(text=_md(f"*{request.id}*: {headline(request, named.get(request.id, NO_NAMES))}"
                                                f"\n{payment_sentence(request)}")))
            if Progress.of(request).proxy_payment_at is None:
                blocks.append(ActionsBlock(block_id=f"home-pay:{request.id}", elements=[pay_button(request)]))
        for request in attention[:5]:
            blocks.append(SectionBlock(text=_md(f"*{request.id}* from {mention(request.requester_id)} needs attention")))
            blocks.extend(attention_blocks(request, with_buttons=True))
        for request in pending[:10]:  # what the card shows, with its buttons
            of = named.get(request.id, NO_NAMES)
            blocks.append(SectionBlock(text=_md(f"*{request.id}*: {headline(request, of)}\n{reason_text(request)}")))
            blocks.append(SectionBlock(fields=spec_fields(spec_of(request), of)))
            if price := price_text(request, of):
                blocks.append(ContextBlock(elements=[_md(price)]))
            blocks.append(ContextBlock(elements=[_md(status_line(request))]))
            if why := approval_reason(request):
                blocks.append(ContextBlock(elements=[_md(why)]))
            blocks.append(ActionsBlock(block_id=f"home:{request.id}", elements=[
                approve_button(request),
                ButtonElement(text="Reject", action_id=Action.REJECT.value, value=request.id, style="danger")]))
    return View(type="home", blocks=blocks[:100])
