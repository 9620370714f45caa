"""The baseline: a Bolt AsyncApp that only acks, on the same server stack as the bot (Starlette + uvicorn).

    python -m benchmarks.bare_bolt PORT [--at-ack]

As Bolt ships, its runner polls every 10 ms for a listener's ack. `--at-ack` builds it as the bot is built
(`process_before_response=True`, so the answer leaves when the listener returns): the floor of what any
Bolt app answering at ack can do, which is the bot's own overhead's yardstick.
"""

from __future__ import annotations

import os
import re
import sys

import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANY = re.compile(".*")


def build(at_ack: bool = False) -> Starlette:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"], process_before_response=at_ack)

    @app.command(ANY)
    async def command(ack: AsyncAck) -> None:
        await ack()

    @app.action(ANY)
    async def action(ack: AsyncAck) -> None:
        await ack()

    @app.view(ANY)
    async def view(ack: AsyncAck) -> None:
        await ack()

    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"])])


if __name__ == "__main__":
    uvicorn.run(build(at_ack="--at-ack" in sys.argv[2:]), host="127.0.0.1", port=int(sys.argv[1]),
                log_level="warning", access_log=False)
