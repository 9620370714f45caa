"""HTTP mode: one ASGI app with POST /slack/events, GET /healthz and GET /metrics.

`/slack/events` is open to the internet, so a request earns each step before the next: a size
within Slack's, a fresh timestamp and a well-formed signature header (before the body is read), a
valid signature over the raw bytes, a signature no replica has seen, a payload that parses as
Slack's and has Slack's shape. Only then does Bolt see it. Nothing a stranger sends is logged:
refusals are counted by reason on `/metrics` (and logged, with the size only, at DEBUG).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.digits import ascii_int
from bot.outage import OUTAGES
from bot.runtime import Runtime
from bot.slack import outage_answers
from bot.slack.payloads import Unparseable, parse, shape_problem
from bot.slack.socket_mode import SocketModeLink
from bot.store.replays import ReplayMemory

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few kilobytes; a full modal's state is well under this
TIMESTAMP_WINDOW_SECONDS = 300  # Slack's (and Bolt's) window, in both directions
SOCKET_CLOSE_SECONDS = 2.0
_SIGNATURE = re.compile(r"v0=([0-9a-f]{64})")


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class DatabaseAway(Exception):
    """The replay memory could not be written: the request is not taken, and its person is told why."""

    def __init__(self, error: SQLAlchemyError) -> None:
        super().__init__(str(error))
        self.error = error


class FrontDoor:
    """The checks in front of Bolt, in the order that makes junk cheapest."""

    def __init__(self, secret: str | None, replays: ReplayMemory) -> None:
        self._secret = secret.encode() if secret else None
        self._replays = replays

    def check_headers(self, request: Request) -> tuple[int, str]:
        """(timestamp, signature hex) from a request whose headers could be Slack's; before any body is read."""
        if self._secret is None:
            raise Refused(401, "no signing secret is configured")
        length = request.headers.get("content-length")
        # ASCII digits only, bounded: `isdigit()` takes "¹", which `int()` then refuses with an exception.
        size = ascii_int(length, max_digits=18) if length is not None else None
        if length is not None and size is None:
            raise Refused(400, "a malformed Content-Length")
        if size is not None and size > MAX_BODY_BYTES:
            raise Refused(413, "the body is larger than Slack sends")
        stamp = ascii_int(request.headers.get("x-slack-request-timestamp"), max_digits=12)
        if stamp is None:
            raise Refused(401, "no valid timestamp")
        if abs(time.time() - stamp) > TIMESTAMP_WINDOW_SECONDS:
            raise Refused(401, "the timestamp is outside Slack's window")
        match = _SIGNATURE.fullmatch(request.headers.get("x-slack-signature", ""))
        if match is None:
            raise Refused(401, "no well-formed signature")
        return stamp, match.group(1)

    async def read_body(self, request: Request) -> bytes:
        """The body, read no further than the limit."""
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise Refused(413, "the body is larger than Slack sends")
                chunks.append(chunk)
        except ClientDisconnect:
            raise Refused(400, "the client went away") from None
        return b"".join(chunks)

    def check_signature(self, body: bytes, stamp: int, signature: str) -> None:
        assert self._secret is not None
        expected = hmac.new(self._secret, b"v0:%d:" % stamp + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise Refused(401, "the signature does not match")

    async def check_replay(self, stamp: int, signature: str) -> None:
        # Remembered until Slack's window no longer accepts the timestamp, a future one included.
        try:
            first = await self._replays.remember(signature, stamp + TIMESTAMP_WINDOW_SECONDS + 1)
        except SQLAlchemyError as error:  # without the memory a replay cannot be told: nothing is done
            raise DatabaseAway(error) from None
        if not first:
            raise Refused(401, "the signed request was seen before")


def create_asgi_app(runtime: Runtime, *, run_tracker: bool = True, socket: SocketModeLink | None = None,
                    answer_slack: bool = True) -> Starlette:
    """The bot's HTTP side. `answer_slack=False` is the worker's: only /healthz and /metrics."""
    secret = runtime.settings.slack_signing_secret
    replays = ReplayMemory(runtime.engine)
    door = FrontDoor(secret.get_secret_value() if secret else None, replays)

    def refuse(reason: str, status: int, size: int | None) -> Response:
        runtime.metrics.refused.labels(reason).inc()
        log.debug("refused a request to /slack/events (%s bytes): %s", "?" if size is None else size, reason)
        # A body left unread cannot be followed by another request on this connection: close it.
        headers = {"Connection": "close"} if status == 413 else None
        return JSONResponse({"error": reason}, status_code=status, headers=headers)

    def database_away(error: SQLAlchemyError, body: bytes, content_type: str | None) -> Response:
        """Signed, but the database cannot remember it: nothing is done, and the person reads why (an HTTP
        error would show in Slack as the app's own failure). Events get 503: Slack delivers them again."""
        try:
            payload = parse(body, content_type)
        except Unparseable as unparseable:
            return refuse(str(unparseable), 400, len(body))
        if shape_problem(payload) is not None:
            return Response(status_code=200)
        OUTAGES.report(f"taking {outage_answers.describe_kind(payload)} (its signature could not be remembered)",
                       error)
        answer = outage_answers.answer_for(payload)
        if answer.tell_after:
            outage_answers.tell_soon(payload, runtime.writer.client)
        if answer.body is None:
            return Response(status_code=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    async def slack_events(request: Request) -> Response:
        body: bytes | None = None
        try:
            stamp, signature = door.check_headers(request)
            body = await door.read_body(request)
            door.check_signature(body, stamp, signature)
            await door.check_replay(stamp, signature)
            payload = parse(body, request.headers.get("content-type"))
        except Refused as refused:
            return refuse(refused.reason, refused.status, None if body is None else len(body))
        except Unparseable as unparseable:
            return refuse(str(unparseable), 400, len(body or b""))
        except DatabaseAway as away:
            return database_away(away.error, body or b"", request.headers.get("content-type"))
        problem = shape_problem(payload)
        if problem is not None:
            # Signed, so it came with our secret, yet not Slack's shape: acknowledged, dropped, said once.
            runtime.metrics.refused.labels("malformed").inc()
            log.warning("acknowledged and dropped a signed payload that is not Slack's shape: %s", problem)
            return Response(status_code=200)
        response = await runtime.app.async_dispatch(to_async_bolt_request(request, body))
        if response.status == 500:  # Bolt could not route it (logged once by the app's error handler)
            return JSONResponse({"error": "the payload could not be handled"}, status_code=400)
        return to_starlette_response(response)

    async def healthz(request: Request) -> Response:
        def ping() -> None:
            with runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        reasons = []
        try:
            await asyncio.to_thread(ping)
            database = "ok"
        except Exception as error:  # any driver error means unhealthy
            database = f"error: {type(error).__name__}"
            reasons.append("the database cannot be reached")
        # In Socket Mode the bot is useless until Slack is connected: unhealthy meanwhile.
        slack_ok = socket is None or await socket.connected()
        if not slack_ok:
            reasons.append("Socket Mode is not connected to Slack yet")
        worker = runtime.worker_health()
        if worker.problem is not None:
            reasons.append(worker.problem)
        body: dict[str, Any] = {
            "status": "unhealthy" if reasons else "ok",
            "database": database,
            "last_cloud_success": _iso(runtime.metrics.last_cloud_success),
            "tracker": {"running": run_tracker, "last_cycle": _iso(runtime.tracker.last_cycle_at)},
            "worker": {"last_seen": _iso(worker.last_seen), "seconds_ago": worker.seconds_ago},
            "sandbox": runtime.context.sandbox,
            "time": _iso(time.time()),
        }
        if reasons:
            body["reason"] = "; ".join(reasons)
        if socket is not None:
            body["socket_mode"] = "connected" if slack_ok else "connecting"
        return JSONResponse(body, status_code=503 if reasons else 200)

    token = runtime.settings.metrics_token
    expected_authorization = f"Bearer {token.get_secret_value()}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if expected_authorization is not None:
            given = request.headers.get("authorization", "").encode()
            # Constant time: how much of a guess matched must not show in how long the refusal takes.
            if not hmac.compare_digest(given, expected_authorization):
                return JSONResponse({"error": "METRICS_TOKEN is set: send Authorization: Bearer <token>"},
                                    status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        return Response(await runtime.metrics.snapshot(), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start(run_tracker=run_tracker, answer_slack=answer_slack)
        if socket is not None:
            socket.start()  # connects in the background: /healthz answers meanwhile
        try:
            yield
        finally:
            if socket is not None:
                try:  # a Slack that does not answer the close must not hold the stop past its 25 s
                    await asyncio.wait_for(socket.close(), SOCKET_CLOSE_SECONDS)
                except TimeoutError:
                    log.warning("Slack did not answer the Socket Mode close within %.0f s; stopping anyway",
                                SOCKET_CLOSE_SECONDS)
            await runtime.stop()
            replays.close()

    routes = [Route("/healthz", healthz, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]
    if answer_slack:
        routes.insert(0, Route("/slack/events", slack_events, methods=["POST"]))
    return Starlette(routes=routes, lifespan=lifespan)
