"""HTTP mode: one ASGI app with POST /slack/events, GET /healthz and GET /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.runtime import Runtime


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def create_asgi_app(runtime: Runtime, *, run_tracker: bool = True, socket_app_token: str | None = None) -> Starlette:
    handler = AsyncSlackRequestHandler(runtime.app)

    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await asyncio.to_thread(ping)
            database = "ok"
        except Exception as error:  # any driver error means unhealthy
            database = f"error: {type(error).__name__}"
        body = {
            "status": "ok" if database == "ok" else "unhealthy",
            "database": database,
            "last_cloud_success": _iso(runtime.metrics.last_cloud_success),
            "tracker": {"running": run_tracker, "last_cycle": _iso(runtime.tracker.last_cycle_at)},
            "sandbox": runtime.context.sandbox,
            "time": _iso(time.time()),
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    async def metrics(request: Request) -> Response:
        payload = await asyncio.to_thread(generate_latest, runtime.metrics.registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start(run_tracker=run_tracker)
        socket_handler = None
        if socket_app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            socket_handler = AsyncSocketModeHandler(runtime.app, socket_app_token)
            await socket_handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            yield
        finally:
            if socket_handler is not None:
                await socket_handler.close_async()  # type: ignore[no-untyped-call]
            await runtime.stop()

    return Starlette(routes=[
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)
