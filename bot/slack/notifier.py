"""Tells people what happened: the request's thread (edited in place, with replies), the approval card,
the notify channel and the requester's DM. Implements the `Notifier` port; the courier calls it with
each request's news in order, and the row as it stands now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

from bot.lifecycle import State
from bot.notify import Event
from bot.progress import Progress
from bot.reconcile import Candidates
from bot.slack import delivery, messages, reminders
from bot.slack.names import NameBook, Names
from bot.slack.writer import MessageGone, Posted, SlackWriter
from bot.store.models import AppRequest
from bot.store.repository import RequestStore

log = logging.getLogger(__name__)

# Errors after which the bot keeps the thread in the requester's DM instead of the channel.
CHANNEL_UNUSABLE = frozenset({"not_in_channel", "channel_not_found", "is_archived", "restricted_action",
                              "cant_post_in_channel"})
DECISION_FINAL = frozenset({State.REJECTED, State.EXPIRED, State.CANCELLED})
REDRAWS = frozenset({Event.PROGRESS, Event.SUBMITTED, Event.REDRAW})  # news that only edits the messages


@dataclass
class SlackNotifier:
    writer: SlackWriter
    store: RequestStore
    approval_channel: str | None
    notify_channel: str | None
    sandbox: bool
    approvers: tuple[str, ...] = field(default=())
    names: NameBook | None = None  # display names for ids; without it, messages show ids
    console_url: str | None = None  # the region's Workspace console, linked from the final reply
    _permalinks: LRUCache[tuple[str, str], str] = field(default_factory=lambda: LRUCache(maxsize=4096))

    async def _names_of(self, request: AppRequest) -> Names:
        if self.names is None:
            return messages.NO_NAMES
        try:
            return await self.names.of(request)
        except Exception:  # names are a nicety: a message in ids beats no message
            log.exception("could not look up the names for %s; showing ids", request.id)
            return messages.NO_NAMES

    async def _permalink(self, channel: str | None, ts: str | None) -> str | None:
        if not channel or not ts:
            return None
        key = (channel, ts)
        if key not in self._permalinks:
            found = await self.writer.permalink(channel, ts)
            if found is None:
                return None
            self._permalinks[key] = found
        return self._permalinks[key]

    async def _links(self, request: AppRequest) -> messages.Links:
        thread = await self._permalink(request.channel_id, request.thread_ts)
        card = await self._permalink(request.approval_channel_id or self.approval_channel, request.approval_ts)
        return messages.Links(thread=thread, card=card, console=self.console_url)

    async def _fresh(self, request: AppRequest) -> AppRequest:
        return await asyncio.to_thread(self.store.get, request.id) or request

    async def request_changed(self, request: AppRequest, event: Event) -> None:
        if event is Event.CREATED:
            await self._created(request)
            return
        state = State(request.state)
        if event is Event.REMIND:  # a round: it lists what waits now, whether or not this request still does
            await self._remind_round(request)
            return
        if event is Event.EXPIRING:
            if state == State.PENDING_APPROVAL:  # decided since it was queued: nobody needs telling
                await self._expiring(request)
            return
        names, links = await self._names_of(request), await self._links(request)
        if event in REDRAWS:
            await self._redraw(request, names, links, card=event is not Event.PROGRESS)
            return
        # What tells people goes first; the head and the card (edits, at chat.update's slower tier) follow.
        if event is Event.PAYMENT_DUE:
            await self._payment_due(request)
        elif event is Event.PAID:
            await self._reply_text(request, messages.paid_reply(request, sandbox=self.sandbox), key="paid")
        elif event is Event.PAYMENT_WAITS:
            await self._reply_text(request, messages.payment_waits_reply(request, sandbox=self.sandbox),
                                   key="payment-waits")
        elif event is Event.PAYMENT_REMIND:
            await self._payment_remind(request)
        elif event is Event.ATTENTION:
            await self._attention(request)
        elif event is Event.TROUBLE:
            await self._reply_text(request, messages.trouble_text(request, sandbox=self.sandbox), key="trouble")
        elif state in DECISION_FINAL or event is Event.FINISHED:
            await self._final(request, names, links)
        elif event is Event.DECIDED and (text := messages.decision_reply(request, sandbox=self.sandbox)):
            await self._reply_text(request, text, key="decided")
        await self._redraw_after(request, names, links)

    async def _redraw_after(self, request: AppRequest, names: Names, links: messages.Links | None = None) -> None:
        """Redraw the head and the card now, or, when the courier can queue it, as news of its own."""
        current = delivery.current.get()
        if current is not None and current.redraw_later:
            current.wants_redraw = True
            return
        fresh = await self._fresh(request)
        await self._redraw(fresh, names, links if fresh.approval_ts == request.approval_ts else None)

    async def _redraw(self, request: AppRequest, names: Names, links: messages.Links | None = None, *,
                      card: bool = True) -> None:
        links = links or await self._links(request)
        await self._update_head(request, names, links)
        if request.expiry_warning_ts and State(request.state) not in messages.CANCELLABLE:
            await self._close_expiry_warning(request)
        if request.approval_ts and card:
            await self._update_card(request, names, links)  # the approvers' card follows the request to its end

    async def _remind_round(self, request: AppRequest) -> None:
        """One message for the round: in APPROVAL_CHANNEL, every request waiting with a link to its card; without
        it, in the channel `request` was asked in, that channel's waiting requests with links to their threads
        (App Home is where those are decided)."""
        channel = self.approval_channel or request.channel_id
        if not channel:
            return
        waiting, total = await asyncio.to_thread(self.store.waiting_for_approval,
                                                 None if self.approval_channel else channel, reminders.MOST_LISTED)
        if not waiting:
            return  # all decided since the round was queued
        items = []
        for row in waiting:
            url = await self._permalink(row.approval_channel_id or self.approval_channel, row.approval_ts) \
                if self.approval_channel else await self._permalink(row.channel_id, row.thread_ts)
            items.append(reminders.Waiting(row, await self._names_of(row), url))
        message = reminders.round_reminder(items, total=total, sandbox=self.sandbox, approvers=self.approvers,
                                           on_card=bool(self.approval_channel))
        await self.writer.post(channel, message.text, message.blocks, key="reminder")

    async def _expiring(self, request: AppRequest) -> None:
        message = messages.expiring_message(request, sandbox=self.sandbox, links=await self._links(request))
        if request.channel_id and request.thread_ts:
            placed = await self._reply(request, message, key="expiring")
        else:
            placed = await self.writer.post(request.requester_id, message.text, message.blocks, key="expiring")
        if placed is not None and placed.ok and placed.channel and placed.ts:  # its Cancel goes once unusable
            await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="expiry_warning_posted",
                                    detail=f"{placed.channel} {placed.ts}", expiry_warning_channel=placed.channel,
                                    expiry_warning_ts=placed.ts)

    async def _close_expiry_warning(self, request: AppRequest) -> None:
        """The expiry warning without its Cancel, saying where the request stands, once it cannot be cancelled."""
        assert request.expiry_warning_ts is not None
        closed = messages.expiry_warning_closed(request, sandbox=self.sandbox)
        with contextlib.suppress(MessageGone):  # deleted in Slack: no button left to take away
            await self.writer.update(request.expiry_warning_channel or request.channel_id or request.requester_id,
                                     request.expiry_warning_ts, closed.text, closed.blocks)
        await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="expiry_warning_closed",
                                detail=request.state, expiry_warning_ts=None)

    async def _approvers_card(self, request: AppRequest) -> AppRequest | None:
        """The approvers' card for this request, posted now if it has none (a pay-per-use request that needs
        attention, or a card that could not be posted before). None when there is nowhere to post it."""
        if request.approval_ts:
            return request
        if not self.approval_channel:
            return None
        card = self._card(request, await self._names_of(request), await self._links(request))
        placed = await self.writer.post(self.approval_channel, card.text, card.blocks, key="card")
        if not placed.ok:
            self._operator_warning(request, self.approval_channel, placed, "approval card")
            return None
        await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="card_posted",
                                detail=f"{placed.channel} {placed.ts}", approval_channel_id=placed.channel,
                                approval_ts=placed.ts)
        return await self._fresh(request)

    async def _reply_on_card(self, request: AppRequest, text: str, *, key: str) -> None:
        if request.approval_ts:
            channel = request.approval_channel_id or self.approval_channel or ""
            posted = await self.writer.post(channel, text, thread_ts=request.approval_ts, key=key)
            if not posted.ok:
                self._operator_warning(request, channel, posted, "reply on the approval card")

    @staticmethod
    def _operator_warning(request: AppRequest, channel: str, posted: Posted, what: str) -> None:
        log.warning("Slack refused the %s of %s in %s (%s): check that the bot may post there", what, request.id,
                    channel, posted.error)

    async def _payment_due(self, request: AppRequest) -> None:
        """The approvers are pinged where they look (the card's thread; their App Home lists it too), and the
        requester is told who pays."""
        card = await self._approvers_card(request)
        if card is not None:
            await self._reply_on_card(card, messages.payment_reply(
                card, sandbox=self.sandbox, approvers=self.approvers, for_approvers=True,
                approval_channel=self.approval_channel), key="payment-card")
        await self._reply_text(request, messages.payment_reply(
            request, sandbox=self.sandbox, approvers=self.approvers, for_approvers=False,
            approval_channel=self.approval_channel if card is not None else None), key="payment")

    async def _payment_remind(self, request: AppRequest) -> None:
        """The approvers, where they look (the card's thread, else the request's), before the order lapses."""
        if State(request.state) != State.AWAITING_PAYMENT:
            return  # paid or lapsed since it was queued
        text = messages.payment_remind_text(request, sandbox=self.sandbox, approvers=self.approvers)
        card = await self._approvers_card(request)
        if card is not None:
            await self._reply_on_card(card, text, key="payment-remind")
        else:
            await self._reply_text(request, text, key="payment-remind")

    async def _attention(self, request: AppRequest) -> None:
        await self._reply(request, messages.attention_message(request, sandbox=self.sandbox), key="attention")
        card = await self._approvers_card(request)
        if card is not None and (card.lookup_found is False or Candidates.of(card).items):
            who = messages.mentions(self.approvers)
            await self._reply_on_card(card, f"{'[SANDBOX] ' if self.sandbox else ''}{who + ': ' if who else ''}"
                                            f"{card.id} needs a decision about its order; see the card.",
                                      key="attention-card")

    async def _created(self, request: AppRequest) -> None:
        # A retry (Slack failed half-way last time) posts only what is not there yet.
        names = await self._names_of(request)
        if not request.thread_ts:
            request = await self._post_head(request, names)
        # A card is posted for a request that waits for approvers, or posted anew for one that had a card
        # (an operator's `admin repost`).
        had_card = request.approval_channel_id is not None
        if (State(request.state) != State.PENDING_APPROVAL and not had_card) or request.approval_ts \
                or not self.approval_channel:
            return  # the head says where approvers decide (the card, or their App Home)
        card = self._card(request, names, await self._links(request))
        placed = await self.writer.post(self.approval_channel, card.text, card.blocks, key="card")
        if placed.ok:
            await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="card_posted",
                                    detail=f"{placed.channel} {placed.ts}", approval_channel_id=placed.channel,
                                    approval_ts=placed.ts)
            await self._redraw_after(await self._fresh(request), names)  # the head, now with the link to the card
        else:
            self._operator_warning(request, self.approval_channel, placed, "approval card")
            await self._reply_text(request, f":warning: I could not post the approval card in <#{self.approval_channel}> "
                                            f"({placed.error}); approvers can still decide from the app's Home tab.",
                                   key="card-refused")

    async def _post_head(self, request: AppRequest, names: Names, *, key: str = "head") -> AppRequest:
        """The request's thread: in its channel, or in the requester's DM when the bot cannot post there."""
        head = messages.request_message(request, sandbox=self.sandbox, names=names,
                                        approval_channel=self.approval_channel)
        target = request.channel_id or request.requester_id
        posted = await self.writer.post(target, head.text, head.blocks, key=key)
        if not posted.ok and posted.error in CHANNEL_UNUSABLE and target != request.requester_id:
            refused = posted.error
            log.warning("cannot post in %s (%s); keeping %s's thread in the requester's DM", target, refused, request.id)
            posted = await self.writer.post(request.requester_id, head.text, head.blocks, key=f"{key}-dm")
            if posted.ok:
                await self.writer.post(request.requester_id, f"I can't post in <#{target}> ({refused}); add me to that "
                                       "channel to keep requests there.", thread_ts=posted.ts, key=f"{key}-dm-why")
        if posted.ok:
            await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="thread_posted",
                                    detail=f"{posted.channel} {posted.ts}", channel_id=posted.channel,
                                    thread_ts=posted.ts)
            return await self._fresh(request)
        return request

    async def _update_head(self, request: AppRequest, names: Names, links: messages.Links | None = None) -> None:
        if request.channel_id and request.thread_ts:
            links = links or await self._links(request)
            head = messages.request_message(request, sandbox=self.sandbox, names=names, links=links,
                                            approval_channel=self.approval_channel)
            try:
                await self.writer.update(request.channel_id, request.thread_ts, head.text, head.blocks)
            except MessageGone as gone:
                # Deleted in Slack (or its channel is gone): the request gets its head again, a new thread.
                log.warning("the thread head of %s in %s is gone (%s); posting it anew", request.id,
                            request.channel_id, gone.error)
                await self._post_head(request, names, key=f"head-again-{request.thread_ts}")

    def _card(self, request: AppRequest, names: Names, links: messages.Links) -> messages.Message:
        return messages.approval_card(request, sandbox=self.sandbox, quota=Progress.of(request).quota_note,
                                      names=names, links=links, approvers=self.approvers)

    async def _update_card(self, request: AppRequest, names: Names, links: messages.Links) -> None:
        assert request.approval_ts is not None
        card = self._card(request, names, links)
        channel = request.approval_channel_id or self.approval_channel or ""
        try:
            await self.writer.update(channel, request.approval_ts, card.text, card.blocks)
        except MessageGone as gone:
            log.warning("the approval card of %s in %s is gone (%s); posting it anew", request.id, channel, gone.error)
            placed = await self.writer.post(self.approval_channel or channel, card.text, card.blocks,
                                            key=f"card-again-{request.approval_ts}")
            if placed.ok:
                await asyncio.to_thread(self.store.update_fields, request.id, actor="bot", action="card_posted",
                                        detail=f"{placed.channel} {placed.ts}", approval_channel_id=placed.channel,
                                        approval_ts=placed.ts)
            else:
                self._operator_warning(request, self.approval_channel or channel, placed, "approval card")

    async def _reply(self, request: AppRequest, message: messages.Message, *, key: str,
                     fold: str | None = None) -> Posted | None:
        return await self._reply_text(request, message.text, message.blocks, key=key, fold=fold)

    async def _reply_text(self, request: AppRequest, text: str, blocks: list[dict[str, Any]] | None = None, *,
                          key: str, fold: str | None = None) -> Posted | None:
        """A reply in the request's thread; where Slack no longer lets the bot post there, the requester's DM.
        What Slack answered for the message that went out (None when the request has no thread)."""
        if not (request.channel_id and request.thread_ts):
            return None
        posted = await self.writer.post(request.channel_id, text, blocks, thread_ts=request.thread_ts, key=key,
                                        fold=fold)
        if not posted.ok and posted.error in CHANNEL_UNUSABLE and request.channel_id != request.requester_id:
            self._operator_warning(request, request.channel_id, posted, "thread reply")
            return await self.writer.post(request.requester_id, text, blocks, key=f"{key}-dm", fold=fold)
        return posted

    async def _final(self, request: AppRequest, names: Names, links: messages.Links) -> None:
        state = State(request.state)
        if state == State.CANCELLED and not request.outcome_sentence:
            return  # the requester's own click: answered to them; the head and the card show it
        reply = messages.final_reply(request, sandbox=self.sandbox, names=names, links=links)
        # When many requests end together, outcomes waiting for the same channel share a digest (see the writer).
        line = messages.outcome_line(request, sandbox=self.sandbox, names=names, links=links)
        if request.channel_id and request.thread_ts:
            await self._reply(request, reply, key="final", fold=line)
        else:  # no thread to tell it in: the requester's DM
            await self.writer.post(request.requester_id, reply.text, reply.blocks, key="final", fold=line)
        if self.notify_channel and state in (State.SUCCEEDED, State.PARTLY_DONE, State.FAILED, State.SUBMIT_FAILED):
            outcome = messages.outcome_message(request, sandbox=self.sandbox, names=names, links=links)
            posted = await self.writer.post(self.notify_channel, outcome.text, outcome.blocks, key="outcome",
                                            fold=line)
            if not posted.ok:
                self._operator_warning(request, self.notify_channel, posted, "outcome")
