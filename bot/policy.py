"""Guardrails, in one place: who may ask for servers, how many at once and per day, and which requests
wait for a person. Pure: facts in, a refusal or the rule that asks for an approver out. Every sentence
names the setting and its number, so whoever is refused knows what to ask for."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.settings import Settings

DAY = "the last 24 hours"


@dataclass(frozen=True)
class Guardrails:
    requesters: frozenset[str] = frozenset()  # user and user-group ids allowed to ask; empty: everyone
    max_servers_per_request: int = 20
    auto_approve_max_servers: int = 5
    max_servers_per_user_per_day: int | None = None
    auto_approve_max_monthly_cost: Decimal | None = None  # in the price's currency; None: no cost rule
    max_pending_per_user: int = 5  # requests of one person waiting for an approver or for payment

    @classmethod
    def from_settings(cls, settings: Settings) -> Guardrails:
        return cls(
            requesters=frozenset(settings.requesters), max_servers_per_request=settings.max_servers_per_request,
            auto_approve_max_servers=settings.auto_approve_max_servers,
            max_servers_per_user_per_day=settings.max_servers_per_user_per_day,
            auto_approve_max_monthly_cost=settings.auto_approve_max_monthly_cost,
            max_pending_per_user=settings.max_pending_per_user,
        )


@dataclass(frozen=True)
class AutoApproved:
    """What one person had approved without an approver in the last 24 hours (requests that ordered nothing
    left out). The auto-approval limits apply to this plus the new request, so splitting one large request
    into small ones does not avoid them."""

    requests: int = 0
    servers: int = 0
    monthly_cost: Decimal = Decimal(0)  # of those with a price
    unpriced: int = 0  # requests with no price: their cost is unknown


@dataclass(frozen=True)
class Refusal:
    rule: str  # the setting that refuses
    sentence: str


def requester_refusal(guardrails: Guardrails, *, listed: bool) -> Refusal | None:
    """`listed`: the person is one of REQUESTERS or in one of its user groups."""
    if not guardrails.requesters or listed:
        return None
    return Refusal("REQUESTERS", "You are not allowed to request servers: REQUESTERS names the people and user "
                                 "groups who may. Ask an approver or the bot's administrator to add you.")


def count_refusal(guardrails: Guardrails, servers: int) -> Refusal | None:
    if servers <= guardrails.max_servers_per_request:
        return None
    return Refusal("MAX_SERVERS_PER_REQUEST", f"At most {guardrails.max_servers_per_request} servers per request "
                                              f"(MAX_SERVERS_PER_REQUEST); you asked for {servers}.")


def daily_refusal(guardrails: Guardrails, *, already: int, servers: int) -> Refusal | None:
    """`already`: servers this person asked for in the last 24 hours, in requests not refused or withdrawn."""
    cap = guardrails.max_servers_per_user_per_day
    if cap is None or already + servers <= cap:
        return None
    left = max(cap - already, 0)
    return Refusal("MAX_SERVERS_PER_USER_PER_DAY",
                   f"You asked for {already} servers in {DAY}; MAX_SERVERS_PER_USER_PER_DAY is {cap}, so "
                   + (f"at most {left} more now." if left else "no more until some of those are a day old."))


def pending_refusal(guardrails: Guardrails, *, waiting: int) -> Refusal | None:
    """`waiting`: this person's requests waiting for an approver or for payment now. Checked for a request that
    would wait too, so one person cannot fill the approvers' day."""
    cap = guardrails.max_pending_per_user
    if waiting < cap:
        return None
    return Refusal("MAX_PENDING_PER_USER",
                   f"You have {waiting} requests waiting for an approver or for payment, and MAX_PENDING_PER_USER "
                   f"is {cap}: this one would wait too. Cancel one you no longer need (/appserver list shows them) "
                   "or ask an approver to decide, then send this again.")


def _requests(count: int) -> str:
    return f"{count} request" if count == 1 else f"{count} requests"


def approval_rule(guardrails: Guardrails, *, prepaid: bool, servers: int, postpaid_requires_approval: bool = False,
                  monthly_cost: Decimal | None = None, earlier: AutoApproved | None = None) -> str | None:
    """Why a person must approve the request, or None when it goes to the cloud at once. `earlier`: what the
    same person had approved without an approver in the last 24 hours, which counts towards the limits. The
    checks run in order; the first that applies is the reason recorded and shown on the card."""
    if prepaid:
        return "yearly/monthly orders are always approved by a person"
    if postpaid_requires_approval:
        return "POSTPAID_REQUIRES_APPROVAL is on"
    most = guardrails.auto_approve_max_servers
    if servers > most:
        return f"more than AUTO_APPROVE_MAX_SERVERS ({most}) servers"
    earlier = earlier or AutoApproved()
    if earlier.servers + servers > most:
        return (f"{servers} more servers would make {earlier.servers + servers} approved without an approver in {DAY}, "
                f"more than AUTO_APPROVE_MAX_SERVERS ({most})")
    limit = guardrails.auto_approve_max_monthly_cost
    if limit is None:
        return None
    if monthly_cost is None:
        return f"no price is known for it, and AUTO_APPROVE_MAX_MONTHLY_COST ({limit}) is set"
    if monthly_cost > limit:
        return f"an estimated {monthly_cost} a month, above AUTO_APPROVE_MAX_MONTHLY_COST ({limit})"
    if earlier.unpriced:
        return (f"the cost of {_requests(earlier.unpriced)} approved without an approver in {DAY} is not known, "
                f"and AUTO_APPROVE_MAX_MONTHLY_COST ({limit}) is set")
    if (total := earlier.monthly_cost + monthly_cost) > limit:
        return (f"an estimated {monthly_cost} a month on top of {earlier.monthly_cost} approved without an approver "
                f"in {DAY} ({_requests(earlier.requests)}) makes {total}, above AUTO_APPROVE_MAX_MONTHLY_COST ({limit})")
    return None
