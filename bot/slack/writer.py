"""Every Slack write goes through here: kept below the method tiers, thread edits coalesced, and every
failure told apart: Slack away for a while (`SlackUnavailable`: the caller's news waits and is retried)
or Slack's considered refusal (returned, for the caller to handle on purpose).

chat.postMessage: at most one per `post_interval` per channel (Slack allows about 1/s per channel) and one
per `workspace_post_interval` in all (Slack's workspace-wide limit, several hundred a minute).
chat.update and the conversations.* look-ups: Tier 3 (50+/min), one per `update_interval` each, and at
most one edit of the same message per `edit_window`: edits that arrive meanwhile are merged, and the latest
content is always sent. With a `SharedPace` these budgets are the database's, shared by every process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.digits import ascii_int
from bot.metrics import Metrics
from bot.slack import delivery
from bot.slack.delivery import MARKER_EVENT, Delivery
from bot.slack.messages import DIGEST_MOST, digest_message
from bot.slack.rate_limits import LONGEST_WAIT_SECONDS, RateLimitRetryHandler
from bot.store.pace import SharedPace

log = logging.getLogger(__name__)

# Answers that say "not now" rather than "no": the call may work later.
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
# Slack's words for these: "it's possible some aspect of the operation succeeded before the error was raised".
MAYBE_DONE_ERRORS = frozenset({"internal_error", "fatal_error"})
# HTTP answers after which the message may be in Slack all the same (the server failed or timed out mid-way).
MAYBE_DONE_STATUSES = frozenset({500, 504})
TIER_3_INTERVAL = 60 / 50  # chat.update, conversations.history/replies/open: Tier 3, 50+ a minute
LOOKUP_PAGE = 15  # conversations.history/replies: the most Slack returns at once to some apps
LOOKUP_PAGES = 10


def new_web_client(token: str, base_url: str) -> AsyncWebClient:
    """The client Bolt and the interactive paths use (the writer makes its own from it, without retries)."""
    return AsyncWebClient(
        token=token, base_url=base_url, timeout=10,
        retry_handlers=[AsyncConnectionErrorRetryHandler(max_retry_count=2),
                        RateLimitRetryHandler(max_retry_count=3)],
    )


class SlackUnavailable(Exception):
    """Slack did not take the call, for a reason that may pass: rate limited, a 5xx, no answer in time, no
    connection. `maybe_sent`: the call may have been carried out all the same (no answer, or Slack says so)."""

    def __init__(self, method: str, reason: str, *, retry_after: float | None = None, maybe_sent: bool = False) -> None:
        super().__init__(f"Slack {method}: {reason}")
        self.method = method
        self.reason = reason
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class MessageGone(Exception):
    """The message to edit is not in Slack any more (deleted, or its channel is gone)."""

    def __init__(self, channel: str, ts: str, error: str) -> None:
        super().__init__(f"message {ts} in {channel}: {error}")
        self.error = error


@dataclass(frozen=True)
class Posted:
    ok: bool
    channel: str | None = None
    ts: str | None = None
    error: str | None = None


class _Gate:
    """At most one pass per interval per key, in this process. Keys are channels (a DM is one per person), so
    keys whose interval has passed, with nobody waiting, are forgotten: the state stays bounded."""

    PRUNE_AT = 1000

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str, interval: float | None = None) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            delay = self._next.get(key, 0.0) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next[key] = time.monotonic() + (self.interval if interval is None else interval)
        if len(self._locks) > self.PRUNE_AT:
            self._prune()

    def hold(self, key: str, seconds: float) -> None:
        self._next[key] = max(self._next.get(key, 0.0), time.monotonic() + seconds)

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, lock in self._locks.items() if not lock.locked() and self._next.get(k, 0.0) <= now]:
            del self._locks[key]
            self._next.pop(key, None)

    def __len__(self) -> int:
        return len(self._locks)


class Pace(Protocol):
    async def wait(self, key: str, interval: float) -> None: ...

    async def hold(self, key: str, seconds: float) -> None:
        """Nobody calls `key` for `seconds` (Slack said Retry-After)."""


class LocalPace:
    """Slack's pace kept by this process alone (one process, or tests)."""

    def __init__(self) -> None:
        self._gate = _Gate(0.0)

    async def wait(self, key: str, interval: float) -> None:
        if interval > 0:
            await self._gate.wait(key, interval)

    async def hold(self, key: str, seconds: float) -> None:
        self._gate.hold(key, seconds)


class DatabasePace:
    """Slack's pace kept in the database for every process (`SharedPace`). This process's callers of one key
    queue on a lock, so only one of them at a time asks the database."""

    PRUNE_AT = 1000

    def __init__(self, shared: SharedPace) -> None:
        self._shared = shared
        self._locks: dict[str, asyncio.Lock] = {}

    async def wait(self, key: str, interval: float) -> None:
        if interval <= 0:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            while (delay := await asyncio.to_thread(self._shared.take, key, interval)) > 0:  # noqa: ASYNC110
                await asyncio.sleep(delay)  # another process holds the slot: nothing here to wake us sooner
        if len(self._locks) > self.PRUNE_AT:
            for idle in [k for k, held in self._locks.items() if not held.locked()]:
                del self._locks[idle]

    async def hold(self, key: str, seconds: float) -> None:
        await asyncio.to_thread(self._shared.hold, key, seconds)


@dataclass
class _Foldable:
    """A post waiting for its channel's slot that may share a digest with others waiting for the same slot."""

    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    marker: str | None
    line: str
    answer: asyncio.Future[Posted]


@dataclass
class _Edit:
    content: tuple[str, list[dict[str, Any]]] | None = None
    task: asyncio.Task[None] | None = None
    next_at: float = 0.0
    sent: int = 0


def _retry_after(error: SlackApiError) -> float | None:
    """The wait a 429 states (whole seconds in ASCII digits, bounded), or None when it states none we can read."""
    headers = getattr(error.response, "headers", None) or {}
    stated = next((value for name, value in headers.items() if str(name).lower() == "retry-after"), None)
    if isinstance(stated, list):
        stated = stated[0] if stated else None
    seconds = ascii_int(str(stated).strip() if stated is not None else None, max_digits=6)
    return None if seconds is None else float(min(seconds, LONGEST_WAIT_SECONDS))


@dataclass
class SlackWriter:
    client: AsyncWebClient
    metrics: Metrics | None = None
    post_interval: float = 1.1
    update_interval: float = 1.25
    edit_window: float = 3.0
    label: str | None = None  # e.g. "[SANDBOX]": put in front of every text the bot writes
    pace: Pace = field(default_factory=LocalPace)
    workspace_post_interval: float = 0.25  # 240 posts a minute in all, below Slack's "several hundred"
    lookup_interval: float = TIER_3_INTERVAL
    timeout: float | None = None  # of one call; default: the client's
    _edits: dict[tuple[str, str], _Edit] = field(default_factory=dict, init=False)
    _bare: AsyncWebClient | None = field(default=None, init=False)
    # Foldable posts waiting, by channel, and the task posting each channel's (a channel leaves both once empty).
    _folding: dict[str, list[_Foldable]] = field(default_factory=dict, init=False)
    _leaders: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)

    def _labelled(self, text: str) -> str:
        if self.label and not text.startswith(self.label):
            return f"{self.label} {text}"
        return text

    def _courier_client(self) -> AsyncWebClient:
        """The client's token and connection pool, without its retry handlers: a post is never sent again
        blindly (its answer may have been lost after Slack took it), and a rate limit is waited out by the
        news in the database, not by a call held open."""
        if self._bare is None:
            self._bare = AsyncWebClient(token=self.client.token, base_url=self.client.base_url,
                                        timeout=self.client.timeout, retry_handlers=[])
        self._bare.session = self.client.session
        return self._bare

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """One Web API call. Raises `SlackUnavailable` for a failure that may pass, `SlackApiError` for Slack's
        refusal (its `error` code says why)."""
        if "text" in kwargs:
            kwargs["text"] = self._labelled(str(kwargs["text"]))
        if self.metrics:
            self.metrics.slack_calls.labels(method).inc()
        try:
            # The session's own timeout is the pool's; this one is the call's.
            async with asyncio.timeout(self.timeout or self.client.timeout):
                response = await self._courier_client().api_call(method, json=kwargs)
        except SlackApiError as error:
            status = int(getattr(error.response, "status_code", 200) or 200)
            code = str(error.response.get("error", "unknown")) if isinstance(error.response.data, dict) \
                else f"http_{status}"
            self._count_error(method, code, kwargs.get("channel") or kwargs.get("user_id"))
            if status == 429 or code in TRANSIENT_ERRORS or status >= 500:
                wait = _retry_after(error) if status == 429 else None
                if wait:  # the method's budget waits it out, in every process
                    await self.pace.hold(method, wait)
                raise SlackUnavailable(method, code if status < 500 else f"http_{status}", retry_after=wait,
                                       maybe_sent=status in MAYBE_DONE_STATUSES or code in MAYBE_DONE_ERRORS) from error
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            reason = "timeout" if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError) else "connection"
            self._count_error(method, reason, kwargs.get("channel") or kwargs.get("user_id"))
            raise SlackUnavailable(method, reason, maybe_sent=True) from error
        data: dict[str, Any] = response.data if isinstance(response.data, dict) else {}
        return data

    def _count_error(self, method: str, code: str, channel: object = None) -> None:
        if self.metrics:
            self.metrics.slack_errors.labels(method, code).inc()
        current = delivery.current.get()
        about = f" for {current.request_id}" if current is not None else ""
        log.warning("Slack %s failed%s in %s: %s", method, about, channel or "-", code)

    async def post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                   thread_ts: str | None = None, *, key: str | None = None, fold: str | None = None) -> Posted:
        """Post a message. Slack's refusal comes back as `Posted(ok=False, error=…)`.

        Outside a courier's delivery a failure that may pass comes back the same way (an interactive answer has
        nowhere to wait). Inside one it raises `SlackUnavailable`, so the news waits; and with a `key`, a post
        this news already made is not made again (one sent without an answer is looked for first).
        `fold`: this post's one-line form. While other foldable posts wait for the same channel's slot, they
        go out together as one digest, in the channel (see `messages.digest_message`)."""
        current = delivery.current.get()
        if current is None:
            try:
                return await self._post(channel, text, blocks, thread_ts, None, fold)
            except SlackUnavailable as away:
                return Posted(False, error=away.reason)
        if key is None:
            return await self._post(channel, text, blocks, thread_ts, None, fold)
        return await self._post_once(current, key, channel, text, blocks, thread_ts, fold)

    async def _post_once(self, current: Delivery, key: str, channel: str, text: str,
                         blocks: list[dict[str, Any]] | None, thread_ts: str | None, fold: str | None) -> Posted:
        done = current.posted(key)
        if done is not None:
            return Posted(True, *done)
        since = current.unanswered_since(key)
        if since is not None:
            found = await self.find(channel, thread_ts, current.marker(key), since, in_digests=fold is not None)
            if found is not None:
                log.info("the %s post of %s was in Slack already (its answer was lost); not posting it again",
                         key, current.request_id)
                current.answered(key, *found)
                return Posted(True, *found)
        await current.sending(key)
        try:
            posted = await self._post(channel, text, blocks, thread_ts, current.marker(key), fold)
        except SlackUnavailable as away:
            if not away.maybe_sent:
                current.refused(key)
            raise
        if posted.ok and posted.channel and posted.ts:
            current.answered(key, posted.channel, posted.ts)
        else:
            current.refused(key)
        return posted

    async def _post(self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None,
                    marker: str | None, fold: str | None = None) -> Posted:
        if fold is not None:
            return await self._post_folded(channel, _Foldable(text, blocks, thread_ts, marker, fold,
                                                              asyncio.get_running_loop().create_future()))
        await self._slot(channel)
        return await self._send(channel, text, blocks, thread_ts, [marker] if marker else [])

    async def _slot(self, channel: str) -> None:
        await self.pace.wait(f"chat.postMessage {channel}", self.post_interval)
        await self.pace.wait("chat.postMessage", self.workspace_post_interval)

    async def _post_folded(self, channel: str, waiting: _Foldable) -> Posted:
        self._folding.setdefault(channel, []).append(waiting)
        if channel not in self._leaders:
            self._leaders[channel] = asyncio.create_task(self._lead(channel), name=f"fold:{channel}")
        return await asyncio.shield(waiting.answer)

    async def _lead(self, channel: str) -> None:
        """Post what waits for `channel`, one slot at a time: alone as itself, several as one digest."""
        try:
            while self._folding.get(channel):
                await self._slot(channel)
                queue = self._folding[channel]
                batch, queue[:] = queue[:DIGEST_MOST], queue[DIGEST_MOST:]
                try:
                    if len(batch) == 1:
                        one = batch[0]
                        posted = await self._send(channel, one.text, one.blocks, one.thread_ts,
                                                  [one.marker] if one.marker else [])
                    else:
                        digest = digest_message([b.line for b in batch], sandbox=bool(self.label))
                        posted = await self._send(channel, digest.text, digest.blocks, None,
                                                  [b.marker for b in batch if b.marker])
                except Exception as error:  # every post in the batch learns it, and its news waits
                    for waiting in batch:
                        if not waiting.answer.done():
                            waiting.answer.set_exception(error)
                    continue
                for waiting in batch:
                    if not waiting.answer.done():
                        waiting.answer.set_result(posted)
        finally:
            self._leaders.pop(channel, None)
            if not self._folding.get(channel):
                self._folding.pop(channel, None)

    async def _send(self, channel: str, text: str, blocks: list[dict[str, Any]] | None, thread_ts: str | None,
                    markers: list[str]) -> Posted:
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if blocks is not None:
            args["blocks"] = blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        if markers:
            payload: dict[str, Any] = {"key": markers[0]} if len(markers) == 1 else {"keys": markers}
            args["metadata"] = {"event_type": MARKER_EVENT, "event_payload": payload}
        try:
            data = await self._call("chat.postMessage", **args)
        except SlackApiError as error:
            return Posted(False, error=str(error.response.get("error", "unknown")))
        return Posted(True, str(data.get("channel") or channel), str(data.get("ts")))

    async def find(self, channel: str, thread_ts: str | None, marker: str, since: float, *,
                   in_digests: bool = False) -> tuple[str, str] | None:
        """The message carrying `marker` posted since `since` in the thread (or the channel), if Slack has it;
        `in_digests`: also among the channel's digests. A look Slack refuses (a scope missing, the channel
        gone) finds nothing: posting again may repeat a message, which beats losing one."""
        try:
            if channel[:1] in ("U", "W"):  # a DM is posted to the user's id; its history is the DM channel's
                await self.pace.wait("conversations.open", self.lookup_interval)
                opened = await self._call("conversations.open", users=channel)
                channel = str((opened.get("channel") or {}).get("id") or channel)
            places: list[str | None] = [thread_ts] if thread_ts else []
            if in_digests or not thread_ts:
                places.append(None)
            for place in places:
                found = await self._look(channel, place, marker, since)
                if found is not None:
                    return channel, found
        except SlackApiError as error:
            log.warning("could not look in %s for a post whose answer was lost (%s); posting it again", channel,
                        error.response.get("error", "unknown"))
        return None

    async def _look(self, channel: str, thread_ts: str | None, marker: str, since: float) -> str | None:
        """The ts of the message carrying `marker` in the thread (conversations.replies) or among the channel's
        messages (conversations.history), a page of `LOOKUP_PAGE` at a time."""
        method = "conversations.replies" if thread_ts else "conversations.history"
        args: dict[str, Any] = {"channel": channel, "oldest": f"{since - 5:.6f}", "limit": LOOKUP_PAGE,
                                "include_all_metadata": True, "inclusive": True}
        if thread_ts:
            args["ts"] = thread_ts
        for _ in range(LOOKUP_PAGES):
            await self.pace.wait(method, self.lookup_interval)
            page = await self._call(method, **args)
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                payload = metadata.get("event_payload") or {}
                if metadata.get("event_type") == MARKER_EVENT and (
                        payload.get("key") == marker or marker in (payload.get("keys") or [])):
                    return str(message.get("ts"))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return None
            args["cursor"] = cursor
        return None

    async def ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> bool:
        args: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            args["thread_ts"] = thread_ts
        try:
            await self._call("chat.postEphemeral", **args)
        except (SlackApiError, SlackUnavailable):
            # Not in that channel (or it is gone, or Slack is busy): say it in the user's DM with the app instead.
            return (await self.post(user, text)).ok
        return True

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Edit a message; returns once Slack has the content (this or a newer edit of the same message).
        Raises `SlackUnavailable` when Slack could not take it (every caller waiting on that edit then retries
        its news), `MessageGone` when the message is not there any more. Waiting is the courier's
        back-pressure: edits wait in the database, not in memory."""
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
            await self.pace.wait("chat.update", self.update_interval)
            if edit.content is None:
                break
            text, blocks = edit.content
            edit.content = None
            edit.next_at = time.monotonic() + self.edit_window
            try:
                await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)
                edit.sent += 1
            except SlackUnavailable:
                edit.content = None  # every caller waiting on it retries its news, with the state as it is then
                raise
            except SlackApiError as error:
                code = str(error.response.get("error", "unknown"))
                if code in ("message_not_found", "channel_not_found"):
                    edit.content = None
                    raise MessageGone(channel, ts, code) from error
                # Any other refusal: that edit cannot be made; the message keeps its last state.

    async def permalink(self, channel: str, ts: str) -> str | None:
        """A link to a message (chat.getPermalink); None when Slack gives none."""
        try:
            data = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackApiError:
            return None
        link = data.get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        try:
            await self._call("views.publish", user_id=user, view=view)
        except (SlackApiError, SlackUnavailable):
            return

    async def drain(self) -> None:
        """Wait for pending edits and posts (at shutdown, and in tests)."""
        tasks = [e.task for e in self._edits.values() if e.task is not None and not e.task.done()]
        tasks += [task for task in self._leaders.values() if not task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
