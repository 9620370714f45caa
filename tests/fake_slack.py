"""A fake Slack Web API on loopback: records every call, answers like Slack, fails on demand."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from bot.slack.access import BOT_SCOPES


@dataclass
class Outage:
    """Slack away for a while: every call of `methods` (all when empty) in [start, end) answers `status`
    (429 with Retry-After, or a 5xx) and is not carried out."""

    start: float
    end: float
    status: int
    retry_after: int | None = None
    methods: frozenset[str] = frozenset()

    def covers(self, method: str, at: float) -> bool:
        return self.start <= at < self.end and (not self.methods or method in self.methods)


def dm_channel(user: str) -> str:
    """The id of the bot's DM with a user, as Slack answers a post to the user's id."""
    return "D" + user[1:]


@dataclass
class FakeSlack:
    token: str = "xoxb-fake-token"
    calls: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)  # method -> queued Slack error codes
    app_token: str = "xapp-1-fake"
    socket_url: str | None = None  # what apps.connections.open answers
    group_members: dict[str, list[str]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # view id -> the latest view
    scopes: list[str] = field(default_factory=lambda: list(BOT_SCOPES))  # what x-oauth-scopes lists
    # conversations.info: channel id -> what Slack says of it; any other id is a public channel the bot is in.
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # users.info; any other id is an active user
    gates: dict[str, threading.Event] = field(default_factory=dict)  # method -> its answers wait until set
    retry_after: str = "1"  # the Retry-After of a queued "ratelimited" (Slack sends seconds; HTTP allows a date)
    # Every message posted, as Slack keeps it: channel (a DM's D… id), ts, thread_ts, text, metadata.
    messages: list[dict[str, Any]] = field(default_factory=list)
    deleted: set[tuple[str, str]] = field(default_factory=set)  # (channel, ts) of messages deleted in Slack
    gone_channels: set[str] = field(default_factory=set)  # channels that no longer exist: channel_not_found
    outages: list[Outage] = field(default_factory=list)
    lost_answers: dict[str, int] = field(default_factory=dict)  # method -> how many more answers never come
    lose_for_seconds: float = 5.0  # how long a lost answer keeps the connection before it is dropped

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/api/{method}", self._call, methods=["POST", "GET"]),
                                     Route("/response", self._response_url, methods=["POST"]),
                                     Route("/calls", self._calls, methods=["GET"])])
        self.responses: list[dict[str, Any]] = []

    async def _calls(self, request: Request) -> JSONResponse:
        """What was called, when (for benchmarks in another process); `?method=` filters."""
        method = request.query_params.get("method")
        return JSONResponse([{"method": c["method"], "at": c["at"], "trigger_id": c["args"].get("trigger_id")}
                             for c in self.calls if method is None or c["method"] == method])

    async def _response_url(self, request: Request) -> JSONResponse:
        self.responses.append(await request.json())
        return JSONResponse({"ok": True})

    def away(self, seconds: float, status: int, *, retry_after: int | None = None, after: float = 0.0,
             methods: tuple[str, ...] = ()) -> Outage:
        """Slack answers `status` to every call (or to `methods`) for `seconds`, starting `after` seconds from now."""
        start = time.time() + after
        outage = Outage(start, start + seconds, status, retry_after, frozenset(methods))
        self.outages.append(outage)
        return outage

    def lose_answers(self, method: str, count: int = 1) -> None:
        """The next `count` calls of `method` are carried out, but their answer never arrives."""
        self.lost_answers[method] = self.lost_answers.get(method, 0) + count

    def delete(self, channel: str, ts: str) -> None:
        self.deleted.add((channel, ts))

    def posted(self, channel: str | None = None, *, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages Slack has (each once, however often it was asked), in the channel or the thread."""
        return [m for m in self.messages if (channel is None or m["channel"] == channel)
                and (thread_ts is None or m.get("thread_ts") == thread_ts)]

    def fail_next(self, method: str, error: str) -> None:
        self.errors.setdefault(method, []).append(error)

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c["args"] for c in self.calls if c["method"] == method]

    def texts(self, method: str = "chat.postMessage", channel: str | None = None) -> list[str]:
        return [str(a.get("text", "")) for a in self.of(method) if channel is None or a.get("channel") == channel]

    def latest_view(self) -> dict[str, Any]:
        return list(self.views.values())[-1]

    def _queued_error(self, method: str) -> JSONResponse | None:
        queued = self.errors.get(method)
        if not queued:
            return None
        error = queued.pop(0)
        if error == "ratelimited":
            return JSONResponse({"ok": False, "error": error}, status_code=429, headers={"Retry-After": self.retry_after})
        return JSONResponse({"ok": False, "error": error})

    async def _call(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        raw = (await request.body()).decode()
        content_type = request.headers.get("content-type", "")
        args: dict[str, Any] = dict(request.query_params)
        if "json" in content_type and raw:
            args.update(await request.json())
        elif raw:
            args.update(parse_qsl(raw))
        self.calls.append({"method": method, "args": args, "at": time.time()})
        gate = self.gates.get(method)
        if gate is not None:
            await asyncio.to_thread(gate.wait, 30)
        if method == "apps.connections.open":
            if request.headers.get("authorization") != f"Bearer {self.app_token}" or not self.socket_url:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            return self._queued_error(method) or JSONResponse({"ok": True, "url": self.socket_url})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        now = time.time()
        for outage in self.outages:
            if outage.covers(method, now):
                headers = {"Retry-After": str(outage.retry_after)} if outage.retry_after is not None else {}
                if outage.status == 429:
                    return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429, headers=headers)
                return PlainTextResponse("Service Unavailable", status_code=outage.status, headers=headers)
        if (failure := self._queued_error(method)) is not None:
            return failure
        if method == "auth.test":  # Slack lists the token's scopes in a header of every answer
            return JSONResponse({"ok": True, "url": "https://sandbox.slack.com/", "team": "Sandbox Co",
                                 "user": "appserver", "team_id": "T0SANDBOX", "user_id": "U0BOT", "bot_id": "B0BOT"},
                                headers={"x-oauth-scopes": ",".join(self.scopes)})
        if method == "conversations.info":
            channel = str(args.get("channel"))
            info = {"id": channel, "is_channel": True, "is_private": False, "is_archived": False, "is_member": True,
                    **self.channels.get(channel, {})}
            if info.get("is_private") and not info.get("is_member"):  # Slack hides private channels from outsiders
                return JSONResponse({"ok": False, "error": "channel_not_found"})
            return JSONResponse({"ok": True, "channel": info})
        if method == "users.info":
            user = {"id": args.get("user"), "deleted": False, **self.users.get(str(args.get("user")), {})}
            return JSONResponse({"ok": True, "user": user})
        if method in ("views.open", "views.update", "views.push"):
            view_id = args.get("view_id") or f"V{len(self.views) + 1:08d}"
            view = args.get("view")
            if isinstance(view, str):
                view = json.loads(view)
            stored = {**(view or {}), "id": view_id, "hash": f"{time.time():.6f}.{len(self.calls)}"}
            self.views[view_id] = stored
            return JSONResponse({"ok": True, "view": stored})
        if method == "usergroups.users.list":
            return JSONResponse({"ok": True, "users": self.group_members.get(str(args.get("usergroup")), [])})
        if method == "chat.getPermalink":
            channel, ts = args.get("channel"), str(args.get("message_ts", ""))
            return JSONResponse({"ok": True, "channel": channel,
                                 "permalink": f"https://sandbox.slack.com/archives/{channel}/p{ts.replace('.', '')}"})
        if method in ("chat.postMessage", "chat.update"):
            answer = self._write(method, args)
            if self.lost_answers.get(method, 0) > 0:  # done, but the answer is lost on the way back
                self.lost_answers[method] -= 1
                await asyncio.sleep(self.lose_for_seconds)
                return PlainTextResponse("", status_code=504)
            return JSONResponse(answer)
        if method == "conversations.open":
            users = str(args.get("users", ""))
            return JSONResponse({"ok": True, "channel": {"id": dm_channel(users) if "," not in users else "G0MPIM"}})
        if method in ("conversations.history", "conversations.replies"):
            return JSONResponse(self._history(method, args))
        return JSONResponse({"ok": True})

    def _write(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """chat.postMessage and chat.update as Slack answers them."""
        channel = str(args.get("channel", "C0"))
        if channel in self.gone_channels:
            return {"ok": False, "error": "channel_not_found"}
        if channel[:1] in ("U", "W"):
            channel = dm_channel(channel)
        if method == "chat.update":
            ts = str(args.get("ts"))
            if (channel, ts) in self.deleted:
                return {"ok": False, "error": "message_not_found"}
            for message in self.messages:
                if message["channel"] == channel and message["ts"] == ts:
                    message["text"] = args.get("text", "")
            return {"ok": True, "channel": channel, "ts": ts, "text": args.get("text", "")}
        ts = f"{time.time():.6f}"
        while any(m["ts"] == ts and m["channel"] == channel for m in self.messages):  # Slack's ts are unique
            ts = f"{float(ts) + 0.000001:.6f}"
        metadata = args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        message: dict[str, Any] = {"type": "message", "channel": channel, "ts": ts, "text": args.get("text", ""),
                                   "bot_id": "B0BOT", "metadata": metadata}
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        if args.get("blocks"):
            message["blocks"] = json.loads(args["blocks"]) if isinstance(args["blocks"], str) else args["blocks"]
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text", "")}}

    def _history(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.history (a channel's top-level messages, newest first) and conversations.replies (a
        thread: its parent, then the replies, oldest first), with `oldest`, `limit` and a cursor; metadata only
        with include_all_metadata."""
        channel = str(args.get("channel"))
        if channel in self.gone_channels or channel[:1] in ("U", "W"):
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(args.get("oldest") or 0)
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        if method == "conversations.history":
            found = [m for m in self.messages if m["channel"] == channel and "thread_ts" not in m]
            found.reverse()
        else:
            parent = str(args.get("ts"))
            found = [m for m in self.messages if m["channel"] == channel
                     and (m["ts"] == parent or m.get("thread_ts") == parent)]
        found = [m for m in found if float(m["ts"]) > oldest or (inclusive and float(m["ts"]) == oldest)]
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = found[start:start + limit]
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [{k: v for k, v in m.items() if k != "channel" and (with_metadata or k != "metadata")} for m in page]
        more = start + limit < len(found)
        return {"ok": True, "messages": shown, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}
