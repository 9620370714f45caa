"""Socket Mode for the Bolt app, supervised: it connects in the background (so `/healthz` answers from the
start), retries a Slack it cannot reach with backoff and one log line per try, stops the bot with one
sentence when Slack refuses SLACK_APP_TOKEN, and closes at once whatever state it is in.

slack_sdk's client does the protocol (envelopes, acknowledgements, pings, Slack's `disconnect` notices);
this replaces only its connection loop, which retries forever, logs a traceback per try and cannot tell
a refused token from a network failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.digits import ascii_int
from bot.slack.access import error_code, refused
from bot.startup import DEFAULT_BACKOFF, NETWORK_ERRORS, Backoff, pause

log = logging.getLogger(__name__)
PING_INTERVAL = 10.0


class _Stopped(Exception):
    """The link is closing or Slack refused the token: stop connecting."""


def app_token_refused(code: str) -> str:
    return (f"Slack refused SLACK_APP_TOKEN ({code}): set it to an app-level token (xapp-…) with the "
            "connections:write scope, made on the app's Basic Information page, and turn Socket Mode on.")


class _SupervisedClient(SocketModeClient):
    """slack_sdk's client with our connection loop."""

    def __init__(self, link: SocketModeLink, app_token: str, app: AsyncApp) -> None:
        super().__init__(app_token=app_token, web_client=app.client, ping_interval=PING_INTERVAL)
        self._link = link
        self._closing = asyncio.Event()

    async def issue_new_wss_url(self) -> str:
        delays = self._link.backoff.delays()
        while not self.closed:
            try:
                response = await self.web_client.apps_connections_open(app_token=self.app_token)
                return str(response["url"])
            except SlackApiError as error:
                if refused(error):
                    self._link.refuse(app_token_refused(error_code(error)))
                    raise _Stopped from None
                reason, delay = f"Slack answered {error_code(error)} to apps.connections.open", next(delays)
                if error_code(error) == "ratelimited":
                    # Seconds in ASCII digits; an HTTP date or anything else keeps the backoff's delay.
                    waited = ascii_int(str(error.response.headers.get("Retry-After", "")), max_digits=5)
                    delay = float(waited) if waited is not None else delay
            except NETWORK_ERRORS as error:
                reason, delay = f"cannot reach Slack ({type(error).__name__})", next(delays)
            log.warning("Socket Mode: %s; trying again in %.0f s", reason, delay)
            await pause(self._closing, delay)
        raise _Stopped

    async def connect(self) -> None:
        delays = self._link.backoff.delays()
        while not self.closed:
            self.auto_reconnect_enabled = False  # the session monitor waits while we connect
            try:
                if self.current_session is not None and not self.current_session.closed:
                    await self.current_session.close()
                if self.aiohttp_client_session.closed:
                    self.aiohttp_client_session = aiohttp.ClientSession()
                url, self.wss_uri = self.wss_uri or await self.issue_new_wss_url(), None  # a URL serves one connection
                self.current_session = await self.aiohttp_client_session.ws_connect(
                    url, autoping=False, heartbeat=self.ping_interval, proxy=self.proxy,
                    ssl=self.web_client.ssl if self.web_client.ssl is not None else True)
                await self.current_session.ping(f"sdk-ping-pong:{time.time()}".encode())
            except _Stopped:
                return
            except NETWORK_ERRORS as error:
                delay = next(delays)
                log.warning("Socket Mode: cannot open the WebSocket (%s); trying again in %.0f s",
                            type(error).__name__, delay)
                await pause(self._closing, delay)
                continue
            self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
            self.stale = False
            # The same two tasks slack_sdk runs per session: one watches it, one reads it.
            for task in (self.current_session_monitor, self.message_receiver):
                if task is not None:
                    task.cancel()
            self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
            self.message_receiver = asyncio.ensure_future(self.receive_messages())
            log.info("Socket Mode: connected to Slack")
            return

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        # slack_sdk asks for a new URL here, outside connect(); connect() does it, with the retries.
        async with self.connect_operation_lock:
            if force or not await self.is_connected():
                self.wss_uri = None
                await self.connect()

    async def close(self) -> None:
        self._closing.set()
        await super().close()  # type: ignore[no-untyped-call]


class SocketModeLink:
    """The bot's Socket Mode connection; `on_refused` is told (once) when Slack refuses the app token."""

    def __init__(self, app: AsyncApp, app_token: str, *, on_refused: Callable[[str], None] | None = None,
                 backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.app = app
        self.backoff = backoff
        self.on_refused = on_refused
        self.refusal: str | None = None
        self._app_token = app_token
        self._client: _SupervisedClient | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin connecting in the background (call from inside the event loop)."""
        self._client = _SupervisedClient(self, self._app_token, self.app)
        self._client.socket_mode_request_listeners.append(self._handle)  # type: ignore[arg-type]
        self._connecting = asyncio.create_task(self._client.connect(), name="socket mode")

    async def connected(self) -> bool:
        return self._client is not None and await self._client.is_connected()

    def refuse(self, sentence: str) -> None:
        if self.refusal is None:
            self.refusal = sentence
            if self.on_refused is not None:
                self.on_refused(sentence)

    async def close(self) -> None:
        if self._client is None:
            return
        await self._client.close()
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)

    async def _handle(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        started = time.time()
        response = await run_async_bolt_app(self.app, request)
        await send_async_response(client, request, response, started)
