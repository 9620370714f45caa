"""Slack's 429 answers, retried after the Retry-After they state, read as the bot reads any number from
outside: slack_sdk's own handler does `int()` on the header, so an HTTP date (which the header may carry)
or other digits raise ValueError out of whatever Web API call met the 429."""

from __future__ import annotations

import asyncio
import random

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.digits import ascii_int

LONGEST_WAIT_SECONDS = 120  # Slack asks for seconds to a minute; a larger number is not worth a stalled call
UNSTATED_WAIT_SECONDS = 1  # as slack_sdk waits when the header is missing


def retry_after_seconds(response: HttpResponse) -> int:
    """The wait a 429 asks for: whole seconds in ASCII digits, at most LONGEST_WAIT_SECONDS; else a second."""
    stated = next((values for name, values in response.headers.items() if name.lower() == "retry-after"), None)
    seconds = ascii_int(stated[0].strip() if stated else None, max_digits=6)
    return UNSTATED_WAIT_SECONDS if seconds is None else min(seconds, LONGEST_WAIT_SECONDS)


class RateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's retry of 429s, with Retry-After read safely."""

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        if response is None:
            raise error or RuntimeError("a 429 retry without a response")
        state.next_attempt_requested = True
        await asyncio.sleep(retry_after_seconds(response) + random.random())
        state.increment_current_attempt()
