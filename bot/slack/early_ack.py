"""Answer Slack the moment a listener acks, and run the rest of it after the answer.

Bolt's default runner starts a listener as a task and polls every 10 ms for its `ack()`, so every answer
waits for the next tick. With `process_before_response=True` Bolt answers as soon as the listener
function returns, which is what these wrappers make happen: the listener runs as a task, and the function
Bolt awaits returns when that task has acked (or ended). What the listener does after `ack()` goes on in
the background, as it did with Bolt's runner, and a failure there is logged as Bolt's handler would.

`answered_at_ack` is for listeners that ack (commands, actions, views, options); `in_background` for
events, which Bolt acknowledges by itself, so Slack's answer never waits for the work.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from slack_bolt.context.ack.async_ack import AsyncAck

from bot.outage import OUTAGES, is_database_outage
from bot.slack import outage_answers

log = logging.getLogger(__name__)

ACK_TIMEOUT_SECONDS = 3.0  # Slack's: after this the answer is worthless, as Bolt's runner also gives up
Listener = TypeVar("Listener", bound=Callable[..., Coroutine[Any, Any, None]])

# Past this many runs still working after their answer, an answer waits for its own work (up to Slack's
# 3 s): a flood then slows its own answers instead of piling up work in memory.
MAX_RUNNING = 1000
# The event loop holds tasks weakly: these references keep the work after an answer alive until it ends.
_running: set[asyncio.Task[None]] = set()


class _SignallingAck(AsyncAck):
    """Bolt's ack, which also says when it was called."""

    def __init__(self, inner: AsyncAck, on_call: Callable[[], None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._inner = inner
        self._on_call = on_call
        self.called = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._inner(*args, **kwargs)
        finally:
            self._on_call()
            self.called.set()


class _Work:
    """A listener's run as a task; a failure once Slack has its answer is ours to log (before it, Bolt's)."""

    def __init__(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        self.answered = False
        self.task = asyncio.get_running_loop().create_task(work, name=f"listener {name}")
        _running.add(self.task)
        self.task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        _running.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and self.answered:
            if is_database_outage(error):  # the person is told in a sentence; the log says it once a minute
                if not outage_answers.told_after_answer(error):
                    OUTAGES.report("finishing a Slack request after its answer", error)
                return
            log.error("%s failed after answering Slack: %s", task.get_name(), error, exc_info=error)


def answered_at_ack(listener: Listener) -> Listener:
    @functools.wraps(listener)  # Bolt reads the wrapped listener's parameters to know what to pass
    async def run(**kwargs: Any) -> None:
        ack = _SignallingAck(kwargs["ack"], lambda: setattr(work, "answered", True))
        work = _Work(listener.__name__, listener(**{**kwargs, "ack": ack}))
        acked = asyncio.ensure_future(ack.called.wait())
        deadline = asyncio.get_running_loop().time() + ACK_TIMEOUT_SECONDS
        try:
            await asyncio.wait({work.task, acked}, timeout=ACK_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            acked.cancel()
        if len(_running) > MAX_RUNNING and not work.task.done():
            await asyncio.wait({work.task}, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        if work.task.done() and not work.answered:
            work.task.result()  # it failed before acking: raised to Bolt, whose error handler logs it
        work.answered = True  # no ack within Slack's time: what follows is logged here

    return run  # type: ignore[return-value]


def in_background(listener: Listener) -> Listener:
    @functools.wraps(listener)
    async def run(**kwargs: Any) -> None:
        _Work(listener.__name__, listener(**kwargs)).answered = True

    return run  # type: ignore[return-value]


async def drain(seconds: float) -> None:
    """Let the work that follows answers finish, for up to `seconds` (at shutdown)."""
    if _running:
        await asyncio.wait(set(_running), timeout=seconds)
