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
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.slack.access import BOT_SCOPES


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
            channel = args.get("channel", "C0")
            return JSONResponse({"ok": True, "channel": channel, "ts": args.get("ts") or f"{time.time():.6f}",
                                 "message": {"text": args.get("text", "")}})
        return JSONResponse({"ok": True})
