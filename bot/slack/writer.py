"""Every Slack write goes through here: kept below the method tiers, thread edits coalesced.

chat.postMessage: at most one per `post_interval` per channel (Slack allows about 1/s per channel).
chat.update: at most one per `update_interval` in all (Tier 3, 50+/min), and at most one edit of the
same message per `edit_window`; edits that arrive meanwhile are merged, and the latest content is
always sent, so a final state is never lost to coalescing. 429s are retried after Retry-After by the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import Metrics
from bot.slack.rate_limits import RateLimitRetryHandler

log = logging.getLogger(__name__)


def new_web_client(token: str, base_url: str) -> AsyncWebClient:
    return AsyncWebClient(
        token=token, base_url=base_url, timeout=10,
        retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=2),
                        RateLimitRetryHandler(max_retry_count=3)],
    )


@dataclass(frozen=True)
class Posted:
    ok: bool
    channel: str | None = None
    ts: str | None = None
    error: str | None = None


class _Gate:
    """At most one pass per `interval` seconds per key. Keys are channels (a DM is one per person), so
    keys whose interval has passed, with nobody waiting, are forgotten: the state stays bounded."""

    PRUNE_AT = 1000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            delay = self._next.get(key, 0.0) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next[key] = time.monotonic() + self.interval
        if len(self._locks) > self.PRUNE_AT:
            self._prune()

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, lock in self._locks.items() if not lock.locked() and self._next.get(k, 0.0) <= now]:
            del self._locks[key]
            self._next.pop(key, None)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class _Edit:
    content: tuple[str, list[dict[str, Any]]] | None = None
    task: asyncio.Task[None] | None = None
    next_at: float = 0.0
    sent: int = 0


@dataclass
class SlackWriter:
    client: AsyncWebClient
    metrics: Metrics | None = None
    post_interval: float = 1.1
    update_interval: float = 1.25
    edit_window: float = 3.0
    label: str | None = None  # e.g. "[SANDBOX]": put in front of every text the bot writes
    _posts: _Gate = field(init=False)
    _updates: _Gate = field(init=False)
    _edits: dict[tuple[str, str], _Edit] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._posts = _Gate(self.post_interval)
        self._updates = _Gate(self.update_interval)

    def _labelled(self, text: str) -> str:
        if self.label and not text.startswith(self.label):
            return f"{self.label} {text}"
        return text

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        if "text" in kwargs:
            kwargs["text"] = self._labelled(str(kwargs["text"]))
        if self.metrics:
            self.metrics.slack_calls.labels(method).inc()
        try:
            response = await self.client.api_call(method, json=kwargs)
        except SlackApiError as error:
            code = str(error.response.get("error", "unknown"))
            if self.metrics:
                self.metrics.slack_errors.labels(method, code).inc()
            log.warning("Slack %s failed: %s", method, code)
            raise
        data: dict[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None) -> Posted:
        await self._posts.wait(channel)
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if blocks is not None:
            args["blocks"] = blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            data = await self._call("chat.postMessage", **args)
        except SlackApiError as error:
            return Posted(False, error=str(error.response.get("error", "unknown")))
        data = data or {}
        return Posted(True, str(data.get("channel") or channel), str(data.get("ts")))

    async def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> bool:
        args: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            await self._call("chat.postEphemeral", **args)
        except SlackApiError:
            # Not in that channel (or it is gone): say it in the user's DM with the app instead.
            return (await self.post(user, text)).ok
        return True

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Edit a message; returns once Slack has the content (this or a newer edit of the same message).
        Waiting is the courier's back-pressure: edits wait in the database, not in memory."""
        self._forget_finished_edits()
        edit = self._edits.setdefault((channel, ts), _Edit())
        edit.content = (text, blocks)
        if edit.task is None or edit.task.done():
            edit.task = asyncio.create_task(self._flush(channel, ts, edit))
        await asyncio.shield(edit.task)

    def _forget_finished_edits(self) -> None:
        """A message's state lives while an edit is pending or its edit window is open, then it is dropped."""
        now = time.monotonic()
        for key, edit in list(self._edits.items()):
            if edit.content is None and (edit.task is None or edit.task.done()) and edit.next_at <= now:
                del self._edits[key]

    @property
    def messages_tracked(self) -> int:
        return len(self._edits)

    async def _flush(self, channel: str, ts: str, edit: _Edit) -> None:
        while edit.content is not None:
            delay = edit.next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._updates.wait("chat.update")
            if edit.content is None:
                break
            text, blocks = edit.content
            edit.content = None
            edit.next_at = time.monotonic() + self.edit_window
            try:
                await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)
                edit.sent += 1
            except SlackApiError:
                pass  # logged and counted in _call; the next change edits the message again

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A link to a message (chat.getPermalink); None when Slack gives none."""
        try:
            data = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackApiError:
            return None
        link = (data or {}).get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        try:
            await self._call("views.publish", user_id=user, view=view)
        except SlackApiError:
            return

    async def drain(self) -> None:
        """Wait for pending edits (at shutdown, and in tests)."""
        tasks = [e.task for e in self._edits.values() if e.task is not None and not e.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
