"""Socket Mode: the same Bolt app behind a real WebSocket (no public URL, no signatures)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from bot.runtime import build_runtime
from bot.sandbox import Sandbox
from bot.sandbox.server import BackgroundServer
from tests.conftest import sandbox_settings
from tests.fake_slack import FakeSlack

ENVELOPES = Path(__file__).parent / "fixtures" / "slack-payloads" / "socket_mode.envelopes.bolt-python.json"


async def test_envelopes_over_a_websocket_are_acknowledged_with_the_listener_answer(
    sandbox: Sandbox, sandbox_url: str, tmp_path: Path
) -> None:
    acks: list[dict[str, Any]] = []
    done = asyncio.Event()
    command = {"envelope_id": "env-command", "type": "slash_commands", "accepts_response_payload": True,
               "payload": {"token": "x", "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/appserver",
                           "text": "help", "response_url": "https://hooks.slack.com/x", "trigger_id": "1.2.3"}}
    recorded = json.loads(ENVELOPES.read_text())  # real envelopes (shortcut, events, interactive)
    envelopes = [command, *recorded]

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        for envelope in envelopes:
            await ws.send_str(json.dumps(envelope))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                acks.append(json.loads(message.data))
                if len(acks) == len(envelopes):
                    done.set()
        return ws

    server = web.Application()
    server.router.add_get("/link", socket)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    fake = FakeSlack(socket_url=f"ws://127.0.0.1:{port}/link")
    with BackgroundServer(fake.app) as slack_server:
        settings = sandbox_settings(sandbox_url, sandbox, slack_bot_token=fake.token, slack_app_token=fake.app_token,
                                    slack_api_url=slack_server.url + "/api/", database_url=f"sqlite:///{tmp_path}/b.db")
        runtime = build_runtime(settings, need_signing_secret=False)
        handler = AsyncSocketModeHandler(runtime.app, fake.app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait_for(done.wait(), timeout=20)
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
            await runtime.stop()
            await runner.cleanup()
    by_id = {a["envelope_id"]: a for a in acks}
    assert set(by_id) == {e["envelope_id"] for e in envelopes}
    assert "orders Huawei Cloud" in by_id["env-command"]["payload"]["text"]
    assert fake.of("apps.connections.open")
