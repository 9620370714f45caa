"""When the tracker polls each request, and how many polls it may take at once.

A per-second budget of cloud calls is shared evenly by the requests in flight: with few, each is polled
every few seconds; with many, every `interval` at the slowest (the promise to each request), which is
exactly what a fixed interval costs. A job is also polled just after its expected end (ShowJob tells
it), so a job that ends on time is seen at once whatever the load. An order waiting for a person to pay
is polled at the interval: the Pay button polls it at once.

The schedule lives in the database (each request's `next_poll_at`), so it holds across restarts and is
shared by several trackers; the allowance is each tracker's own and only bounds bursts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.lifecycle import State

# The schedule spends 1/HEADROOM of the budget, so polls pulled in near an expected end fit under it;
# the cap on polls a second is HEADROOM x what the interval needs, so a backlog drains within the interval.
HEADROOM = 1.25


@dataclass(frozen=True)
class Pace:
    budget_per_second: float  # cloud calls a second the tracker may spend (POLL_BUDGET_PER_SECOND)
    interval: timedelta  # the slowest any request is polled (POLL_INTERVAL_SECONDS)
    fastest: timedelta  # the quickest the same request is polled again
    after_end: timedelta  # how long after a job's expected end to look

    def gap(self, load: Load) -> timedelta:
        """The time between two polls of one request: its share of the budget, within [fastest, interval]."""
        share = timedelta(seconds=load.shared * HEADROOM / self.budget_per_second)
        return min(self.interval, max(self.fastest, share))

    def rate(self, load: Load) -> float:
        """Polls a second a tracker may take: the budget, or more when the interval needs more."""
        return max(self.budget_per_second, HEADROOM * load.in_flight / self.interval.total_seconds())

    def next_poll(self, now: datetime, load: Load, state: State, expected_end: datetime | None) -> datetime:
        """When to poll a request that is still in flight after a poll at `now`."""
        if state == State.AWAITING_PAYMENT:
            return now + self.interval
        regular = now + self.gap(load)
        if expected_end is not None and now < expected_end + self.after_end < regular:
            return expected_end + self.after_end
        return regular


@dataclass(frozen=True)
class Load:
    """Requests in flight: all of them, and those that share the budget (all but orders awaiting payment)."""

    in_flight: int
    shared: int


@dataclass
class Allowance:
    """How many polls a tracker may start now: a token bucket filled at the pace's rate, holding a second's
    worth, so a burst of due requests (a restart, many submits at once) is spread instead of sent at once."""

    clock: Callable[[], float] = time.monotonic
    _tokens: float | None = None
    _at: float = field(default=0.0)

    def available(self, rate: float) -> int:
        now = self.clock()
        full = max(rate, 1.0)
        if self._tokens is None:
            self._tokens = full
        else:
            self._tokens = min(full, self._tokens + (now - self._at) * rate)
        self._at = now
        return int(self._tokens)

    def spend(self, polls: int) -> None:
        if self._tokens is not None:
            self._tokens -= polls
