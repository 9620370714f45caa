"""What one piece of news already posted, so a retry posts only what is missing.

The courier delivers each piece of news inside a `Delivery`; the writer consults it for every post that
has a key (the thread's head, the card, the final reply…). A post is written down as sent-but-unanswered
before it leaves, and with its channel and ts once Slack answers; a post that was sent but never answered
(a timeout, a connection cut, a crash) is looked for in Slack, by a marker in its metadata, before it is
posted again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# The metadata event type of every message the courier posts; its payload names the news and the post.
MARKER_EVENT = "appserver_news"


@dataclass
class Delivery:
    news_id: int
    request_id: str
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    save: Callable[[Delivery], Awaitable[None]] | None = None
    # The courier can queue the messages' redraw as news of its own (edits wait for chat.update's tier behind
    # every post that tells someone something); the notifier then asks for it instead of editing at once.
    redraw_later: bool = False
    wants_redraw: bool = False

    @classmethod
    def of(cls, news_id: int, request_id: str, sent_json: str | None,
           save: Callable[[Delivery], Awaitable[None]] | None = None, *, redraw_later: bool = False) -> Delivery:
        sent = json.loads(sent_json) if sent_json else {}
        return cls(news_id, request_id, sent if isinstance(sent, dict) else {}, save, redraw_later)

    def marker(self, key: str) -> str:
        return f"{self.news_id}:{key}"

    def posted(self, key: str) -> tuple[str, str] | None:
        entry = self.sent.get(key) or {}
        if entry.get("ts"):
            return str(entry["channel"]), str(entry["ts"])
        return None

    def unanswered_since(self, key: str) -> float | None:
        """When a post of this key left without an answer (it may be in Slack), or None."""
        entry = self.sent.get(key) or {}
        since = entry.get("since")
        return float(since) if since is not None and not entry.get("ts") else None

    async def sending(self, key: str) -> None:
        """Write the post down before it leaves: if its answer never comes, a retry looks for it first."""
        self.sent[key] = {"since": self.sent.get(key, {}).get("since", time.time())}
        if self.save is not None:
            await self.save(self)

    def answered(self, key: str, channel: str, ts: str) -> None:
        self.sent[key] = {"channel": channel, "ts": ts}

    def refused(self, key: str) -> None:
        """Slack answered and did not post it: nothing to look for."""
        self.sent.pop(key, None)

    def dump(self) -> str | None:
        return json.dumps(self.sent, separators=(",", ":")) if self.sent else None


current: ContextVar[Delivery | None] = ContextVar("slack_delivery", default=None)
