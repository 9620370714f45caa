"""The guardrails where people meet them: before the form opens, and when it is submitted (the store checks
them again as the request is stored)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot import policy
from bot.cloud.quote import PriceQuote
from bot.policy import Refusal
from bot.slack.context import BotContext
from bot.spec import CreateAppServersRequest
from bot.store.models import utcnow
from bot.workflow import DirectoryUnavailable


async def requester_refusal(ctx: BotContext, user: str) -> Refusal | None:
    guardrails = ctx.workflow.policy.guardrails
    if not guardrails.requesters:
        return None
    try:
        listed = await ctx.workflow.is_listed(user, guardrails.requesters)
    except DirectoryUnavailable as unavailable:
        return Refusal("REQUESTERS", f"I could not check that you may request servers: {unavailable} "
                                     "Try again in a minute.")
    return policy.requester_refusal(guardrails, listed=listed)


async def size_refusal(ctx: BotContext, user: str, servers: int) -> Refusal | None:
    """Too many servers in one request, or for this person today (a database read only when that cap is set)."""
    guardrails = ctx.workflow.policy.guardrails
    refusal = policy.count_refusal(guardrails, servers)
    if refusal is None and guardrails.max_servers_per_user_per_day is not None:
        already = await asyncio.to_thread(ctx.store.servers_asked_since, user, utcnow() - timedelta(days=1))
        refusal = policy.daily_refusal(guardrails, already=already, servers=servers)
    return refusal


async def approval_rule(ctx: BotContext, spec: CreateAppServersRequest, price: PriceQuote | None,
                        user: str) -> str | None:
    """Why an approver decides this request, with what the person had approved without one in the last day."""
    return await ctx.workflow.approval_rule_for(spec, price, user)


async def pending_refusal(ctx: BotContext, user: str) -> Refusal | None:
    """For a request that would wait: the person has MAX_PENDING_PER_USER requests waiting already."""
    return await ctx.workflow.pending_refusal(user)
