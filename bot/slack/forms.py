"""The create modal: its context, building it with slack_sdk's Block Kit models, reading what was typed.

Pure functions: data in, views and request bodies out. The handlers do the I/O.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError
from slack_sdk.models.blocks import (
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    ExternalDataSelectElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.blocks.blocks import Block as SlackBlock
from slack_sdk.models.views import View

from bot.cloud.models import AvailabilityZone, ProductInfo, ServerGroup, VolumeType
from bot.digits import ascii_int, quoted
from bot.policy import Guardrails
from bot.slack.ids import Action, Block, Callback, block_for
from bot.slack.text import code, escape_mrkdwn
from bot.spec import DISK_TYPES, PERIOD_LIMITS, PERIOD_MONTH, PERIOD_YEAR

STATIC_SELECT_LIMIT = 100
OPTION_TEXT_LIMIT = 75  # an option's text and its description, each
HINT_LIMIT = 2000  # an input block's hint
REASON_LIMIT = 500
AUTO_ZONE = "auto"
PREPAID = "prePaid"
POSTPAID = "postPaid"
BILLING_NAMES = {PREPAID: "yearly/monthly", POSTPAID: "pay-per-use"}


class ModalContext(BaseModel):
    """What the modal remembers between requests (its private_metadata, at most 3000 characters)."""

    channel_id: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    subnet_id: str | None = None
    subnet_name: str | None = None
    subnet_cidr: str | None = None
    vpc_id: str | None = None
    ou_name: str | None = None
    os_type: str | None = None
    flavor_id: str | None = None  # the group's flavor: of the group's product, and sent only with that product
    flavor_product_id: str | None = None
    image_product_id: str | None = None  # the group's image is a Marketplace product (its fee is not estimated)
    network_error: str | None = None

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, metadata: str | None) -> ModalContext:
        try:
            return cls.model_validate_json(metadata or "{}")
        except ValidationError:
            return cls()


class FormValues(BaseModel):
    group_id: str | None = None
    availability_zone: str | None = None
    product_id: str | None = None
    disk_type: str | None = None
    disk_size: str | None = None
    count: str | None = None
    billing: str = POSTPAID
    period_unit: str | None = None
    period_num: str | None = None
    auto_renew: bool = False
    auto_pay: bool = False
    update_agent: bool = False
    dedicated_host: str | None = None
    reason: str | None = None


@dataclass
class Catalogue:
    groups: list[ServerGroup] = field(default_factory=list)
    zones: list[AvailabilityZone] = field(default_factory=list)
    products: list[ProductInfo] = field(default_factory=list)
    volume_types: list[VolumeType] = field(default_factory=list)

    def group(self, group_id: str | None) -> ServerGroup | None:
        return next((g for g in self.groups if g.id == group_id), None)


@dataclass(frozen=True)
class ApprovalRules:
    """When a request waits for an approver, as far as the form can tell before it is priced; `bot.policy`
    decides at submission. The defaults know only that yearly/monthly orders always wait."""

    postpaid_always: bool = False  # POSTPAID_REQUIRES_APPROVAL
    max_servers: int | None = None  # AUTO_APPROVE_MAX_SERVERS
    max_monthly_cost: Decimal | None = None  # AUTO_APPROVE_MAX_MONTHLY_COST

    @classmethod
    def from_guardrails(cls, guardrails: Guardrails, *, postpaid_requires_approval: bool) -> ApprovalRules:
        return cls(postpaid_requires_approval, guardrails.auto_approve_max_servers,
                   guardrails.auto_approve_max_monthly_cost)

    def always(self, billing: str) -> bool:
        """Every request with this billing waits for an approver: the form itself requires the reason."""
        return billing == PREPAID or self.postpaid_always or self.max_servers == 0

    def reason_hint(self, billing: str) -> str:
        if billing == PREPAID:
            return "An approver reads this first: yearly/monthly orders always wait for one."
        if self.always(billing):
            return "An approver reads this first: every request waits for one."
        when = ([f"more than {self.max_servers} servers"] if self.max_servers is not None else []) + (
            [f"above {self.max_monthly_cost} a month (estimated)"] if self.max_monthly_cost is not None else [])
        return f"Needed when an approver decides: {', or '.join(when)}." if when else \
            "Needed when the request waits for an approver."


# Reading what was typed ---------------------------------------------------------------------------


def _element(values: dict[str, Any], block: Block) -> dict[str, Any]:
    """The one element's state in a block, whatever its action_id; {} when absent or malformed."""
    actions = values.get(block.value)
    if not isinstance(actions, dict):
        return {}
    element: Any = next(iter(actions.values()), {})
    return element if isinstance(element, dict) else {}


def _text(values: dict[str, Any], block: Block) -> str | None:
    element = _element(values, block)
    value = element.get("value")
    if value is None:
        selected = element.get("selected_option")
        value = selected.get("value") if isinstance(selected, dict) else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _checked(values: dict[str, Any], block: Block) -> set[str]:
    selected = _element(values, block).get("selected_options")
    if not isinstance(selected, list):
        return set()
    return {str(o.get("value")) for o in selected if isinstance(o, dict)}


def read_form(state_values: Any) -> FormValues:
    values = state_values if isinstance(state_values, dict) else {}
    prepaid_options = _checked(values, Block.PREPAID_OPTIONS)
    return FormValues(
        group_id=_text(values, Block.GROUP),
        availability_zone=_text(values, Block.AZ),
        product_id=_text(values, Block.PRODUCT),
        disk_type=_text(values, Block.DISK_TYPE),
        disk_size=_text(values, Block.DISK_SIZE),
        count=_text(values, Block.COUNT),
        billing=_text(values, Block.BILLING) or POSTPAID,
        period_unit=_text(values, Block.PERIOD_UNIT),
        period_num=_text(values, Block.PERIOD_NUM),
        auto_renew="auto_renew" in prepaid_options,
        auto_pay="auto_pay" in prepaid_options,
        update_agent="update_agent" in _checked(values, Block.AGENT),
        dedicated_host=_text(values, Block.DEDICATED_HOST),
        reason=_text(values, Block.REASON),
    )


def product_flavor(product_id: str | None, context: ModalContext, products: Sequence[ProductInfo] = ()) -> str | None:
    """The flavor that belongs to the chosen product (ListProduct's), or none: never the group's flavor for
    another product, which would order one product at the price of another."""
    listed = next((p for p in products if p.product_id == product_id), None)
    if listed is not None:
        return listed.flavor_id
    if product_id and product_id == context.flavor_product_id:
        return context.flavor_id
    return None


def spec_body(form: FormValues, context: ModalContext, products: Sequence[ProductInfo] = ()) -> dict[str, Any]:
    """The CreateAppServers body the form describes; `bot.spec.parse_spec` judges it. `products` is the
    catalogue's ListProduct, where the chosen product's flavor is found."""
    body: dict[str, Any] = {
        "server_group_id": form.group_id,
        "subscription_num": form.count,
        "product_id": form.product_id,
        "flavor_id": product_flavor(form.product_id, context, products),
        "root_volume": {"type": form.disk_type, "size": form.disk_size},
        "subnet_id": context.subnet_id,
        "vpc_id": context.vpc_id,
        "os_type": context.os_type if context.os_type == "Windows" else None,
        "ou_name": context.ou_name,
    }
    if form.availability_zone and form.availability_zone != AUTO_ZONE:
        body["availability_zone"] = form.availability_zone
    if form.update_agent:
        body["update_access_agent"] = True
    if form.billing == PREPAID:
        body["create_server_extend_param"] = {
            "charging_mode": PREPAID,
            "period_type": int(form.period_unit) if form.period_unit in ("2", "3") else form.period_unit,
            "period_num": form.period_num,
            "is_auto_renew": form.auto_renew,
            "is_auto_pay": form.auto_pay,
        }
    else:
        if form.billing != POSTPAID:
            body["create_server_extend_param"] = {"charging_mode": form.billing}
        if form.dedicated_host:
            body["scheduler_hints"] = {"dedicated_host_id": form.dedicated_host, "tenancy": "dedicated"}
    return body


def modal_errors(field_errors: dict[str, str], form: FormValues, context: ModalContext) -> dict[str, str]:
    """Spec errors keyed by the input block that shows them (one sentence per block)."""
    errors: dict[str, str] = {}
    if form.group_id and form.group_id != context.group_id:
        errors[Block.GROUP.value] = "The server group's details are still loading; submit again in a moment."
    elif context.network_error and form.group_id:
        errors[Block.GROUP.value] = context.network_error
    for field_path, sentence in field_errors.items():
        block = block_for(field_path)
        if block is Block.GROUP and not form.group_id:
            sentence = "Choose a server group."
        errors.setdefault(block.value, sentence)
    if form.reason and len(form.reason) > REASON_LIMIT:  # the field stops typing there; a crafted submission may not
        errors[Block.REASON.value] = f"At most {REASON_LIMIT} characters, please; this is {len(form.reason)}."
    return errors


# Prefill from the command line ---------------------------------------------------------------------

PREFILL_KEYS = {
    "group": "group_id", "az": "availability_zone", "zone": "availability_zone", "product": "product_id",
    "disk_type": "disk_type", "disk": "disk_size", "disk_size": "disk_size", "count": "count", "servers": "count",
    "billing": "billing", "period_unit": "period_unit", "period": "period_num", "months": "period_num",
    "years": "period_num", "auto_pay": "auto_pay", "auto_renew": "auto_renew", "reason": "reason",
}
# Prefilled numbers: ASCII digits, a few of them (enough to be told "at most 20 per request").
PREFILL_DIGITS = {"count": 6, "disk_size": 6, "period_num": 3}
BILLING_WORDS = {"prepaid": PREPAID, "yearly": PREPAID, "monthly": PREPAID, "postpaid": POSTPAID,
                 "pay-per-use": POSTPAID, "payg": POSTPAID}


class PrefillError(ValueError):
    pass


def parse_prefill(text: str, catalogue_groups: list[ServerGroup] | None = None) -> FormValues:
    """`key=value …` after `/appserver create`; unknown keys are an error the user sees."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise PrefillError(f"I could not read that: {escape_mrkdwn(error)}.") from None
    data: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip().lower()
        if not sep or key not in PREFILL_KEYS:
            raise PrefillError(f"I don't know {code(word)}. Use key=value with one of: {', '.join(sorted(PREFILL_KEYS))}.")
        name = PREFILL_KEYS[key]
        if name in PREFILL_DIGITS and ascii_int(value, max_digits=PREFILL_DIGITS[name]) is None:
            raise PrefillError(f"{key}= takes a whole number in the digits 0-9, such as `{key}=3`; "
                               f"{code(quoted(value))} is not one.")
        if name == "billing":
            if value.lower() not in BILLING_WORDS:
                raise PrefillError("billing is `prepaid` (yearly/monthly) or `postpaid` (pay-per-use).")
            data[name] = BILLING_WORDS[value.lower()]
        elif name in ("auto_pay", "auto_renew"):
            data[name] = value.lower() in ("1", "true", "yes", "on")
        else:
            data[name] = value
        if key == "years":
            data["period_unit"] = str(PERIOD_YEAR)
        elif key == "months":
            data["period_unit"] = str(PERIOD_MONTH)
        elif key == "period_unit":
            data["period_unit"] = {"month": str(PERIOD_MONTH), "year": str(PERIOD_YEAR)}.get(value.lower(), value)
    if "period_num" in data or data.get("billing") == PREPAID:
        data.setdefault("billing", PREPAID)
    group = data.get("group_id")
    if group and catalogue_groups:
        by_name = {g.name: g.id for g in catalogue_groups if g.name}
        data["group_id"] = by_name.get(group, group)
    return FormValues(**data)


# Building the modal ----------------------------------------------------------------------------------


def _fit(text: str, limit: int = OPTION_TEXT_LIMIT) -> str:
    """Within Slack's limit for the text, cut with an ellipsis rather than without a sign."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str) -> PlainTextObject:
    return PlainTextObject(text=_fit(text), emoji=True)


def _hint(text: str) -> PlainTextObject:
    return PlainTextObject(text=_fit(text, HINT_LIMIT), emoji=True)


def _option(text: str, value: str, description: str | None = None) -> Option:
    return Option(text=_plain(text), value=value[:150],
                  description=PlainTextObject(text=_fit(description), emoji=False) if description else None)


def _pick(options: list[Option], value: str | None) -> Option | None:
    return next((o for o in options if o.value == value), None)


def group_option(group: ServerGroup) -> Option:
    servers = group.app_server_count
    count = "" if servers is None else f" · {servers} server" if servers == 1 else f" · {servers} servers"
    return _option(f"{group.name or group.id}{count}", group.id)


def _amount(number: str | None, unit: str) -> str | None:
    """ "8" vCPU → "8 vCPUs"; None when the cloud gave no number."""
    count = ascii_int(number, max_digits=6)
    if count is None:
        return None
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _gibibytes(megabytes: str | None) -> str | None:
    size = ascii_int(megabytes, max_digits=12)
    return None if size is None else f"{size / 1024:g} GiB"


def product_label(product: ProductInfo, billing: str | None = None) -> str:
    """The product in words, "8 vCPUs · 64 GiB · GPU 1 x NVIDIA T4 · yearly/monthly", with the billing chosen
    in the form, or none. Not the product's own `charge_mode`: the catalogue lists each product once."""
    words = [w for w in (_amount(product.cpu, "vCPU"), _gibibytes(product.memory)) if w]
    if product.is_gpu:
        gpu = product.gpu_desc or ""
        words.append(gpu if "gpu" in gpu.lower() else f"GPU {gpu}".strip())
    if not words:
        words = [product.descriptions or product.product_id or "Unnamed product"]
    if billing in BILLING_NAMES:
        words.append(BILLING_NAMES[billing])
    return " · ".join(words)


def product_option(product: ProductInfo, billing: str | None = None) -> Option:
    """The product in words; its id as the option's description (the line under it), whole."""
    return _option(product_label(product, billing), product.product_id or "", description=product.product_id)


def network_note(context: ModalContext) -> list[MarkdownTextObject]:
    """The group's network by name, its ids after: what a person recognises first, what support asks for next."""
    if context.network_error:
        return [MarkdownTextObject(text=f":globe_with_meridians: {escape_mrkdwn(context.network_error)}")]
    if not (context.subnet_id or context.vpc_id or context.ou_name):
        return [MarkdownTextObject(text=":globe_with_meridians: The group gives no network details.")]
    subnet = f"*{escape_mrkdwn(context.subnet_name)}*" if context.subnet_name else code(context.subnet_id or "?")
    cidr = f" ({escape_mrkdwn(context.subnet_cidr)})" if context.subnet_cidr else ""
    names = [f"Subnet {subnet}{cidr}"] if context.subnet_id else []
    if context.ou_name:  # usually a distinguished name, "OU=Apps,DC=corp,DC=example", which says what it is
        ou = escape_mrkdwn(context.ou_name)
        names.append(ou if context.ou_name.upper().startswith("OU=") else f"OU {ou}")
    note = [MarkdownTextObject(text=":globe_with_meridians: " + " · ".join(names or ["No subnet"]))]
    ids = [f"{kind} ID {escape_mrkdwn(value)}" for kind, value in (
        ("Subnet", context.subnet_id if context.subnet_name else None), ("VPC", context.vpc_id)) if value]
    if ids:
        note.append(MarkdownTextObject(text=" · ".join(ids)))
    return note


def period_bounds(unit: str | None) -> tuple[int, int, str]:
    """(least, most, unit's name) for the period unit chosen; months when none is."""
    return PERIOD_LIMITS[PERIOD_YEAR] if unit == str(PERIOD_YEAR) else PERIOD_LIMITS[PERIOD_MONTH]


def _within(value: str | None, low: int, high: int) -> str:
    """The period length to show: what was typed, kept within the unit's bounds (Slack refuses an initial value
    outside them), or the least."""
    number = ascii_int(value, max_digits=3)
    return str(low if number is None else min(max(number, low), high))


def loading_view(title: str = "New app servers") -> View:
    return View(type="modal", callback_id=Callback.CREATE.value, title=_plain(title), close=_plain("Cancel"),
                blocks=[SectionBlock(text=MarkdownTextObject(text=":hourglass_flowing_sand: Loading server groups, "
                                                                   "zones and products from the cloud…"))])


def message_view(text: str, title: str = "New app servers") -> View:
    return View(type="modal", callback_id=Callback.CREATE.value, title=_plain(title), close=_plain("Close"),
                blocks=[SectionBlock(text=MarkdownTextObject(text=text))])


def create_view(catalogue: Catalogue, form: FormValues, context: ModalContext, *, sandbox: bool,
                max_servers: int = 100, approval: ApprovalRules | None = None) -> View:
    rules = approval or ApprovalRules()
    blocks: list[SlackBlock] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=":test_tube: *SANDBOX*: no cloud credentials are set, so nothing real is created.")]))
    group_options = [group_option(g) for g in catalogue.groups]
    group_element: StaticSelectElement | ExternalDataSelectElement
    if len(group_options) > STATIC_SELECT_LIMIT:
        chosen = catalogue.group(form.group_id)
        group_element = ExternalDataSelectElement(
            action_id=Action.GROUP_SELECT.value, placeholder=_plain("Type part of a server group's name"),
            min_query_length=1, initial_option=group_option(chosen) if chosen else None)
    else:
        group_element = StaticSelectElement(
            action_id=Action.GROUP_SELECT.value, placeholder=_plain("Choose a server group"),
            options=group_options, initial_option=_pick(group_options, form.group_id))
    blocks.append(InputBlock(block_id=Block.GROUP.value, label=_plain("Server group"), element=group_element,
                             dispatch_action=True, hint=_hint("Product, disk, subnet, VPC and OU come from the group.")))
    if context.group_id:
        blocks.append(ContextBlock(elements=network_note(context)))

    products = [p for p in catalogue.products if p.product_id][:STATIC_SELECT_LIMIT]
    product_options = [product_option(p, form.billing) for p in products]
    blocks.append(InputBlock(block_id=Block.PRODUCT.value, label=_plain("Product (flavor)"), element=StaticSelectElement(
        action_id=Action.INPUT.value, placeholder=_plain("Choose a product"), options=product_options,
        initial_option=_pick(product_options, form.product_id))))

    selling = [z for z in catalogue.zones if z.visible is not False and (not form.product_id or z.sells(form.product_id))]
    zone_options = [_option("Let the cloud choose", AUTO_ZONE)] + [
        _option(f"{z.display_name or z.availability_zone} ({z.availability_zone})", z.availability_zone)
        for z in selling[: STATIC_SELECT_LIMIT - 1]]
    blocks.append(InputBlock(block_id=Block.AZ.value, label=_plain("Availability zone"), optional=True,
                             hint=_hint("Zones where the product is sold out are not listed."),
                             element=StaticSelectElement(action_id=Action.INPUT.value, options=zone_options,
                                                         initial_option=_pick(zone_options, form.availability_zone))))

    disk_types = [v.volume_type for v in catalogue.volume_types if v.volume_type in DISK_TYPES] or list(DISK_TYPES)
    disk_options = [_option(t, t) for t in dict.fromkeys(disk_types)]
    blocks.append(InputBlock(block_id=Block.DISK_TYPE.value, label=_plain("System disk type"), element=StaticSelectElement(
        action_id=Action.INPUT.value, options=disk_options, initial_option=_pick(disk_options, form.disk_type))))
    blocks.append(InputBlock(block_id=Block.DISK_SIZE.value, label=_plain("System disk size (GB)"),
                             hint=_hint("A multiple of 10, from 10 to 1024."),
                             element=NumberInputElement(action_id=Action.INPUT.value, is_decimal_allowed=False,
                                                        min_value=10, max_value=1024,
                                                        initial_value=form.disk_size or None)))
    blocks.append(InputBlock(block_id=Block.COUNT.value, label=_plain("Number of servers"),
                             element=NumberInputElement(action_id=Action.INPUT.value, is_decimal_allowed=False,
                                                        min_value=1, max_value=max_servers,
                                                        initial_value=form.count or "1"),
                             hint=_hint(f"At most {max_servers} per request.")))
    billing_options = [_option("Pay-per-use (needs approval)" if rules.always(POSTPAID) else "Pay-per-use", POSTPAID),
                       _option("Yearly/monthly (needs approval)", PREPAID)]
    blocks.append(InputBlock(block_id=Block.BILLING.value, label=_plain("Billing"), dispatch_action=True,
                             element=RadioButtonsElement(action_id=Action.BILLING_CHANGE.value, options=billing_options,
                                                         initial_option=_pick(billing_options, form.billing))))
    if form.billing == PREPAID:
        unit = form.period_unit if form.period_unit in (str(PERIOD_MONTH), str(PERIOD_YEAR)) else str(PERIOD_MONTH)
        low, high, unit_name = period_bounds(unit)
        unit_options = [_option("Months", str(PERIOD_MONTH)), _option("Years", str(PERIOD_YEAR))]
        # Choosing the unit redraws the form, so the length below is bounded by it.
        blocks.append(InputBlock(block_id=Block.PERIOD_UNIT.value, label=_plain("Period unit"), dispatch_action=True,
                                 element=RadioButtonsElement(action_id=Action.PERIOD_UNIT_CHANGE.value,
                                                             options=unit_options,
                                                             initial_option=_pick(unit_options, unit))))
        blocks.append(InputBlock(block_id=Block.PERIOD_NUM.value, label=_plain(f"Period length ({unit_name})"),
                                 hint=_hint(f"{low} to {high} {unit_name}."),
                                 element=NumberInputElement(action_id=Action.INPUT.value, is_decimal_allowed=False,
                                                            min_value=low, max_value=high,
                                                            initial_value=_within(form.period_num, low, high))))
        paid_options = [_option("Renew automatically", "auto_renew"),
                        _option("Pay automatically from the balance", "auto_pay")]
        initial = [o for o in paid_options if (o.value == "auto_renew" and form.auto_renew) or
                   (o.value == "auto_pay" and form.auto_pay)]
        blocks.append(InputBlock(block_id=Block.PREPAID_OPTIONS.value, label=_plain("Renewal and payment"), optional=True,
                                 hint=_hint("Without auto-pay, an approver pays the order from its thread."),
                                 element=CheckboxesElement(action_id=Action.INPUT.value, options=paid_options,
                                                           initial_options=initial or None)))
    else:
        blocks.append(InputBlock(block_id=Block.DEDICATED_HOST.value, label=_plain("Dedicated host ID"), optional=True,
                                 hint=_hint("Only for pay-per-use servers on a dedicated host."),
                                 element=PlainTextInputElement(action_id=Action.INPUT.value, max_length=255,
                                                               initial_value=form.dedicated_host or None)))
    agent_options = [_option("Upgrade the access agent automatically", "update_agent")]
    blocks.append(InputBlock(block_id=Block.AGENT.value, label=_plain("Access agent"), optional=True,
                             element=CheckboxesElement(action_id=Action.INPUT.value, options=agent_options,
                                                       initial_options=agent_options if form.update_agent else None)))
    blocks.append(DividerBlock())
    # Required here when every request of this billing waits for an approver; otherwise the submission checks
    # it once the request is priced (AUTO_APPROVE_MAX_SERVERS, AUTO_APPROVE_MAX_MONTHLY_COST).
    blocks.append(InputBlock(block_id=Block.REASON.value, label=_plain("Reason or ticket for the approver"),
                             optional=not rules.always(form.billing), hint=_hint(rules.reason_hint(form.billing)),
                             element=PlainTextInputElement(action_id=Action.INPUT.value, multiline=True,
                                                           max_length=REASON_LIMIT, initial_value=form.reason or None)))
    return View(type="modal", callback_id=Callback.CREATE.value, title=_plain("New app servers"),
                submit=_plain("Request"), close=_plain("Cancel"), private_metadata=context.dump(), blocks=blocks)


def reject_view(request_id: str, card: dict[str, str]) -> View:
    return View(type="modal", callback_id=Callback.REJECT.value, title=_plain(f"Reject {request_id}"),
                submit=_plain("Reject"), close=_plain("Cancel"),
                private_metadata=json.dumps({"request_id": request_id, **card}),
                blocks=[InputBlock(block_id=Block.REJECT_REASON.value, label=_plain("Why is it rejected?"),
                                   hint=_hint("The requester sees this in the request's thread."),
                                   element=PlainTextInputElement(action_id=Action.INPUT.value, multiline=True,
                                                                 max_length=2000))])


def reason_from(state_values: Any) -> str | None:
    values = state_values if isinstance(state_values, dict) else {}
    return _text(values, Block.REJECT_REASON)
