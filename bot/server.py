"""HTTP mode: one ASGI app with POST /slack/events, GET /healthz and GET /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.runtime import Runtime
from bot.slack.payloads import interactive_payload, well_formed
from bot.slack.socket_mode import SocketModeLink

log = logging.getLogger(__name__)


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


class ReplayGuard:
    """Refuses a signed request seen before: Slack signs every delivery (retries included) anew, so the
    same signature twice is a replay. Kept for the 5 minutes in which Bolt accepts a timestamp."""

    WINDOW = 300.0

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, signature: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - self.WINDOW:
            self._seen.popitem(last=False)
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True


def create_asgi_app(runtime: Runtime, *, run_tracker: bool = True, socket: SocketModeLink | None = None) -> Starlette:
    handler = AsyncSlackRequestHandler(runtime.app)
    replays = ReplayGuard()
    secret = runtime.settings.slack_signing_secret
    verifier = SignatureVerifier(secret.get_secret_value()) if secret else None

    async def slack_events(request: Request) -> Response:
        signature = request.headers.get("x-slack-signature", "")
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        if not timestamp.isdigit():  # Bolt would fail on int() with a 500; it is simply not a Slack request
            return JSONResponse({"error": "invalid request"}, status_code=401)
        # Only a correctly signed request is remembered (junk cannot fill the memory); a second one is refused
        # before any listener runs. Bolt itself answers 401 to bad or stale signatures.
        body = await request.body()
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:  # Slack sends UTF-8; Bolt would fail decoding anything else with a 500
            return JSONResponse({"error": "the body is not UTF-8"}, status_code=400)
        if verifier is not None and verifier.is_valid(body, timestamp, signature):
            if not replays.first_time(signature):
                return JSONResponse({"error": "replayed request"}, status_code=401)
            payload = interactive_payload(body)
            if payload is not None and not well_formed(payload):
                log.warning("acknowledged and dropped a malformed interactive payload")
                return Response(status_code=200)
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
        # In Socket Mode the bot is useless until Slack is connected: unhealthy meanwhile.
        slack_ok = socket is None or await socket.connected()
        healthy = database == "ok" and slack_ok
        body = {
            "status": "ok" if healthy else "unhealthy",
            "database": database,
            "last_cloud_success": _iso(runtime.metrics.last_cloud_success),
            "tracker": {"running": run_tracker, "last_cycle": _iso(runtime.tracker.last_cycle_at)},
            "sandbox": runtime.context.sandbox,
            "time": _iso(time.time()),
        }
        if socket is not None:
            body["socket_mode"] = "connected" if slack_ok else "connecting"
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        payload = await asyncio.to_thread(generate_latest, runtime.metrics.registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start(run_tracker=run_tracker)
        if socket is not None:
            socket.start()  # connects in the background: /healthz answers meanwhile
        try:
            yield
        finally:
            if socket is not None:
                await socket.close()
            await runtime.stop()

    return Starlette(routes=[
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], lifespan=lifespan)
