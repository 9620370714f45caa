"""A stand-in for Slack's Socket Mode WebSocket on loopback, in a thread of its own so that a bot in
another process can connect: it says hello, sends the envelopes it is given, and records the acks."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import WSMsgType, web


class SocketStandIn:
    def __init__(self, envelopes: list[dict[str, Any]] | None = None, *, drop_first: int = 0) -> None:
        self.envelopes = envelopes or []
        self.drop_first = drop_first  # connections closed right after hello, as Slack does when it moves us
        self.acks: list[dict[str, Any]] = []
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="socket-stand-in")
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link"

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        if self.connections <= self.drop_first:
            await ws.close()
            return ws
        for envelope in self.envelopes:
            await ws.send_str(json.dumps(envelope))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
        return ws

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/link", self._socket)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    def __enter__(self) -> SocketStandIn:
        self._thread.start()
        assert self._ready.wait(10), "the stand-in did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stopping is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
