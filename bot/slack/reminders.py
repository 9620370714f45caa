"""The approvers' reminder: one message per round listing every request still waiting for a decision, so
ten requests from one person are one ping a round, not ten. Data in, blocks out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject, SectionBlock
from slack_sdk.models.blocks.blocks import Block as SlackBlock

from bot.slack.messages import Message, group_words, link, mentions, spec_of, what_is_ordered, when
from bot.slack.names import Names
from bot.slack.text import mention
from bot.store.models import AppRequest

MOST_LISTED = 15  # a message stays readable (and within Slack's 50 blocks); App Home lists them all


@dataclass(frozen=True)
class Waiting:
    """A request in the reminder: the row, its group's name, and where it is decided (its card or its thread)."""

    request: AppRequest
    names: Names
    link: str | None


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def _line(item: Waiting) -> str:
    request = item.request
    expires = f" · expires {when(request.expires_at)}" if request.expires_at else ""
    return (f"*{link(item.link, request.id)}* · {what_is_ordered(spec_of(request))} · "
            f"{group_words(request, item.names)}\n"
            f"from {mention(request.requester_id)} · waiting since {when(request.created_at)}{expires}")


def round_reminder(waiting: Sequence[Waiting], *, total: int, sandbox: bool, approvers: Sequence[str],
                   on_card: bool) -> Message:
    """`waiting`: the oldest requests still waiting (at most MOST_LISTED), of `total`; `on_card`: approvers
    decide on the cards in APPROVAL_CHANNEL, else in the app's Home tab."""
    prefix = "[SANDBOX] " if sandbox else ""
    who = mentions(approvers) or "Approvers"
    many = f"{total} requests wait" if total != 1 else "1 request waits"
    where = ("Approve or Reject on its card" if total == 1 else "Approve or Reject on each card") if on_card \
        else "Approve or Reject in the app's Home tab"
    opens = "its id below opens it" if on_card else "an id below opens the request's thread"
    ids = ", ".join(w.request.id for w in waiting[:5]) + (", …" if total > 5 else "")
    text = f"{prefix}:bell: {who}: {many} for a decision ({ids}). {where}."
    blocks: list[SlackBlock] = [SectionBlock(text=_md(f"{prefix}:bell: {who}: *{many} for a decision.* "
                                                      f"{where} ({opens})."))]
    blocks += [SectionBlock(text=_md(_line(item))) for item in waiting[:MOST_LISTED]]
    if total > len(waiting[:MOST_LISTED]):
        blocks.append(ContextBlock(elements=[_md(f"{total - len(waiting[:MOST_LISTED])} more wait after these "
                                                 "(oldest first); the app's Home tab lists them all.")]))
    return Message(text, [b.to_dict() for b in blocks])
