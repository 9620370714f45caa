"""Driving the tracker cycle by cycle in tests, until a request is as a test needs it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.store.models import AppRequest
from bot.store.repository import RequestStore
from bot.tracker import Tracker


async def cycle_until(tracker: Tracker, store: RequestStore, request_id: str, done: Callable[[AppRequest], bool], *,
                      make_due: bool = False, cycles: int = 100, what: str = "the request") -> AppRequest:
    """Run tracker cycles until `done(request)`; `make_due` makes a backed-off request due again each time."""
    for _ in range(cycles):
        await tracker.cycle()
        await tracker.creates_answered()
        current = store.get(request_id)
        if current is not None and done(current):
            return current
        await asyncio.sleep(0.05)
        if make_due:
            with store.engine.begin() as connection:
                connection.exec_driver_sql("UPDATE requests SET next_poll_at = created_at")
    raise AssertionError(f"tracker cycles never brought {what} there")
