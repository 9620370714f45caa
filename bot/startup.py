"""What the bot says when it starts: what runs, what is missing, and whether Slack accepts its token.

The Slack checks run in the background, so a slow or unreachable Slack never holds up `/healthz`; a token
Slack refuses stops the program with one sentence.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings, StartupError
from bot.slack.access import BOT_SCOPES, channel_access, error_code, granted_scopes, refused

log = logging.getLogger(__name__)

# What a call to Slack raises when the network, not Slack, is the problem.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, SlackClientError)


class SlackRefused(StartupError):
    """Slack refused a token; the message names the variable and says what to do."""


@dataclass(frozen=True)
class Backoff:
    """Exponential waits with jitter between tries at a service that does not answer."""

    first: float = 1.0
    cap: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay * random.uniform(0.8, 1.2)
            delay = min(self.cap, delay * 2)


DEFAULT_BACKOFF = Backoff()


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop` is set; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def bot_token_refused(code: str) -> SlackRefused:
    return SlackRefused(f"Slack refused SLACK_BOT_TOKEN ({code}): set it to the app's Bot User OAuth Token "
                        "(xoxb-…, on the OAuth & Permissions page), and reinstall the app if it was revoked.")


def settings_warnings(settings: Settings) -> list[str]:
    """Settings that leave part of the bot unusable, without stopping it (the sandbox needs none of them)."""
    warnings = []
    if not settings.approvers:
        warnings.append("APPROVERS is not set: nobody can approve yearly/monthly requests; set it to Slack user "
                        "ids (U…) or user-group ids (S…), separated by commas.")
    return warnings


async def verify_bot_token(client: AsyncWebClient, api_url: str, stop: asyncio.Event,
                           backoff: Backoff | None = None) -> frozenset[str] | None:
    """`auth.test` until Slack answers: the scopes granted (empty when Slack does not list them), None when
    stopped first. Raises `SlackRefused` when Slack refuses the token."""
    for delay in (backoff or DEFAULT_BACKOFF).delays():
        try:
            response = await client.auth_test()
            return granted_scopes(response.headers) or frozenset()
        except SlackApiError as error:
            if refused(error):
                raise bot_token_refused(error_code(error)) from None
            reason = f"Slack answered {error_code(error)} to auth.test"
        except NETWORK_ERRORS as error:
            reason = f"cannot reach Slack at {api_url} ({type(error).__name__})"
        log.warning("%s; trying again in %.0f s", reason, delay)
        if await pause(stop, delay):
            return None
    return None


async def check_slack(settings: Settings, client: AsyncWebClient, stop: asyncio.Event, *, channels: bool) -> None:
    """The checks at start: the token (raises `SlackRefused`), the scopes, and the channels the bot posts to."""
    scopes = await verify_bot_token(client, settings.slack_api_url, stop)
    if scopes is None:
        return
    missing = sorted(set(BOT_SCOPES) - scopes) if scopes else []
    if missing:
        log.warning("the Slack app lacks the scopes %s: add them (or create the app from its manifest) and "
                    "reinstall it", ", ".join(missing))
    if not channels:
        return
    for setting, channel in (("APPROVAL_CHANNEL", settings.approval_channel),
                             ("NOTIFY_CHANNEL", settings.notify_channel)):
        if not channel:
            continue
        try:
            access = await channel_access(client, setting, channel, scopes or None)
        except NETWORK_ERRORS as error:
            log.warning("could not check %s %s: %s", setting, channel, type(error).__name__)
            continue
        if not access.can_post:
            log.warning("the bot cannot post in %s", access.sentence)
